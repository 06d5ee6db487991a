package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/porterlb/porter/test/lab"
)

// apiRequest matches the line client-go logs at -v=6 for every response,
// in its structured form and in the older one kubectl may still print.
var apiRequest = regexp.MustCompile(`"Response" verb="[A-Z]+" url="|\] (GET|POST|PUT|PATCH|DELETE) https?://\S+ \d{3} `)

// plugin grows the cluster to o.nodes nodes and times the plugin on it.
func (b *bench) plugin(ctx context.Context) error {
	if err := b.growTo(ctx, b.o.nodes); err != nil {
		return err
	}
	if err := b.status(ctx, fmt.Sprintf("%d nodes", b.o.nodes), true); err != nil {
		return err
	}
	ver, _, err := timed(20, b.kubectl(ctx, "porter", "version", "--client"))
	if err != nil {
		return fmt.Errorf("kubectl porter version: %w", err)
	}
	kver, _, err := timed(20, b.kubectl(ctx, "version", "--client"))
	if err != nil {
		return fmt.Errorf("kubectl version: %w", err)
	}
	b.res.add(Figure{Section: "plugin", Name: "version --client start-up, through kubectl", Value: ms(ver), Unit: "ms",
		Baseline: ms(kver), BaselineName: "kubectl version --client", Note: "median of 20"})
	return nil
}

// statusAtScale times status again once the scale section has filled the
// cluster with Services, which status lists too.
func (b *bench) statusAtScale(ctx context.Context) error {
	n := b.o.scales[len(b.o.scales)-1]
	return b.status(ctx, fmt.Sprintf("%d nodes and %d Services", b.o.nodes, n), false)
}

func (b *bench) kubectl(ctx context.Context, args ...string) func() *exec.Cmd {
	return func() *exec.Cmd {
		c := b.env.Kubectl(ctx, args...)
		c.Stdout = nil
		return c
	}
}

// status times `kubectl porter status` beside `kubectl get nodes`, and
// counts its API requests; target holds it to the 2 s limit.
func (b *bench) status(ctx context.Context, size string, target bool) error {
	base, _, err := timed(5, b.kubectl(ctx, "get", "nodes"))
	if err != nil {
		return fmt.Errorf("kubectl get nodes: %w", err)
	}
	status, _, err := timed(5, b.kubectl(ctx, "porter", "status"))
	if err != nil {
		return fmt.Errorf("kubectl porter status: %w", err)
	}
	f := Figure{Section: "plugin", Name: "status wall time, " + size, Value: ms(status), Unit: "ms",
		Baseline: ms(base), BaselineName: "kubectl get nodes", Note: "median of 5"}
	if target {
		f.Target, f.Met = "< 2s", met(status < 2*time.Second)
	}
	b.res.add(f)
	_, stderr, err := timed(1, b.kubectl(ctx, "porter", "status", "-v=6"))
	if err != nil {
		return fmt.Errorf("kubectl porter status -v=6: %w", err)
	}
	calls := len(apiRequest.FindAllIndex(stderr, -1))
	// Each request's own latency is in this log; it goes with the
	// daemons' logs, for telling a slow request from a slow judge.
	if b.o.logs != "" {
		name := "status-v6-" + strings.ReplaceAll(size, " ", "-") + ".log"
		if err := os.WriteFile(filepath.Join(b.env.Sandbox.Dir(), name), stderr, 0o644); err != nil {
			b.res.problem("keep the status -v=6 log: %v", err)
		}
	}
	_, baseErr, err := timed(1, b.kubectl(ctx, "get", "nodes", "-v=6"))
	if err != nil {
		return fmt.Errorf("kubectl get nodes -v=6: %w", err)
	}
	if calls == 0 {
		b.res.problem("status -v=6 logged no API request; its count is unknown")
		return nil
	}
	b.res.add(Figure{Section: "plugin", Name: "status API requests, " + size, Value: float64(calls), Unit: "requests",
		Baseline: float64(len(apiRequest.FindAllIndex(baseErr, -1))), BaselineName: "kubectl get nodes"})
	return nil
}

// growTo adds kwok nodes until the cluster has n.
func (b *bench) growTo(ctx context.Context, n int) error {
	if b.grown {
		return nil
	}
	have := len(b.env.Net.Nodes)
	fmt.Fprintf(os.Stderr, "adding %d kwok nodes\n", n-have)
	start := time.Now()
	err := parallel(have, n, 16, func(i int) error {
		// Node addresses from the benchmarking range, off the lab's LANs
		// and the scale pool.
		ip := fmt.Sprintf("198.18.%d.%d", 128+i/250, i%250+1)
		_, err := b.env.Cluster.CreateNode(ctx, lab.Node{Name: fmt.Sprintf("kwok-%04d", i), InternalIP: netip.MustParseAddr(ip)})
		return err
	})
	if err != nil {
		return fmt.Errorf("add nodes: %w", err)
	}
	fmt.Fprintf(os.Stderr, "added in %s\n", time.Since(start).Round(time.Millisecond))
	b.grown = true
	return nil
}

func withQPS(c *rest.Config) *rest.Config {
	c = rest.CopyConfig(c)
	c.QPS, c.Burst = 1000, 2000
	return c
}
