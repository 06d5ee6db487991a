package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/porterlb/porter/test/backend"
	"github.com/porterlb/porter/test/netlab"
)

// A false failover is an address that changes owner though nothing failed.
// Each scenario runs for -false-failover-for with the client probing every
// 10 ms, and counts the owner changes the client sees (the node that
// serves it changes) and those the speakers count themselves.
type stressor struct {
	name string
	// start puts the lab under stress for s, and returns how to undo it.
	start func(ctx context.Context, s *stack) (stop func() error, err error)
}

func (b *bench) stressors() []stressor {
	return []stressor{
		{"speakers at nice 19 under 8 busy loops", b.starve},
		{"5% loss on every node link", b.lossy},
	}
}

func (b *bench) falseFailovers(ctx context.Context) error {
	// MetalLB is done after this section: its speakers would otherwise
	// watch the scale section's 10,000 Services beside Porter's.
	defer b.stopMetalLB()
	stacks := b.stacks(ctx)
	var porterCPU float64
	for _, s := range stacks {
		if s.fresh != nil {
			if err := s.fresh(ctx); err != nil {
				b.res.problem("false failovers, %s: start the speakers anew: %v", s.name, err)
				continue
			}
		}
		if err := b.settleStack(ctx, s); err != nil {
			b.res.problem("speaker CPU, %s: %v", s.name, err)
			continue
		}
		mc, err := b.cpuAtRest(ctx, s, cpuWindow)
		if err != nil {
			b.res.problem("speaker CPU, %s: %v", s.name, err)
			continue
		}
		fmt.Fprintf(os.Stderr, "%s speaker CPU at rest: %.1f millicores\n", s.name, mc)
		f := Figure{Section: "false failovers", Name: prefix(s) + "speaker CPU at rest, mean of 3 speakers", Value: mc, Unit: "millicores",
			Note: fmt.Sprintf("over %s, the client connecting every %s", cpuWindow, probeEvery)}
		if s.name == "Porter" {
			porterCPU = mc
		} else if porterCPU > 0 {
			// MetalLB's figure beside Porter's, as the baseline.
			f.Baseline, f.BaselineName = porterCPU, "Porter's speaker"
		}
		b.res.add(f)
	}
	for _, s := range stacks {
		for _, st := range b.stressors() {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			client, own, err := b.falseFailover(ctx, s, st)
			if err != nil {
				b.res.problem("false failovers, %s, %s: %v", s.name, st.name, err)
				continue
			}
			fmt.Fprintf(os.Stderr, "%s, %s, %s: the client saw %d owner changes, the speakers counted %g\n", s.name, st.name, b.o.falseFor, client, own)
			note := fmt.Sprintf("%s under stress, nothing failed", b.o.falseFor)
			for _, f := range []Figure{
				{Section: "false failovers", Name: fmt.Sprintf("%s%s: owner changes the client saw", prefix(s), st.name), Value: float64(client), Unit: "changes", Note: note},
				{Section: "false failovers", Name: fmt.Sprintf("%s%s: addresses gained, by the speakers' count", prefix(s), st.name), Value: own, Unit: "changes", Note: note},
			} {
				// Nothing failed, so no address may move, over either
				// address family.
				if strings.HasPrefix(s.name, "Porter") {
					f.Target = "0"
					f.Met = met(f.Value == 0)
				}
				b.res.add(f)
			}
		}
	}
	return nil
}

func (b *bench) falseFailover(ctx context.Context, s *stack, st stressor) (client int, own float64, err error) {
	if err := b.settleStack(ctx, s); err != nil {
		return 0, 0, err
	}
	before, err := s.gains(ctx)
	if err != nil {
		return 0, 0, err
	}
	p := backend.StartProber(b.env.Net.Client, s.vip, probeEvery)
	stop, err := st.start(ctx, s)
	if err != nil {
		p.Stop()
		return 0, 0, err
	}
	select {
	case <-ctx.Done():
	case <-time.After(b.o.falseFor):
	}
	serr := stop()
	events := p.Stop()
	if serr != nil {
		return 0, 0, fmt.Errorf("undo the stress: %w", serr)
	}
	last := ""
	served := 0
	for _, e := range events {
		if !e.OK {
			continue
		}
		served++
		if last != "" && e.Node != last {
			client++
		}
		last = e.Node
	}
	if served == 0 {
		return 0, 0, fmt.Errorf("the client was never served through %s", s.vip)
	}
	after, err := s.gains(ctx)
	if err != nil {
		return 0, 0, err
	}
	return client, after - before, nil
}

// cpuWindow is how long speaker CPU is measured at rest.
const cpuWindow = 30 * time.Second

// cpuAtRest is the mean CPU of s's speakers over window, in millicores.
func (b *bench) cpuAtRest(ctx context.Context, s *stack, window time.Duration) (float64, error) {
	var pids []int
	for _, n := range b.env.Net.Nodes {
		p := s.speakers.Proc(n.Name)
		if p == nil {
			return 0, fmt.Errorf("no %s speaker on %s", s.name, n.Name)
		}
		pids = append(pids, p.Pid())
	}
	p := backend.StartProber(b.env.Net.Client, s.vip, probeEvery)
	defer p.Stop()
	before, err := cpuTicks(pids)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(window):
	}
	after, err := cpuTicks(pids)
	if err != nil {
		return 0, err
	}
	return millicores(after-before, time.Since(start)) / float64(len(pids)), nil
}

// millicores is CPU time in clock ticks over a span of wall time.
func millicores(ticks int64, over time.Duration) float64 {
	// /proc counts in clock ticks of 1/100 s on Linux.
	return float64(ticks) / 100 / over.Seconds() * 1000
}

// cpuTicks is the user and system time of the processes, all threads, in
// clock ticks.
func cpuTicks(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		// The command name may hold spaces; the fields after it do not.
		rest := string(b)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) < 13 {
			return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
		}
		// utime and stime are fields 14 and 15 of stat, 12 and 13 here.
		for _, v := range f[11:13] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
			}
			sum += n
		}
	}
	return sum, nil
}

// starve sets every thread of s's speakers to nice 19 and runs 8 busy
// loops at nice 0 on the 2 cores: a speaker gets about the share a 10m CPU
// request gives it on a busy node.
func (b *bench) starve(ctx context.Context, s *stack) (func() error, error) {
	var pids []int
	for _, n := range b.env.Net.Nodes {
		p := s.speakers.Proc(n.Name)
		if p == nil {
			return nil, fmt.Errorf("no %s speaker on %s", s.name, n.Name)
		}
		pids = append(pids, p.Pid())
	}
	if err := renice(pids, 19); err != nil {
		return nil, err
	}
	var loops []*exec.Cmd
	for range 8 {
		c := exec.Command("sh", "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			return nil, fmt.Errorf("start a busy loop: %w", err)
		}
		loops = append(loops, c)
	}
	return func() error {
		for _, c := range loops {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		return renice(pids, 0)
	}, nil
}

// renice sets the nice value of every thread of each process: setpriority
// on a pid changes only its main thread.
func renice(pids []int, nice int) error {
	for _, pid := range pids {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return fmt.Errorf("list the threads of %d: %w", pid, err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil && err != syscall.ESRCH {
				return fmt.Errorf("renice thread %d of %d: %w", tid, pid, err)
			}
		}
	}
	return nil
}

// lossyTable is the nftables table that drops frames on a node's LAN NIC.
const lossyTable = "porter-bench-loss"

// lossy drops 5% of the frames, ARP included, both ways on every node's
// LAN NIC, with nftables at the NIC's ingress and egress hooks: the
// kernel has no netem.
func (b *bench) lossy(ctx context.Context, _ *stack) (func() error, error) {
	var done []*netlab.Host
	undo := func() error {
		var first error
		for _, n := range done {
			if out, err := n.Run(context.Background(), "nft", "delete", "table", "netdev", lossyTable); err != nil && first == nil {
				first = fmt.Errorf("remove the loss on %s: %w: %s", n.Name, err, out)
			}
		}
		return first
	}
	for _, n := range b.env.Net.Nodes {
		cmds := [][]string{
			{"nft", "add", "table", "netdev", lossyTable},
			{"nft", "add", "chain", "netdev", lossyTable, "in", fmt.Sprintf("{ type filter hook ingress device %s priority 0; }", netlab.NIC1)},
			{"nft", "add", "chain", "netdev", lossyTable, "out", fmt.Sprintf("{ type filter hook egress device %s priority 0; }", netlab.NIC1)},
			{"nft", "add", "rule", "netdev", lossyTable, "in", "numgen", "random", "mod", "100", "<", "5", "drop"},
			{"nft", "add", "rule", "netdev", lossyTable, "out", "numgen", "random", "mod", "100", "<", "5", "drop"},
		}
		done = append(done, n)
		for _, c := range cmds {
			if out, err := n.Run(ctx, c...); err != nil {
				_ = undo()
				return nil, fmt.Errorf("drop 5%% on %s (%v): %w: %s; nft comes with `hack/install-deps.sh bench`", n.Name, c, err, out)
			}
		}
	}
	return undo, nil
}
