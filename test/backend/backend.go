// Package backend plays, on network-lab nodes, the parts of a Kubernetes
// node that Porter relies on but does not run: kube-proxy in IPVS mode,
// which holds every Service address on the node itself with the sysctls
// strictARP sets, and a pod behind it, which answers each TCP connection
// with the node's name. A client can then tell which node served it.
package backend

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/porterlb/porter/test/netlab"
)

// Port is where the backend listens on every node.
const Port = 8080

// StrictARP sets what kube-proxy sets on a node when ipvs.strictARP is
// true: the node answers ARP only for addresses on the asking interface,
// and so never for the Service addresses it holds on lo.
func StrictARP(ctx context.Context, n *netlab.Host) error {
	for _, sysctl := range []string{"net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"} {
		if out, err := n.Run(ctx, "sysctl", "-qw", sysctl); err != nil {
			return fmt.Errorf("set %s on %s: %w: %s", sysctl, n.Name, err, out)
		}
	}
	return nil
}

// Hold puts ip on the node's lo, as kube-proxy puts a Service's address on
// kube-ipvs0.
func Hold(ctx context.Context, n *netlab.Host, ip netip.Addr) error {
	if out, err := n.Run(ctx, "ip", "addr", "replace", netip.PrefixFrom(ip, ip.BitLen()).String(), "dev", "lo"); err != nil {
		return fmt.Errorf("hold %s on %s: %w: %s", ip, n.Name, err, out)
	}
	return nil
}

// Release takes ip off the node's lo.
func Release(ctx context.Context, n *netlab.Host, ip netip.Addr) error {
	if out, err := n.Run(ctx, "ip", "addr", "del", netip.PrefixFrom(ip, ip.BitLen()).String(), "dev", "lo"); err != nil {
		return fmt.Errorf("release %s on %s: %w: %s", ip, n.Name, err, out)
	}
	return nil
}

// Serve answers every TCP connection to the node's Port, over IPv4 or
// IPv6, with the node's name, until closed.
func Serve(n *netlab.Host) (io.Closer, error) {
	var ls listeners
	for _, a := range []struct{ network, addr string }{{"tcp4", fmt.Sprintf("0.0.0.0:%d", Port)}, {"tcp6", fmt.Sprintf("[::]:%d", Port)}} {
		l, err := n.Listen(a.network, a.addr)
		if err != nil {
			_ = ls.Close()
			return nil, fmt.Errorf("listen on %s (%s): %w", n.Name, a.network, err)
		}
		ls = append(ls, l)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, n.Name+"\n")
				_ = c.Close()
			}
		}()
	}
	return ls, nil
}

type listeners []net.Listener

func (ls listeners) Close() error {
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// Fetch connects from client to ip's Port and returns the name of the node
// that answered. Each try is short, so that a prober sees an outage
// to within its own period.
func Fetch(ctx context.Context, client *netlab.Host, ip netip.Addr) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	c, err := client.Dial(ctx, "tcp", netip.AddrPortFrom(ip, Port).String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// Probe is one fetch a Prober made.
type Probe struct {
	At   time.Time // when the fetch ended
	Node string
	OK   bool
	Err  error
}

// Prober starts a fetch from a client every interval until stopped. Each
// fetch runs on its own, so a fetch that hangs on a dead owner for its
// whole timeout does not hold back the next: the prober sees the moment
// service returns to within its interval.
type Prober struct {
	mu     sync.Mutex
	events []Probe
	cancel context.CancelFunc
	done   chan struct{}
}

// StartProber starts fetching ip from client every interval.
func StartProber(client *netlab.Host, ip netip.Addr, interval time.Duration) *Prober {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Prober{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			wg.Add(1)
			go func() {
				defer wg.Done()
				node, err := Fetch(ctx, client, ip)
				if ctx.Err() != nil {
					return // stopped mid-probe: not a result
				}
				p.mu.Lock()
				p.events = append(p.events, Probe{At: time.Now(), Node: node, OK: err == nil, Err: err})
				p.mu.Unlock()
			}()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// Stop ends probing and returns every probe made, in the order they ended.
func (p *Prober) Stop() []Probe {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	slices.SortStableFunc(p.events, func(a, b Probe) int { return a.At.Compare(b.At) })
	return p.events
}

// Outage is the longest time between two successful probes after since,
// and how many probes failed.
func Outage(events []Probe, since time.Time) (gap time.Duration, failed int) {
	var lastOK time.Time
	for _, e := range events {
		if e.At.Before(since) {
			if e.OK {
				lastOK = e.At
			}
			continue
		}
		if !e.OK {
			failed++
			continue
		}
		if !lastOK.IsZero() && e.At.Sub(lastOK) > gap {
			gap = e.At.Sub(lastOK)
		}
		lastOK = e.At
	}
	return gap, failed
}

// LastNode is the node of the last successful probe.
func LastNode(events []Probe) string {
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].OK {
			return events[i].Node
		}
	}
	return ""
}

// ServedBy waits until client is served through ip by a node ok accepts,
// and returns that node.
func ServedBy(ctx context.Context, client *netlab.Host, ip netip.Addr, ok func(string) bool) (string, error) {
	var last string
	var lastErr error
	for {
		last, lastErr = Fetch(ctx, client, ip)
		if lastErr == nil && ok(last) {
			return last, nil
		}
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = fmt.Errorf("served by %s", last)
			}
			return "", fmt.Errorf("fetch %s from %s: %w (last: %w)", ip, client.Name, ctx.Err(), lastErr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
