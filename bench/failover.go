package main

import (
	"context"
	"errors"
	"fmt"
	"os"
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

func (b *bench) kinds() []failureKind {
	signal := func(sig syscall.Signal) func(context.Context, *netlab.Host) error {
		return func(_ context.Context, n *netlab.Host) error {
			p := b.speakers.Proc(n.Name)
			if p == nil {
				return fmt.Errorf("no speaker on %s", n.Name)
			}
			return p.Signal(sig)
		}
	}
	restart := func(_ context.Context, n *netlab.Host) error { return b.speakers.Restart(n.Name) }
	return []failureKind{
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
}

func (b *bench) failover(ctx context.Context) error {
	floor, err := b.probeFloor(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "probe floor (no failure, 5 s): p99 gap between served probes %s\n", floor)
	for _, k := range b.kinds() {
		var outages, takeovers []time.Duration
		for i := range b.o.trials {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			o, t, err := b.trial(ctx, k)
			if err != nil {
				b.res.problem("failover %s trial %d: %v", k.name, i+1, err)
				continue
			}
			fmt.Fprintf(os.Stderr, "%s trial %2d: outage %4dms, takeover %4dms\n", k.name, i+1, o.Milliseconds(), t.Milliseconds())
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
				f := Figure{Section: "failover", Name: fmt.Sprintf("%s: %s %s", k.name, series.what, q.name), Value: ms(v), Unit: "ms",
					Baseline: ms(floor), BaselineName: "probe floor p99", Note: note}
				if series.target && q.name == "p99" {
					f.Target = "< " + k.target.String()
					f.Met = met(v < k.target)
				}
				b.res.add(f)
			}
		}
	}
	return nil
}

// probeFloor is the p99 gap between served probes when nothing fails: the
// finest outage the prober can see on this machine now.
func (b *bench) probeFloor(ctx context.Context) (time.Duration, error) {
	if err := b.settle(ctx); err != nil {
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
func (b *bench) trial(ctx context.Context, k failureKind) (outage, takeover time.Duration, err error) {
	if err := b.settle(ctx); err != nil {
		return 0, 0, err
	}
	owner, err := b.owner(ctx, "bench")
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
	_, err = backend.ServedBy(wctx, client, b.vip, func(n string) bool { return n == owner.Name })
	cancel()
	if err != nil {
		return 0, 0, fmt.Errorf("client not served by the owner %s: %w", owner.Name, err)
	}
	p := backend.StartProber(client, b.vip, probeEvery)
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
	_, err = backend.ServedBy(wctx, client, b.vip, func(n string) bool { return n != owner.Name })
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

// settle waits until every speaker runs and sees all three members, and
// the Service's announcer is stable.
func (b *bench) settle(ctx context.Context) error {
	nodes := b.env.Net.Nodes
	err := poll(ctx, 30*time.Second, func() bool {
		for _, n := range nodes {
			v, err := metric(ctx, n, "porter_live_members")
			if err != nil || int(v) != len(nodes) {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("wait for %d live members on every speaker: %w", len(nodes), err)
	}
	// Ownership moves back to a returning node right after it rejoins;
	// give that handoff time to finish.
	time.Sleep(time.Second)
	return nil
}
