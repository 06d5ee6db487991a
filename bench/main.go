// Command bench measures Porter against its targets in one run of the
// network lab and lab cluster: ARP reply latency beside the kernel's,
// failover as a client sees it, the speaker at 1,000 and 10,000 addresses,
// the allocator at as many Services, and the plugin on a 1,000-node
// cluster. Every figure stands beside a baseline measured in the same run,
// because these machines are noisy.
//
// It is a measurement, not a test: a missed target or a failed section is
// reported and the run goes on. It writes bench/results.json and
// docs/benchmarks.md, and prints the table.
//
// Run it with `make bench`, as root.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/test/backend"
	"github.com/porterlb/porter/test/daemons"
	"github.com/porterlb/porter/test/lab"
	"github.com/porterlb/porter/test/netlab"
)

type options struct {
	out, doc    string
	arpRequests int
	arpRounds   int
	trials      int
	falseFor    time.Duration
	only        map[string]bool
	kinds       map[string]bool
	logs        string
	scales      []int
	nodes       int
	soakFor     time.Duration
	churn       int
	sizeBase    string
	// otherServices is how many Services that are not LoadBalancers the
	// section of that name adds.
	otherServices int
}

func main() {
	var o options
	var scales string
	flag.StringVar(&o.out, "out", "bench/results.json", "Where to write the results")
	flag.StringVar(&o.doc, "doc", "docs/benchmarks.md", "Where to write the report")
	flag.IntVar(&o.arpRequests, "arp-requests", 2000, "ARP requests per latency figure")
	flag.IntVar(&o.arpRounds, "arp-rounds", 20, "Rounds of -arp-requests at each scale, for the spread of the ARP p99")
	flag.IntVar(&o.trials, "trials", 20, "Trials per failover kind")
	flag.DurationVar(&o.falseFor, "false-failover-for", 3*time.Minute, "How long each false-failover scenario runs")
	var only string
	flag.StringVar(&only, "only", "", "Run only these sections, comma-separated (as the run prints them: \"failover,false failovers\"); all when empty")
	var kinds string
	flag.StringVar(&kinds, "kinds", "", "Run only these failover kinds, comma-separated (\"node death,SIGTERM\"); all when empty")
	flag.StringVar(&o.logs, "logs", "", "Copy the daemons' logs here before the lab is torn down")
	redoc := flag.Bool("redoc", false, "Only rewrite -doc from the results in -out, measuring nothing")
	flag.StringVar(&scales, "scales", "1000,10000", "Address counts for the scale section")
	flag.IntVar(&o.nodes, "nodes", 1000, "Cluster size for the plugin, scale and soak sections")
	flag.DurationVar(&o.soakFor, "soak-for", 30*time.Minute, "How long the soak holds the largest scale")
	flag.IntVar(&o.churn, "churn", 100, "Services the soak creates, and deletes, a minute")
	flag.IntVar(&o.otherServices, "other-services", 10000, "Headless ClusterIP Services the \"other Service types\" section adds")
	flag.StringVar(&o.sizeBase, "size-baseline", "fd517d6", "The git revision whose binaries the sizes are compared with: the last before the speaker's lean API client")
	flag.Parse()
	o.only, o.kinds = nameSet(only), nameSet(kinds)
	for _, s := range strings.Split(scales, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: -scales: %q is not a count\n", s)
			os.Exit(2)
		}
		o.scales = append(o.scales, n)
	}
	if *redoc {
		if err := rewriteDoc(o.out, o.doc); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: the network lab needs root: run `sudo make bench`")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, o))
}

// bench is the lab the sections share.
type bench struct {
	o        options
	res      *Results
	env      *lab.Env
	kube     kubernetes.Interface
	speakers *daemons.Runner
	// controllers run porter-controller's Deployment pods, off the nodes
	// under test.
	controllers *daemons.Runner
	// vip is the address of the Service the ARP and failover sections use;
	// vip6 that of an IPv6 Service the failover section uses too.
	vip, vip6 netip.Addr
	// mlb is MetalLB, once set up; cleanups stop what it runs.
	mlb      *stack
	cleanups []func()
	// mlbAt is MetalLB's speaker memory by its Service count.
	mlbAt map[int]mem
	// grown is true once the cluster has o.nodes nodes.
	grown bool
}

// nameSet is a comma-separated list as a set; nil, meaning all, when empty.
func nameSet(list string) map[string]bool {
	if list == "" {
		return nil
	}
	set := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		set[strings.TrimSpace(s)] = true
	}
	return set
}

func run(ctx context.Context, o options) int {
	b := &bench{o: o, res: &Results{Started: time.Now().UTC(), Machine: describeMachine(), Commit: commit(),
		Settings: Settings{ARPRequests: o.arpRequests, ARPRounds: o.arpRounds, Trials: o.trials, FalseFailoverFor: o.falseFor.String(), ProbeEvery: probeEvery.String(), Scales: o.scales, Nodes: o.nodes}}}
	if err := b.setup(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "bench: set up the lab: %v\n", err)
		b.teardown()
		return 1
	}
	sections := []struct {
		name string
		run  func(context.Context) error
	}{
		{"binaries", b.binaries},
		{"ARP reply round trip", b.arpLatency},
		{"watch decode", b.watchDecode},
		{"failover", b.failover},
		{"false failovers", b.falseFailovers},
		{"plugin", b.plugin},
		{"other Service types", b.otherServices},
		{"scale", b.scale},
		{"status at scale", b.statusAtScale},
		{"soak", b.soak},
	}
	for _, s := range sections {
		if o.only != nil && !o.only[s.name] {
			continue
		}
		if ctx.Err() != nil {
			b.res.problem("interrupted before %s", s.name)
			break
		}
		fmt.Fprintf(os.Stderr, "\n== %s\n", s.name)
		if err := s.run(ctx); err != nil {
			b.res.problem("%s: %v", s.name, err)
		}
	}
	b.teardown()
	b.res.Duration = time.Since(b.res.Started).Round(time.Second).String()
	code := 0
	if err := b.res.writeJSON(o.out); err != nil {
		fmt.Fprintf(os.Stderr, "bench: write %s: %v\n", o.out, err)
		code = 1
	}
	if err := writeDoc(o.doc, b.res); err != nil {
		fmt.Fprintf(os.Stderr, "bench: write %s: %v\n", o.doc, err)
		code = 1
	}
	fmt.Println()
	b.res.table(os.Stdout)
	for _, p := range b.res.Problems {
		fmt.Println("problem:", p)
	}
	fmt.Printf("\nwrote %s and %s\n", o.out, o.doc)
	return code
}

func (b *bench) setup(ctx context.Context) error {
	fmt.Fprintln(os.Stderr, "== building the lab")
	env, err := lab.NewEnv(ctx, lab.EnvOptions{
		Net:   &netlab.Options{Nodes: 3},
		Build: []string{"github.com/porterlb/porter/cmd/kubectl-porter", "github.com/porterlb/porter/cmd/porter-speaker", "github.com/porterlb/porter/cmd/porter-controller"},
	})
	if err != nil {
		return err
	}
	b.env, b.kube = env, env.Cluster.Client
	for _, n := range env.Net.Nodes {
		if _, err := env.Cluster.CreateNode(ctx, lab.Node{Name: n.Name, InternalIP: n.IP}); err != nil {
			return err
		}
		if err := backend.StrictARP(ctx, n); err != nil {
			return err
		}
		if _, err := backend.Serve(n); err != nil {
			return err
		}
	}
	if err := env.Cluster.InstallKubeProxy(ctx, lab.KubeProxy{Mode: "ipvs", StrictARP: true}); err != nil {
		return err
	}
	if b.speakers, err = daemons.Speakers(ctx, env, filepath.Join(env.Sandbox.Dir(), "speakers")); err != nil {
		return err
	}
	if b.controllers, err = daemons.Controllers(ctx, env, filepath.Join(env.Sandbox.Dir(), "controllers")); err != nil {
		return err
	}
	if out, err := env.Kubectl(ctx, "porter", "init", "--yes", "--eip", "bench=198.18.0.200-198.18.0.250").CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl porter init: %w\n%s", err, out)
	}
	if err := b.speakers.WaitAll(ctx); err != nil {
		return err
	}
	if b.vip, err = b.service(ctx, "bench", "bench"); err != nil {
		return err
	}
	if out, err := env.Kubectl(ctx, "porter", "eip", "create", "bench6", "--address", "2001:db8:18::300-2001:db8:18::30f").CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl porter eip create bench6: %w\n%s", err, out)
	}
	if b.vip6, err = b.service(ctx, "bench6", "bench6"); err != nil {
		return err
	}
	for _, n := range env.Net.Nodes {
		for _, vip := range []netip.Addr{b.vip, b.vip6} {
			if err := backend.Hold(ctx, n, vip); err != nil {
				return err
			}
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = backend.ServedBy(wctx, env.Net.Client, b.vip, func(string) bool { return true })
	return err
}

// service creates a LoadBalancer Service in pool and returns its address.
func (b *bench) service(ctx context.Context, name, pool string) (netip.Addr, error) {
	svc := lbService(name, pool)
	if _, err := b.kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return netip.Addr{}, fmt.Errorf("create Service %s: %w", name, err)
	}
	var ip netip.Addr
	err := poll(ctx, 30*time.Second, func() bool {
		s, err := b.kube.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			ip = lbservice.IngressIP(s)
		}
		return ip.IsValid()
	})
	return ip, err
}

func lbService(name, pool string) *corev1.Service {
	no := false
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{
			lbservice.LBAnnotation: "porter", lbservice.PoolAnnotation: pool}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			// Thousands of Services would run out of node ports, which
			// Porter does not use.
			AllocateLoadBalancerNodePorts: &no,
			Ports:                         []corev1.ServicePort{{Name: "http", Port: backend.Port, Protocol: corev1.ProtocolTCP}}},
	}
}

func (b *bench) teardown() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
	if b.o.logs != "" && b.env != nil {
		if out, err := exec.Command("cp", "-r", b.env.Sandbox.Dir()+"/.", b.o.logs).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: keep the logs: %v: %s\n", err, out)
		}
	}
	if b.controllers != nil {
		b.controllers.Stop()
	}
	if b.speakers != nil {
		b.speakers.Stop()
	}
	if b.env != nil {
		if err := b.env.Close(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "bench: tear down: %v\n", err)
		}
	}
}

// poll calls cond every 100ms until it is true or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) error {
	return pollEvery(ctx, timeout, 100*time.Millisecond, cond)
}

// timed runs a command n times and returns the median wall time, and the
// last run's stderr.
func timed(n int, mk func() *exec.Cmd) (time.Duration, []byte, error) {
	var ds []time.Duration
	var stderr bytes.Buffer
	for range n {
		cmd := mk()
		stderr.Reset()
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		ds = append(ds, time.Since(start))
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			return 0, stderr.Bytes(), err
		}
	}
	return quantile(ds, 0.5), stderr.Bytes(), nil
}

func commit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// parallel calls fn for every i in [from, to) on workers goroutines, and
// returns the first error.
func parallel(from, to, workers int, fn func(i int) error) error {
	jobs := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := from; i < to; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return first
}
