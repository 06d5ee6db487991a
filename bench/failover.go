package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/porterlb/porter/test/backend"
	"github.com/porterlb/porter/test/netlab"
)

// probeEvery is the client's probe period, the resolution of every
// outage figure.
const probeEvery = 10 * time.Millisecond

// failureKind is one way the announcing node can fail, and how it comes
// back.
type failureKind struct {
	name string
	// cause makes node n fail; recover undoes it.
	cause, recover func(ctx context.Context, n *netlab.Host) error
	// target bounds the figure held to it: the client's outage, or with
	// onTakeover the takeover time.
	target     time.Duration
	onTakeover bool
}

// kinds are the failures s is put through; MetalLB, the peer, goes
// through node death only. Porter goes through all of them in IPv4 and
// in IPv6.
func (b *bench) kinds(s *stack) []failureKind {
	signal := func(sig syscall.Signal) func(context.Context, *netlab.Host) error {
		return func(_ context.Context, n *netlab.Host) error {
			p := s.speakers.Proc(n.Name)
			if p == nil {
				return fmt.Errorf("no %s speaker on %s", s.name, n.Name)
			}
			return p.Signal(sig)
		}
	}
	restart := func(_ context.Context, n *netlab.Host) error { return s.speakers.Restart(n.Name) }
	kinds := []failureKind{
		// The speaker alone dies: its node's kernel keeps serving the
		// address it holds, so the client sees little, and the others
		// take the address only after --starved-grace (3 s), as a
		// starved speaker looks the same from outside.
		{name: "SIGKILL", cause: signal(syscall.SIGKILL), recover: restart, target: 5 * time.Second, onTakeover: true},
		// The node dies: speaker and link together.
		{name: "node death", target: 500 * time.Millisecond,
			cause: func(ctx context.Context, n *netlab.Host) error {
				if err := signal(syscall.SIGKILL)(ctx, n); err != nil {
					return err
				}
				return n.SetLink(ctx, netlab.NIC1, false)
			},
			recover: func(ctx context.Context, n *netlab.Host) error {
				if err := n.SetLink(ctx, netlab.NIC1, true); err != nil {
					return err
				}
				return restart(ctx, n)
			}},
		{name: "link down", target: time.Second,
			cause:   func(ctx context.Context, n *netlab.Host) error { return n.SetLink(ctx, netlab.NIC1, false) },
			recover: func(ctx context.Context, n *netlab.Host) error { return n.SetLink(ctx, netlab.NIC1, true) }},
		{name: "SIGTERM", cause: signal(syscall.SIGTERM), recover: restart, target: 100 * time.Millisecond},
	}
	return slices.DeleteFunc(kinds, func(k failureKind) bool {
		return (!strings.HasPrefix(s.name, "Porter") && k.name != "node death") || (b.o.kinds != nil && !b.o.kinds[k.name])
	})
}

func (b *bench) failover(ctx context.Context) error {
	floor, err := b.probeFloor(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "probe floor (no failure, 5 s): p99 gap between served probes %s\n", floor)
	for _, s := range b.stacks(ctx) {
		b.failoverOf(ctx, s, floor)
	}
	return nil
}

// failoverOf runs every failure kind of s, trials times each.
func (b *bench) failoverOf(ctx context.Context, s *stack, floor time.Duration) {
	for _, k := range b.kinds(s) {
		var outages, takeovers []time.Duration
		for i := range b.o.trials {
			if ctx.Err() != nil {
				return
			}
			o, t, err := b.trial(ctx, s, k)
			if err != nil {
				b.res.problem("failover %s %s trial %d: %v", s.name, k.name, i+1, err)
				continue
			}
			fmt.Fprintf(os.Stderr, "%s %s trial %2d: outage %4dms, takeover %4dms\n", s.name, k.name, i+1, o.Milliseconds(), t.Milliseconds())
			outages, takeovers = append(outages, o), append(takeovers, t)
		}
		if len(outages) == 0 {
			continue
		}
		note := fmt.Sprintf("%d trials", len(outages))
		for _, series := range []struct {
			what   string
			d      []time.Duration
			target bool
		}{{"client outage", outages, !k.onTakeover}, {"takeover", takeovers, k.onTakeover}} {
			for _, q := range []struct {
				name string
				q    float64
			}{{"p50", 0.5}, {"p99", 0.99}, {"max", 1}} {
				v := quantile(series.d, q.q)
				f := Figure{Section: "failover", Name: fmt.Sprintf("%s%s: %s %s", prefix(s), k.name, series.what, q.name), Value: ms(v), Unit: "ms",
					Baseline: ms(floor), BaselineName: "probe floor p99", Note: note}
				if series.target && q.name == "p99" && s.name == "Porter" {
					f.Target = "< " + k.target.String()
					f.Met = met(v < k.target)
				}
				b.res.add(f)
			}
		}
	}
}

// prefix names the stack in a figure: Porter's figures keep their names.
func prefix(s *stack) string {
	if s.name == "Porter" {
		return ""
	}
	return s.name + " "
}

// probeFloor is the p99 gap between served probes when nothing fails: the
// finest outage the prober can see on this machine now.
func (b *bench) probeFloor(ctx context.Context) (time.Duration, error) {
	if err := b.settleStack(ctx, b.porter()); err != nil {
		return 0, err
	}
	p := backend.StartProber(b.env.Net.Client, b.vip, probeEvery)
	time.Sleep(5 * time.Second)
	events := p.Stop()
	var gaps []time.Duration
	var last time.Time
	for _, e := range events {
		if !e.OK {
			continue
		}
		if !last.IsZero() {
			gaps = append(gaps, e.At.Sub(last))
		}
		last = e.At
	}
	if len(gaps) == 0 {
		return 0, errors.New("the client was never served")
	}
	return quantile(gaps, 0.99), nil
}

// trial fails the announcing node once, and returns the longest gap the
// client saw and the time until another node served it.
func (b *bench) trial(ctx context.Context, s *stack, k failureKind) (outage, takeover time.Duration, err error) {
	// The last trial's node came back held down, and its hold-down ends
	// when it will; a handover then, during a trial, would pass for a
	// failover.
	if s.fresh != nil {
		if err := s.fresh(ctx); err != nil {
			return 0, 0, fmt.Errorf("start the speakers anew: %w", err)
		}
	}
	if err := b.settleStack(ctx, s); err != nil {
		return 0, 0, err
	}
	owner, err := b.ownerOf(ctx, s)
	if err != nil {
		return 0, 0, err
	}
	client := b.env.Net.Client
	// Start each trial from a client that knows the current owner: after
	// a failed node comes back and takes its addresses back, a client may
	// still use the interim owner's MAC, whose kernel keeps serving.
	if out, err := client.Run(ctx, "ip", "neigh", "flush", "dev", netlab.NIC1); err != nil {
		return 0, 0, fmt.Errorf("flush the client's neighbours: %w: %s", err, out)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = backend.ServedBy(wctx, client, s.vip, func(n string) bool { return n == owner.Name })
	cancel()
	if err != nil {
		return 0, 0, fmt.Errorf("client not served by the owner %s: %w", owner.Name, err)
	}
	p := backend.StartProber(client, s.vip, probeEvery)
	time.Sleep(500 * time.Millisecond)
	at := time.Now()
	if err := k.cause(ctx, owner); err != nil {
		p.Stop()
		return 0, 0, err
	}
	defer func() {
		if rerr := k.recover(ctx, owner); rerr != nil && err == nil {
			err = fmt.Errorf("recover %s: %w", owner.Name, rerr)
		}
	}()
	wctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	_, err = backend.ServedBy(wctx, client, s.vip, func(n string) bool { return n != owner.Name })
	cancel()
	time.Sleep(300 * time.Millisecond)
	events := p.Stop()
	if err != nil {
		return 0, 0, fmt.Errorf("no other node took over from %s: %w", owner.Name, err)
	}
	outage, _ = backend.Outage(events, at)
	for _, e := range events {
		if e.OK && e.Node != owner.Name && e.At.After(at) {
			takeover = e.At.Sub(at)
			break
		}
	}
	return outage, takeover, nil
}

// porter is Porter as a stack, with its IPv4 Service; porter6 the same
// speakers with an IPv6 Service, answered by NDP.
func (b *bench) porter() *stack { return b.porterWith("Porter", b.vip) }

func (b *bench) porter6() *stack { return b.porterWith("Porter IPv6", b.vip6) }

func (b *bench) porterWith(name string, vip netip.Addr) *stack {
	return &stack{
		name: name, vip: vip, speakers: b.speakers,
		gains: func(ctx context.Context) (float64, error) {
			var sum float64
			for _, n := range b.env.Net.Nodes {
				v, err := metricWith(ctx, n, "porter_ownership_changes_total", `change="gained"`)
				if err != nil {
					return 0, err
				}
				sum += v
			}
			return sum, nil
		},
		// Every speaker runs and sees all three members.
		settled: func(ctx context.Context) bool {
			for _, n := range b.env.Net.Nodes {
				v, err := metric(ctx, n, "porter_live_members")
				if err != nil || int(v) != len(b.env.Net.Nodes) {
					return false
				}
			}
			return true
		},
		// The failures of the failover section are forgotten: a
		// hold-down that ends moves an address back, which is not a
		// false failover.
		fresh: func(ctx context.Context) error {
			if err := b.speakers.RestartAll(); err != nil {
				return err
			}
			return poll(ctx, 60*time.Second, func() bool {
				for _, n := range b.env.Net.Nodes {
					if v, err := metric(ctx, n, "porter_held_down_members"); err != nil || v != 0 {
						return false
					}
				}
				return true
			})
		},
	}
}

// stacks are Porter and, when it could be set up, MetalLB.
func (b *bench) stacks(ctx context.Context) []*stack {
	out := []*stack{b.porter()}
	if b.vip6.IsValid() {
		out = append(out, b.porter6())
	}
	if m, err := b.metalLB(ctx); err != nil {
		b.res.problem("MetalLB: %v", err)
	} else {
		out = append(out, m)
	}
	return out
}
