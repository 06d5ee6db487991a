package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/arp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/test/netlab"
)

// rtts are the round trips of one group of ARP targets, and how many
// requests got no answer.
type rtts struct {
	d    []time.Duration
	lost int
}

// arpRoundTrips sends n who-has requests from the client for each group,
// taking the group's targets in turn. The groups are interleaved request
// by request, so the speaker and its kernel baseline share every burst of
// noise the machine has.
func (b *bench) arpRoundTrips(n int, groups [][]netip.Addr) ([]rtts, error) {
	client := b.env.Net.Client
	var c *arp.Client
	err := client.Do(func() error {
		ifi, err := net.InterfaceByName(netlab.NIC1)
		if err != nil {
			return err
		}
		c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open an ARP socket on the client: %w", err)
	}
	defer func() { _ = c.Close() }()
	out := make([]rtts, len(groups))
	for i := range n {
		for g, targets := range groups {
			ip := targets[i%len(targets)]
			d, err := roundTrip(c, ip)
			if err != nil {
				out[g].lost++
				continue
			}
			out[g].d = append(out[g].d, d)
		}
	}
	return out, nil
}

func roundTrip(c *arp.Client, ip netip.Addr) (time.Duration, error) {
	if err := c.SetDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := c.Request(ip); err != nil {
		return 0, err
	}
	for {
		p, _, err := c.Read()
		if err != nil {
			return 0, err
		}
		if p.Operation == arp.OperationReply && p.SenderIP == ip {
			return time.Since(start), nil
		}
	}
}

// owner is the node whose speaker announces the Service name, once its
// announcer annotation says so.
func (b *bench) owner(ctx context.Context, name string) (*netlab.Host, error) {
	var an lbservice.Announcer
	err := poll(ctx, 30*time.Second, func() bool {
		s, err := b.kube.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		var ok bool
		an, ok = lbservice.ParseAnnouncer(s)
		return ok
	})
	if err != nil {
		return nil, fmt.Errorf("wait for the announcer of the Service %s: %w", name, err)
	}
	n := b.env.Net.Node(an.Node)
	if n == nil {
		return nil, fmt.Errorf("the Service %s is announced by %s, not a lab node", name, an.Node)
	}
	return n, nil
}

func (b *bench) arpLatency(ctx context.Context) error {
	owner, err := b.owner(ctx, "bench")
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%d requests each for %s (porter-speaker on %s) and %s (%s's kernel)\n", b.o.arpRequests, b.vip, owner.Name, owner.IP, owner.Name)
	r, err := b.arpRoundTrips(b.o.arpRequests, [][]netip.Addr{{b.vip}, {owner.IP}})
	if err != nil {
		return err
	}
	b.arpFigures("ARP", "1 address", r[0], r[1], "p50")
	return nil
}

// arpFigures records the speaker's p50 and p99 beside the kernel's, and
// holds the quantile target names ("p50", "p99" or none) to 1.5× the
// kernel's.
func (b *bench) arpFigures(section, what string, speaker, kernel rtts, target string) {
	if len(speaker.d) == 0 || len(kernel.d) == 0 {
		b.res.problem("%s %s: no answers (speaker lost %d, kernel lost %d)", section, what, speaker.lost, kernel.lost)
		return
	}
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p99", 0.99}} {
		s, k := quantile(speaker.d, q.q), quantile(kernel.d, q.q)
		f := Figure{Section: section, Name: fmt.Sprintf("speaker %s, %s", q.name, what), Value: us(s), Unit: "µs",
			Baseline: us(k), BaselineName: "kernel " + q.name}
		if q.name == target {
			f.Target = "≤ 1.5× kernel"
			f.Met = met(float64(s) <= 1.5*float64(k))
		}
		if speaker.lost > 0 {
			f.Note = fmt.Sprintf("%d of %d unanswered", speaker.lost, speaker.lost+len(speaker.d))
		}
		b.res.add(f)
	}
}
