package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/test/backend"
)

// mem is a process's memory, from /proc/<pid>/status, in bytes.
type mem struct {
	RSS, Anon, File, Peak int64
}

func memOf(pid int) (mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return mem{}, fmt.Errorf("read the memory of pid %d: %w", pid, err)
	}
	var m mem
	fields := map[string]*int64{"VmRSS": &m.RSS, "RssAnon": &m.Anon, "RssFile": &m.File, "VmHWM": &m.Peak}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if p := fields[k]; ok && p != nil {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return mem{}, fmt.Errorf("read %s of pid %d: %w", k, pid, err)
			}
			*p = kb << 10
		}
	}
	if m.RSS == 0 {
		return mem{}, fmt.Errorf("pid %d reports no RSS", pid)
	}
	return m, nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// sockets counts the open sockets of pid.
func sockets(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("list the files of pid %d: %w", pid, err)
	}
	n := 0
	for _, e := range ents {
		if t, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(t, "socket:") {
			n++
		}
	}
	return n, nil
}

// memFigures records a speaker's memory at one scale. base is its memory
// at one address, or the zero mem at that scale itself.
func (b *bench) memFigures(label string, m, base mem, baseName string, target string, met *bool) {
	rss := Figure{Section: "memory", Name: "speaker RSS, " + label, Value: mib(m.RSS), Unit: "MiB",
		Baseline: mib(base.RSS), BaselineName: baseName, Target: target, Met: met}
	b.res.add(rss)
	b.res.add(Figure{Section: "memory", Name: "speaker anonymous RSS (heap, stacks), " + label, Value: mib(m.Anon), Unit: "MiB",
		Baseline: mib(base.Anon), BaselineName: baseName})
	b.res.add(Figure{Section: "memory", Name: "speaker file-backed RSS (its executable), " + label, Value: mib(m.File), Unit: "MiB",
		Baseline: mib(base.File), BaselineName: baseName})
	b.res.add(Figure{Section: "memory", Name: "speaker peak RSS since start (VmHWM), " + label, Value: mib(m.Peak), Unit: "MiB",
		Baseline: mib(base.Peak), BaselineName: baseName})
}

// largest is the memory of whichever of pids has the largest RSS.
func largest(pids []int) (mem, error) {
	var top mem
	for _, pid := range pids {
		m, err := memOf(pid)
		if err != nil {
			return mem{}, err
		}
		if m.RSS > top.RSS {
			top = m
		}
	}
	if top.RSS == 0 {
		return mem{}, fmt.Errorf("no process runs")
	}
	return top, nil
}

// controllerMem is the largest RSS of the controller's replicas: both
// cache every Service, and either may lead.
func (b *bench) controllerMem() (mem, error) {
	var pids []int
	for _, p := range b.controllers.Running() {
		pids = append(pids, p.Pid())
	}
	m, err := largest(pids)
	if err != nil {
		return mem{}, fmt.Errorf("controller memory: %w", err)
	}
	return m, nil
}

func (b *bench) controllerFigure(label string, base mem) {
	m, err := b.controllerMem()
	if err != nil {
		b.res.problem("controller memory, %s: %v", label, err)
		return
	}
	b.res.add(Figure{Section: "memory", Name: "controller RSS, " + label, Value: mib(m.RSS), Unit: "MiB",
		Baseline: mib(base.RSS), BaselineName: "1 address", Note: fmt.Sprintf("the larger replica; anonymous %.0f MiB, peak %.0f MiB", mib(m.Anon), mib(m.Peak))})
}

// metalLBScalePool gives MetalLB room for its 1,000 Services, off Porter's
// scale pool and the kwok nodes' addresses.
const metalLBScalePool = `apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: bench-scale
  namespace: metallb-system
spec:
  addresses: [198.18.104.0-198.18.107.255]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: bench-scale
  namespace: metallb-system
spec:
  ipAddressPools: [bench-scale]
`

// metalLBMem is the largest RSS of MetalLB's speakers: each caches every
// Service, and announces a share of them.
func (b *bench) metalLBMem() (mem, error) {
	var pids []int
	for _, n := range b.env.Net.Nodes {
		if p := b.mlb.speakers.Proc(n.Name); p != nil {
			pids = append(pids, p.Pid())
		}
	}
	m, err := largest(pids)
	if err != nil {
		return mem{}, fmt.Errorf("MetalLB's speaker memory: %w", err)
	}
	return m, nil
}

// metalLBMemory measures MetalLB's speakers at their one bench Service and
// at n, each with a ready endpoint (MetalLB announces nothing without
// one), then deletes the n.
func (b *bench) metalLBMemory(ctx context.Context, kube kubernetes.Interface, n int) (one, many mem, err error) {
	if _, err := b.metalLB(ctx); err != nil {
		return mem{}, mem{}, err
	}
	// Settled: the bench Service announced, nothing else in flight.
	time.Sleep(10 * time.Second)
	if one, err = b.metalLBMem(); err != nil {
		return mem{}, mem{}, err
	}
	apply := b.env.Kubectl(ctx, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(metalLBScalePool)
	if out, err := apply.CombinedOutput(); err != nil {
		return mem{}, mem{}, fmt.Errorf("apply MetalLB's scale pool: %w\n%s", err, out)
	}
	node := b.env.Net.Nodes[0]
	class := metalLBClass
	fmt.Fprintf(os.Stderr, "creating %d MetalLB Services\n", n)
	err = parallel(0, n, 32, func(i int) error {
		name := fmt.Sprintf("mlb-%05d", i)
		svc := lbService(name, "")
		svc.Annotations = nil
		svc.Spec.LoadBalancerClass = &class
		if _, err := kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create Service %s: %w", name, err)
		}
		ready, port, proto, pname := true, int32(backend.Port), corev1.ProtocolTCP, "http"
		es := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: "default",
				Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "porter-bench"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{node.IP.String()}, NodeName: &node.Name,
				Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
			Ports: []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
		}
		if _, err := kube.DiscoveryV1().EndpointSlices("default").Create(ctx, es, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create the EndpointSlice of %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return mem{}, mem{}, err
	}
	err = pollEvery(ctx, 10*time.Minute, time.Second, func() bool {
		list, err := kube.CoreV1().Services("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		have := 0
		for i := range list.Items {
			if strings.HasPrefix(list.Items[i].Name, "mlb-") && lbservice.IngressIP(&list.Items[i]).IsValid() {
				have++
			}
		}
		return have >= n
	})
	if err != nil {
		return mem{}, mem{}, fmt.Errorf("MetalLB addressed fewer than %d Services: %w", n, err)
	}
	// Its speakers announce what its controller assigned; let them.
	time.Sleep(20 * time.Second)
	if many, err = b.metalLBMem(); err != nil {
		return mem{}, mem{}, err
	}
	fmt.Fprintf(os.Stderr, "MetalLB's speaker: %.0f MiB at one Service, %.0f MiB at %d\n", mib(one.RSS), mib(many.RSS), n)
	err = parallel(0, n, 32, func(i int) error {
		name := fmt.Sprintf("mlb-%05d", i)
		if err := kube.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err := kube.DiscoveryV1().EndpointSlices("default").Delete(ctx, name+"-1", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	})
	if err != nil {
		return one, many, fmt.Errorf("delete the MetalLB Services: %w", err)
	}
	return one, many, nil
}

// binaries builds the speaker and the controller as releases are built
// (stripped), here and at baseRef, and reports their sizes beside the
// earlier build and MetalLB's speaker.
func (b *bench) binaries(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "porter-bench-bin-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	build := func(src, out string) (map[string]int64, error) {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out+"/", "./cmd/porter-speaker", "./cmd/porter-controller")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if o, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build in %s: %w\n%s", src, err, o)
		}
		sizes := map[string]int64{}
		for _, n := range []string{"porter-speaker", "porter-controller"} {
			st, err := os.Stat(filepath.Join(out, n))
			if err != nil {
				return nil, err
			}
			sizes[n] = st.Size()
		}
		return sizes, nil
	}
	now, err := build(".", filepath.Join(dir, "now"))
	if err != nil {
		return err
	}
	// The earlier tree, from git, builds with the same toolchain and flags.
	old := filepath.Join(dir, "base")
	if err := os.MkdirAll(old, 0o755); err != nil {
		return err
	}
	arch := exec.CommandContext(ctx, "sh", "-c", "git archive "+b.o.sizeBase+" | tar -x -C "+old)
	if o, err := arch.CombinedOutput(); err != nil {
		return fmt.Errorf("unpack %s: %w\n%s", b.o.sizeBase, err, o)
	}
	base, err := build(old, filepath.Join(dir, "base-bin"))
	if err != nil {
		return err
	}
	for _, n := range []string{"porter-speaker", "porter-controller"} {
		b.res.add(Figure{Section: "memory", Name: n + " binary size (stripped)", Value: mib(now[n]), Unit: "MiB",
			Baseline: mib(base[n]), BaselineName: "the same build at " + b.o.sizeBase})
	}
	if bin := os.Getenv("PORTER_METALLB_BIN"); bin != "" {
		if st, err := os.Stat(filepath.Join(bin, "speaker")); err == nil {
			b.res.add(Figure{Section: "memory", Name: "porter-speaker binary size beside MetalLB's speaker", Value: mib(now["porter-speaker"]), Unit: "MiB",
				Baseline: mib(st.Size()), BaselineName: "MetalLB's speaker, as `make metallb` builds it"})
		}
	}
	return nil
}

// soak holds the cluster at its largest scale for o.soakFor, creating and
// deleting o.churn Services a minute, and samples the speaker's and the
// controller's memory, the speaker's goroutines (from /metrics) and its
// sockets.
func (b *bench) soak(ctx context.Context) error {
	node := b.env.Net.Nodes[0]
	proc := b.speakers.Proc(node.Name)
	if proc == nil {
		return fmt.Errorf("no speaker on %s: the soak runs after the scale section", node.Name)
	}
	kube, err := kubernetes.NewForConfig(withQPS(b.env.Cluster.Config))
	if err != nil {
		return err
	}
	type sample struct {
		at         time.Duration
		m          mem
		ctl        mem
		goroutines float64
		sockets    int
	}
	var samples []sample
	take := func(at time.Duration) error {
		m, err := memOf(proc.Pid())
		if err != nil {
			return err
		}
		g, err := metric(ctx, node, "go_goroutines")
		if err != nil {
			return err
		}
		s, err := sockets(proc.Pid())
		if err != nil {
			return err
		}
		c, _ := b.controllerMem()
		samples = append(samples, sample{at, m, c, g, s})
		fmt.Fprintf(os.Stderr, "soak %s: RSS %.1f MiB (anon %.1f), %v goroutines, %d sockets; controller %.1f MiB\n",
			at.Round(time.Second), mib(m.RSS), mib(m.Anon), g, s, mib(c.RSS))
		return nil
	}
	// The speaker's CPU at rest with every Service in place, then over
	// the churn: each replacement rewrites the pool's status (up to once a
	// second) and the speaker's report, and the speaker reads both.
	t0, err := cpuTicks([]int{proc.Pid()})
	if err != nil {
		return err
	}
	restStart := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(cpuWindow):
	}
	t1, err := cpuTicks([]int{proc.Pid()})
	if err != nil {
		return err
	}
	atRest := millicores(t1-t0, time.Since(restStart))
	start := time.Now()
	if err := take(0); err != nil {
		return err
	}
	per := max(b.o.churn, 1)
	replaced, churnErr := b.churn(ctx, kube, per, b.o.soakFor)
	sampleEvery := time.NewTicker(30 * time.Second)
	defer sampleEvery.Stop()
	for time.Since(start) < b.o.soakFor {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-churnErr:
			if err != nil {
				return err
			}
			churnErr = nil // done: the last replacement was due before the end
		case <-sampleEvery.C:
			if err := take(time.Since(start)); err != nil {
				return err
			}
		}
	}
	if churnErr != nil {
		if err := <-churnErr; err != nil {
			return err
		}
	}
	if err := take(time.Since(start)); err != nil {
		return err
	}
	t2, err := cpuTicks([]int{proc.Pid()})
	if err != nil {
		return err
	}
	churnCPU := millicores(t2-t1, time.Since(start))
	// Flat: the last quarter's median against the second quarter's, past
	// the first churn's warm-up.
	q := len(samples) / 4
	if q < 2 {
		return fmt.Errorf("%d samples are too few to judge", len(samples))
	}
	median := func(ss []sample, f func(sample) float64) float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	early, late := samples[q:2*q], samples[len(samples)-q:]
	label := fmt.Sprintf("%s at %d Services, %d created and %d deleted a minute", b.o.soakFor, b.o.scales[len(b.o.scales)-1], per, per)
	b.res.add(Figure{Section: "soak", Name: "speaker CPU over the soak, " + label, Value: churnCPU, Unit: "millicores",
		Baseline: atRest, BaselineName: fmt.Sprintf("at rest with the same Services, over %s before", cpuWindow)})
	rssE, rssL := median(early, func(s sample) float64 { return mib(s.m.RSS) }), median(late, func(s sample) float64 { return mib(s.m.RSS) })
	b.res.add(Figure{Section: "soak", Name: "speaker RSS, last quarter of the soak (median), " + label, Value: rssL, Unit: "MiB",
		Baseline: rssE, BaselineName: "second quarter (median)", Target: "flat (≤ 1.1×)", Met: met(rssL <= 1.1*rssE)})
	anE, anL := median(early, func(s sample) float64 { return mib(s.m.Anon) }), median(late, func(s sample) float64 { return mib(s.m.Anon) })
	b.res.add(Figure{Section: "soak", Name: "speaker anonymous RSS, last quarter (median)", Value: anL, Unit: "MiB",
		Baseline: anE, BaselineName: "second quarter (median)"})
	peak := samples[len(samples)-1].m.Peak
	b.res.add(Figure{Section: "soak", Name: "speaker peak RSS (VmHWM) over the scale section and the soak", Value: mib(peak), Unit: "MiB",
		Baseline: rssL, BaselineName: "RSS, last quarter (median)"})
	gE, gL := median(early, func(s sample) float64 { return s.goroutines }), median(late, func(s sample) float64 { return s.goroutines })
	b.res.add(Figure{Section: "soak", Name: "speaker goroutines, last quarter (median)", Value: gL, Unit: "goroutines",
		Baseline: gE, BaselineName: "second quarter (median)", Target: "no growth (≤ 1.1×)", Met: met(gL <= 1.1*gE)})
	// A count of a few sockets steps between neighbours as connections
	// come and go, and a median can land on either: growth is the last
	// quarter never coming down to what the second quarter reached.
	sE, sL := median(early, func(s sample) float64 { return float64(s.sockets) }), median(late, func(s sample) float64 { return float64(s.sockets) })
	socketCounts := func(ss []sample) []int {
		v := make([]int, len(ss))
		for i, s := range ss {
			v[i] = s.sockets
		}
		return v
	}
	fewestLate, mostEarly := slices.Min(socketCounts(late)), slices.Max(socketCounts(early))
	b.res.add(Figure{Section: "soak", Name: "speaker sockets, last quarter (median)", Value: sL, Unit: "sockets",
		Baseline: sE, BaselineName: "second quarter (median)", Target: "no growth: last quarter's fewest ≤ second quarter's most", Met: met(fewestLate <= mostEarly),
		Note: fmt.Sprintf("last quarter %d–%d, second quarter %d–%d", fewestLate, slices.Max(socketCounts(late)), slices.Min(socketCounts(early)), mostEarly)})
	cE, cL := median(early, func(s sample) float64 { return mib(s.ctl.RSS) }), median(late, func(s sample) float64 { return mib(s.ctl.RSS) })
	b.res.add(Figure{Section: "soak", Name: "controller RSS, last quarter (median)", Value: cL, Unit: "MiB",
		Baseline: cE, BaselineName: "second quarter (median)"})
	want := float64(per) * b.o.soakFor.Minutes()
	n := float64(replaced.Load())
	b.res.add(Figure{Section: "soak", Name: "Services replaced during the soak", Value: n, Unit: "Services",
		Baseline: want, BaselineName: fmt.Sprintf("%d a minute", per), Target: "≥ 0.95×", Met: met(n >= 0.95*want),
		Note: fmt.Sprintf("%d samples, every 30 s", len(samples))})
	return nil
}

// churnWorkers is how many create-and-delete pairs may be in flight at
// once: one at a time, a pair waits for an API server that also carries
// 1,000 nodes and 10,000 Services, and the soak falls behind its rate.
const churnWorkers = 4

// churn replaces per Services a minute for d: the i-th replacement
// creates soak-i and deletes the i-th oldest Service, so the count stays
// and every address is released and taken again. Replacements are due
// on a fixed schedule and run on churnWorkers workers, so that one slow
// answer does not cost the rate. The channel gets the first error, or
// nil once the last replacement is done.
func (b *bench) churn(ctx context.Context, kube kubernetes.Interface, per int, d time.Duration) (*atomic.Int64, <-chan error) {
	var done atomic.Int64
	out := make(chan error, 1)
	total := int(float64(per) * d.Minutes())
	scale := b.o.scales[len(b.o.scales)-1]
	jobs := make(chan int)
	errs := make(chan error, churnWorkers)
	var wg sync.WaitGroup
	for range churnWorkers {
		wg.Go(func() {
			for i := range jobs {
				name := fmt.Sprintf("soak-%06d", i)
				if _, err := kube.CoreV1().Services("default").Create(ctx, lbService(name, "scale"), metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
					return
				}
				victim := fmt.Sprintf("scale-%05d", i)
				if i >= scale {
					victim = fmt.Sprintf("soak-%06d", i-scale)
				}
				if err := kube.CoreV1().Services("default").Delete(ctx, victim, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					errs <- fmt.Errorf("delete %s: %w", victim, err)
					return
				}
				done.Add(1)
			}
		})
	}
	go func() {
		defer func() {
			close(jobs)
			wg.Wait()
			select {
			case err := <-errs:
				out <- err
			default:
				out <- nil
			}
		}()
		start := time.Now()
		every := time.Minute / time.Duration(per)
		for i := range total {
			if wait := time.Until(start.Add(time.Duration(i) * every)); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				errs <- err
				return
			case jobs <- i:
			}
		}
	}()
	return &done, out
}
