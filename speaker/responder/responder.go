// Package responder is the neighbour-discovery data path on one NIC: for
// the addresses this node owns it answers ARP who-has requests (IPv4) and
// Neighbor Solicitations (IPv6), announces them with gratuitous ARP or
// unsolicited Neighbor Advertisements when it gains them, and probes an
// address before first use (RFC 5227; RFC 4862 duplicate address
// detection).
package responder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"

	"github.com/porterlb/porter/speaker/metrics"
)

// GratuitousSchedule is when gratuitous ARP is repeated after gaining an
// address: at once, then a few times more for neighbours that missed it
// or were still in their ARP lock time.
var GratuitousSchedule = []time.Duration{0, 250 * time.Millisecond, 1 * time.Second, 3 * time.Second}

// Claim is called when another host says, in any ARP packet, that it has
// an address this responder answers for. It returns whether to give the
// address up; the responder then stops answering for it at once, before
// the call returns, so no client is told two MACs any longer than one
// packet takes. Otherwise the responder keeps it and announces it again,
// at most once a second, so that the claimer hears who keeps it.
type Claim func(ip netip.Addr, mac net.HardwareAddr) (giveUp bool)

// Responder answers ARP on one interface.
type Responder struct {
	ifi *net.Interface
	// c sends; it is also the first reader's socket.
	c       *arpConn
	readers []*reader
	log     *slog.Logger
	m       *metrics.Metrics
	claim   Claim

	mu     sync.RWMutex
	owned  map[netip.Addr]struct{}
	probes map[netip.Addr]chan net.HardwareAddr
	// reasserted is when each owned address was last announced again
	// against a claim this responder's owner rejected.
	reasserted map[netip.Addr]time.Time

	done   chan struct{}
	err    error
	closed atomic.Bool

	// nd is the ICMPv6 socket for IPv6 addresses, opened on first use.
	ndpMu  sync.Mutex
	nd     *ndp.Conn
	ndDone chan struct{}
}

// Open listens for ARP on the interface named name. claim, when set, is
// told of every other host that claims an owned address.
func Open(name string, m *metrics.Metrics, log *slog.Logger, claim Claim) (*Responder, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("find interface %s: %w", name, err)
	}
	log = log.With("interface", name)
	cpus := readerCPUs(allowedCPUs(), maxReaders)
	conns, fallback, err := openReaders(ifi, cpus)
	if err != nil {
		return nil, err
	}
	if fallback != nil {
		log.Info("ARP answered by one reader, not one per CPU", "err", fallback)
		cpus = []int{-1}
	}
	readers := make([]*reader, len(conns))
	for i, c := range conns {
		readers[i] = &reader{c: c, cpu: cpus[i]}
	}
	return &Responder{
		ifi: ifi, c: conns[0], readers: readers, m: m, log: log, claim: claim,
		owned:      map[netip.Addr]struct{}{},
		probes:     map[netip.Addr]chan net.HardwareAddr{},
		reasserted: map[netip.Addr]time.Time{},
		done:       make(chan struct{}),
	}, nil
}

// Interface is the NIC this responder serves.
func (r *Responder) Interface() *net.Interface { return r.ifi }

// reader is one thread of the reply path (see readers.go).
type reader struct {
	c *arpConn
	// cpu is the CPU whose frames the reader gets and that its thread is
	// bound to; -1 for a reader left free.
	cpu int
	// answered counts the requests this reader answered.
	answered atomic.Uint64
}

// Serve answers requests until Close. It returns the error that stopped
// it, nil after Close. A reader that fails stops the others: the NIC is
// then answered for by nobody, which Healthy reports.
func (r *Responder) Serve() error {
	defer close(r.done)
	errs := make(chan error, len(r.readers))
	for _, rd := range r.readers {
		go func() { errs <- r.read(rd) }()
	}
	var first error
	for range r.readers {
		if err := <-errs; err != nil && first == nil {
			first = err
			r.err = err
			r.closed.Store(true)
		}
	}
	return first
}

// read answers the requests of one reader's socket until Close.
func (r *Responder) read(rd *reader) error {
	iface := r.ifi.Name
	seen := r.m.ARPRequests.WithLabelValues(iface)
	replied := r.m.ARPReplies.WithLabelValues(iface)
	// The reader keeps a thread of its own (see arpConn), at a raised
	// priority and bound to its CPU. It is never unlocked: the thread
	// ends with the reader, so that no other goroutine ever runs at the
	// reader's priority or is kept to its CPU.
	runtime.LockOSThread()
	r.log.Debug("ARP reader started", "cpu", rd.cpu, "bound", bindThread(rd.cpu), "priority", raiseThreadPriority())
	mac := r.ifi.HardwareAddr
	buf := make([]byte, 1514)
	reply := make([]byte, arpFrameLen)
	for {
		n, err := rd.c.read(buf)
		if r.closed.Load() {
			return nil
		}
		if errors.Is(err, errTimeout) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read ARP on %s: %w", iface, err)
		}
		p, ok := parseARP(buf[:n])
		if !ok || slices.Equal(p.sha, mac) {
			continue
		}
		request := p.op == arp.OperationRequest
		// One look at the table serves the answer and the watch on the
		// sender, and the answer goes before anything else is done.
		r.mu.RLock()
		_, mine := r.owned[p.tpa]
		probe := r.probes[p.spa]
		_, claimed := r.owned[p.spa]
		r.mu.RUnlock()
		if request && mine {
			replyInto(reply, buf[:n], mac)
			if err := rd.c.send(reply); err != nil {
				r.log.Warn("send ARP reply", "ip", p.tpa, "to", p.src, "err", err)
			} else {
				replied.Inc()
				rd.answered.Add(1)
			}
		}
		if request {
			seen.Inc()
		}
		r.watch(p.spa, p.sha, probe, claimed)
	}
}

// watch hands a packet to the probe waiting on its sender address, ch
// (or nil), and defends an owned address: any host that says it has the
// address, in a reply, a request or an announcement, claims it (RFC 5227
// sections 2.1.1 and 2.4).
func (r *Responder) watch(ip netip.Addr, mac net.HardwareAddr, ch chan net.HardwareAddr, owned bool) {
	if ch != nil {
		select {
		case ch <- slices.Clone(mac):
		default:
		}
	}
	if owned {
		r.defend(ip, slices.Clone(mac))
	}
}

// defend answers another host that says it has an owned address: give it
// up if the claim says so, else say again, at most once a second, that
// this node keeps it.
func (r *Responder) defend(ip netip.Addr, mac net.HardwareAddr) {
	if r.claim == nil {
		return
	}
	if r.claim(ip, mac) {
		r.Withdraw([]netip.Addr{ip})
		return
	}
	// Kept: say so again, so that the claimer hears it; at most once a
	// second for an address, so two stubborn claimers cannot storm.
	r.mu.Lock()
	last := r.reasserted[ip]
	due := time.Since(last) >= time.Second
	if due {
		r.reasserted[ip] = time.Now()
	}
	r.mu.Unlock()
	if due {
		r.sendGratuitous([]netip.Addr{ip})
	}
}

// Healthy reports whether the read loop still runs.
func (r *Responder) Healthy() error {
	select {
	case <-r.done:
		if r.err != nil {
			return r.err
		}
		return errors.New("closed")
	default:
		return nil
	}
}

// Close stops answering and releases the sockets.
func (r *Responder) Close() error {
	r.closed.Store(true)
	<-r.done
	var errs []error
	for _, rd := range r.readers {
		errs = append(errs, rd.c.close())
	}
	return errors.Join(append(errs, r.closeNDP())...)
}

// Owns reports whether ip is answered for here.
func (r *Responder) Owns(ip netip.Addr) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.owned[ip]
	return ok
}

// Announce starts answering for ips and sends gratuitous ARP for them now
// and on GratuitousSchedule, until ctx ends or an address is withdrawn.
func (r *Responder) Announce(ctx context.Context, ips []netip.Addr) {
	r.mu.Lock()
	var v6 []netip.Addr
	for _, ip := range ips {
		r.owned[ip] = struct{}{}
		if ip.Is6() {
			v6 = append(v6, ip)
		}
	}
	r.mu.Unlock()
	r.sendGratuitous(ips)
	// The first advertisement of an address also joins its group, which
	// later ones need not.
	r.announceNDP(v6, true)
	if len(GratuitousSchedule) < 2 {
		return
	}
	go func() {
		start := time.Now()
		for _, at := range GratuitousSchedule[1:] {
			select {
			case <-ctx.Done():
				return
			case <-r.done:
				return
			case <-time.After(time.Until(start.Add(at))):
			}
			still := ips[:0:0]
			r.mu.RLock()
			for _, ip := range ips {
				if _, ok := r.owned[ip]; ok {
					still = append(still, ip)
				}
			}
			r.mu.RUnlock()
			if len(still) == 0 {
				return
			}
			r.sendGratuitous(still)
		}
	}()
}

// refreshBatch and refreshPause pace a refresh, so that ten thousand
// addresses take a second rather than one burst of twenty thousand frames.
const (
	refreshBatch = 100
	refreshPause = 10 * time.Millisecond
)

// Refresh sends gratuitous ARP for every address it answers for, every
// period, until ctx ends or the responder closes. Switches age out the MAC
// of a quiet address (300 s is common) and then flood its traffic; hosts
// that have stopped asking keep a stale entry after a move they missed.
func (r *Responder) Refresh(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.done:
			return
		case <-t.C:
		}
		r.mu.RLock()
		ips := make([]netip.Addr, 0, len(r.owned))
		for ip := range r.owned {
			ips = append(ips, ip)
		}
		r.mu.RUnlock()
		for len(ips) > 0 {
			n := min(refreshBatch, len(ips))
			still := ips[:0:0]
			r.mu.RLock()
			for _, ip := range ips[:n] {
				if _, ok := r.owned[ip]; ok {
					still = append(still, ip)
				}
			}
			r.mu.RUnlock()
			r.sendGratuitous(still)
			ips = ips[n:]
			if len(ips) > 0 {
				select {
				case <-ctx.Done():
					return
				case <-r.done:
					return
				case <-time.After(refreshPause):
				}
			}
		}
	}
}

// Withdraw stops answering for ips at once.
func (r *Responder) Withdraw(ips []netip.Addr) {
	r.mu.Lock()
	var v6 []netip.Addr
	for _, ip := range ips {
		delete(r.owned, ip)
		delete(r.reasserted, ip)
		if ip.Is6() {
			v6 = append(v6, ip)
		}
	}
	r.mu.Unlock()
	r.withdrawNDP(v6)
}

// sendGratuitous sends, for each ip, a gratuitous request and a gratuitous
// reply, both broadcast: some neighbours update their caches only on one
// of the two.
func (r *Responder) sendGratuitous(ips []netip.Addr) {
	counter := r.m.GratuitousARPs.WithLabelValues(r.ifi.Name)
	mac := r.ifi.HardwareAddr
	frame := make([]byte, arpFrameLen)
	var v6 []netip.Addr
	for _, ip := range ips {
		if ip.Is6() {
			v6 = append(v6, ip)
			continue
		}
		for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
			gratuitousInto(frame, op, mac, ip)
			if err := r.c.send(frame); err != nil {
				r.log.Warn("send gratuitous ARP", "ip", ip, "err", err)
				continue
			}
			counter.Inc()
		}
	}
	r.announceNDP(v6, false)
}

// ProbeConfig times an RFC 5227 probe.
type ProbeConfig struct {
	Count    int           // probes sent
	Interval time.Duration // between probes
	Wait     time.Duration // after the last probe
}

// Probe asks whether any host already uses ip: it sends ARP probes (sender
// address 0.0.0.0, so no neighbour learns anything from them) and listens
// for any host claiming ip. It returns the MAC that answered, nil if none
// did. ignore says which MACs are the cluster's own and never a conflict.
// An IPv6 address is probed by duplicate address detection instead
// (probeNDP).
func (r *Responder) Probe(ctx context.Context, ip netip.Addr, pc ProbeConfig, ignore func(net.HardwareAddr) bool) (net.HardwareAddr, error) {
	ch := make(chan net.HardwareAddr, 4)
	r.mu.Lock()
	if _, busy := r.probes[ip]; busy {
		r.mu.Unlock()
		return nil, fmt.Errorf("probe of %s already running", ip)
	}
	r.probes[ip] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.probes, ip)
		r.mu.Unlock()
	}()
	if ip.Is6() {
		return r.probeNDP(ctx, ip, pc, ignore, ch)
	}
	p, err := arp.NewPacket(arp.OperationRequest, r.ifi.HardwareAddr, netip.IPv4Unspecified(), ethernet.Broadcast, ip)
	if err != nil {
		return nil, fmt.Errorf("build ARP probe for %s: %w", ip, err)
	}
	// The target hardware address of a probe is zero (RFC 5227 2.1.1).
	p.TargetHardwareAddr = make(net.HardwareAddr, 6)
	return r.probeLoop(ctx, ip, pc, ignore, ch, func() error {
		if err := r.c.writeTo(p, ethernet.Broadcast); err != nil {
			return fmt.Errorf("send ARP probe for %s on %s: %w", ip, r.ifi.Name, err)
		}
		return nil
	})
}

// probeLoop sends a probe pc.Count times and listens, after each, for a
// host that shows it holds ip, whichever the protocol.
func (r *Responder) probeLoop(ctx context.Context, ip netip.Addr, pc ProbeConfig, ignore func(net.HardwareAddr) bool, ch chan net.HardwareAddr, send func() error) (net.HardwareAddr, error) {
	count := max(pc.Count, 1)
	for i := range count {
		if err := send(); err != nil {
			return nil, err
		}
		wait := pc.Interval
		if i == count-1 {
			wait = pc.Wait
		}
		due := time.Now().Add(wait)
		deadline := time.After(wait)
	listen:
		for {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case mac := <-ch:
				if ignore == nil || !ignore(mac) {
					return mac, nil
				}
			case <-deadline:
				break listen
			}
		}
		// A process starved of CPU wakes with its timer and its read loop
		// runnable together, an answer unread: give the read loop its
		// turn, and call a wait that ended far too late no answer at all.
		time.Sleep(time.Millisecond)
		for drained := false; !drained; {
			select {
			case mac := <-ch:
				if ignore == nil || !ignore(mac) {
					return mac, nil
				}
			default:
				drained = true
			}
		}
		if late := time.Since(due); late > max(wait, lateProbe) {
			return nil, fmt.Errorf("%w: the wait for %s on %s ended %s late", ErrStarved, ip, r.ifi.Name, late.Round(time.Millisecond))
		}
	}
	return nil, nil
}

// ErrStarved is a probe that says nothing: this process was too starved of
// CPU to hear an answer in time.
var ErrStarved = errors.New("probe inconclusive, this speaker is starved of CPU")

// lateProbe is how late a probe's wait may end before its silence counts
// for nothing.
const lateProbe = 20 * time.Millisecond
