package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/lbservice"
)

// scalePool holds 10,240 addresses, off the LAN's /24 so that the LAN's
// own hosts never collide with it; ARP asks for an address, not a subnet.
const scalePool = `apiVersion: network.kubesphere.io/v1alpha2
kind: Eip
metadata:
  name: scale
spec:
  address: 198.18.64.0-198.18.103.255
  protocol: layer2
`

// serviceCIDR gives the cluster room for 10,000 more ClusterIPs: the lab's
// own range holds 254.
const serviceCIDR = `apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata:
  name: bench-scale
spec:
  cidrs: [198.19.0.0/16]
`

// scale pins the speaker to one node, so that it owns every address, and
// grows the number of Services through o.scales.
func (b *bench) scale(ctx context.Context) error {
	node := b.env.Net.Nodes[0]
	if err := b.growTo(ctx, b.o.nodes); err != nil {
		return err
	}
	// The baseline is one address: the IPv6 Service of the failover
	// sections goes first.
	if b.vip6.IsValid() {
		if err := b.kube.CoreV1().Services("default").Delete(ctx, "bench6", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete the IPv6 Service: %w", err)
		}
	}
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"nodeSelector":{"kubernetes.io/hostname":%q}}}}}`, node.Name)
	if out, err := b.env.Kubectl(ctx, "-n", "porter-system", "patch", "daemonset", "porter-speaker", "--type", "merge", "-p", patch).CombinedOutput(); err != nil {
		return fmt.Errorf("pin the speaker to %s: %w: %s", node.Name, err, out)
	}
	// Every pod is replaced, node1's too: the processes restarted below
	// are the new pods', whose tokens are bound to them.
	if out, err := b.env.Kubectl(ctx, "-n", "porter-system", "rollout", "status", "daemonset/porter-speaker", "--timeout=2m").CombinedOutput(); err != nil {
		return fmt.Errorf("wait for the pinned speaker rollout: %w: %s", err, out)
	}
	err := poll(ctx, 2*time.Minute, func() bool {
		// node1's process is its new pod's: a restart needs a token bound
		// to a pod that exists.
		pods, err := b.kube.CoreV1().Pods("porter-system").List(ctx, metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/name=porter-speaker", FieldSelector: "spec.nodeName=" + node.Name})
		if err != nil || len(pods.Items) != 1 || pods.Items[0].DeletionTimestamp != nil {
			return false
		}
		if p := b.speakers.Proc(node.Name); p == nil || p.Pod != pods.Items[0].UID {
			return false
		}
		for _, n := range b.env.Net.Nodes[1:] {
			if b.speakers.Proc(n.Name) != nil {
				return false
			}
		}
		v, err := metric(ctx, node, "porter_owned_ips")
		return err == nil && v == 1
	})
	if err != nil {
		return fmt.Errorf("wait for %s's speaker to own the bench address alone: %w", node.Name, err)
	}
	// Settled: caches synced, the address announced.
	time.Sleep(10 * time.Second)
	proc := b.speakers.Proc(node.Name)
	mem0, err := memOf(proc.Pid())
	if err != nil {
		return err
	}
	ctl0, err := b.controllerMem()
	if err != nil {
		return err
	}
	fast, err := kubernetes.NewForConfig(withQPS(b.env.Cluster.Config))
	if err != nil {
		return err
	}
	b.memFigures("1 address", mem0, mem{}, "", "≤ 32 MiB", met(mem0.RSS <= 32<<20))
	b.res.add(Figure{Section: "memory", Name: "controller RSS, 1 address", Value: mib(ctl0.RSS), Unit: "MiB",
		Note: fmt.Sprintf("the larger replica; anonymous %.0f MiB", mib(ctl0.Anon))})
	// Room for thousands of ClusterIPs, MetalLB's Services' too.
	cidr := b.env.Kubectl(ctx, "apply", "-f", "-")
	cidr.Stdin = strings.NewReader(serviceCIDR)
	if out, err := cidr.CombinedOutput(); err != nil {
		return fmt.Errorf("widen the Service range: %w: %s", err, out)
	}
	// MetalLB, measured here, on the same nodes, before the cluster fills.
	// At most 1,000: MetalLB's scale pool holds 1,024 addresses.
	mlbN := min(b.o.scales[0], 1000)
	if mlb1, mlbMany, err := b.metalLBMemory(ctx, fast, mlbN); err != nil {
		b.res.problem("MetalLB's memory: %v", err)
	} else {
		b.res.add(Figure{Section: "memory", Name: "speaker RSS beside MetalLB's, 1 Service", Value: mib(mem0.RSS), Unit: "MiB",
			Baseline: mib(mlb1.RSS), BaselineName: "MetalLB's speaker", Note: fmt.Sprintf("MetalLB's anonymous %.0f MiB, file-backed %.0f MiB", mib(mlb1.Anon), mib(mlb1.File))})
		b.mlbAt = map[int]mem{1: mlb1, mlbN: mlbMany}
	}
	b.stopMetalLB()
	garp0, err := b.garpTime(ctx, 1)
	if err != nil {
		return fmt.Errorf("gratuitous ARP baseline: %w", err)
	}
	fmt.Fprintf(os.Stderr, "one address: RSS %.1f MiB, restart to gratuitous ARP %s\n", mib(mem0.RSS), garp0)

	cmd := b.env.Kubectl(ctx, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(scalePool)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("create the scale pool: %w: %s", err, out)
	}
	have := 0
	for _, n := range b.o.scales {
		if err := b.scaleTo(ctx, fast, node.Name, have, n, mem0, ctl0, garp0); err != nil {
			b.res.problem("scale %d: %v", n, err)
			break
		}
		have = n
	}
	return nil
}

// scaleTo grows the scale Services from have to n. mem0 and ctl0 are the
// speaker's and the controller's memory at one address.
func (b *bench) scaleTo(ctx context.Context, kube kubernetes.Interface, node string, have, n int, mem0, ctl0 mem, garp0 time.Duration) error {
	label := fmt.Sprintf("%d addresses", n)
	fmt.Fprintf(os.Stderr, "creating Services %d to %d\n", have+1, n)
	start := time.Now()
	createErr := parallel(have, n, 32, func(i int) error {
		_, err := kube.CoreV1().Services("default").Create(ctx, lbService(fmt.Sprintf("scale-%05d", i), "scale"), metav1.CreateOptions{})
		return err
	})
	created := time.Since(start)
	if createErr != nil {
		return fmt.Errorf("create Services: %w", createErr)
	}
	var ips []netip.Addr
	// Listing 10,000 Services is heavy; a second is fine resolution here.
	err := pollEvery(ctx, 30*time.Minute, time.Second, func() bool {
		ips = b.scaleIPs(ctx, kube)
		return len(ips) >= n
	})
	allocated := time.Since(start)
	if err != nil {
		return fmt.Errorf("%d of %d Services got an address: %w", len(ips), n, err)
	}
	fmt.Fprintf(os.Stderr, "%d Services created in %s, all with an address after %s\n", n-have, created.Round(time.Millisecond), allocated.Round(time.Millisecond))
	b.res.add(Figure{Section: "allocator", Name: fmt.Sprintf("address %d new Services (%d in all)", n-have, n), Value: allocated.Seconds(), Unit: "s",
		Baseline: created.Seconds(), BaselineName: "creating them, API writes alone"})

	// The data path: every address answered on the node.
	pn := b.env.Net.Node(node)
	err = poll(ctx, 20*time.Minute, func() bool {
		v, err := metric(ctx, pn, "porter_owned_ips")
		return err == nil && int(v) == n+1
	})
	if err != nil {
		return fmt.Errorf("wait for %s to own %d addresses: %w", node, n+1, err)
	}
	announced := time.Since(start)
	b.res.add(Figure{Section: "scale", Name: "creation to every address answered, " + label, Value: announced.Seconds(), Unit: "s",
		Baseline: created.Seconds(), BaselineName: "creating the Services"})
	// Memory and ARP are measured in the steady state, once the speaker
	// has written the announcer annotation of every Service; the restart
	// below relies on those annotations too.
	err = pollEvery(ctx, 30*time.Minute, time.Second, func() bool { return b.announcedBy(ctx, kube, node) >= n })
	if err != nil {
		return fmt.Errorf("wait for the announcer annotations: %w", err)
	}
	b.res.add(Figure{Section: "scale", Name: "creation to every announcer annotation written, " + label, Value: time.Since(start).Seconds(), Unit: "s",
		Baseline: created.Seconds(), BaselineName: "creating the Services"})
	// The round trip while the speaker has yet to list every address in
	// its NIC report, beside the kernel's; no target, since the report's
	// write (below) can land during it.
	sample := make([]netip.Addr, 0, b.o.arpRequests)
	for range b.o.arpRequests {
		sample = append(sample, ips[rand.IntN(len(ips))])
	}
	rt, err := b.arpRoundTrips(b.o.arpRequests, [][]netip.Addr{sample, {pn.IP}})
	if err != nil {
		return err
	}
	b.arpFigures("scale", label+", as soon as annotated, before the report listed every address", rt[0], rt[1], "")
	// The steady state comes once the speaker has also listed every
	// address in its NIC report: it defers that write, at 1 ms an address
	// (10 s at 10,000), and a report of 10,000 is half a megabyte, which
	// the speaker encodes and every speaker and replica decodes.
	err = pollEvery(ctx, 5*time.Minute, time.Second, func() bool { return b.reported(ctx, kube, node) >= n+1 })
	if err != nil {
		return fmt.Errorf("wait for %s's NIC report to list %d addresses: %w", node, n+1, err)
	}
	proc := b.speakers.Proc(node)
	if proc == nil {
		return fmt.Errorf("no speaker on %s", node)
	}
	m, err := memOf(proc.Pid())
	if err != nil {
		return err
	}
	target, ok := "", (*bool)(nil)
	if n >= 10000 {
		target, ok = "< 64 MiB", met(m.RSS < 64<<20)
	}
	b.memFigures(label, m, mem0, "1 address", target, ok)
	b.controllerFigure(label, ctl0)
	if mlb, found := b.mlbAt[n]; found {
		b.res.add(Figure{Section: "memory", Name: fmt.Sprintf("speaker RSS beside MetalLB's, %d Services", n), Value: mib(m.RSS), Unit: "MiB",
			Baseline: mib(mlb.RSS), BaselineName: "MetalLB's speaker",
			Note: fmt.Sprintf("MetalLB's largest speaker, with %d Services of its own and a ready endpoint each; anonymous %.0f MiB, file-backed %.0f MiB", n, mib(mlb.Anon), mib(mlb.File))})
	}

	rt, err = b.arpRoundTrips(b.o.arpRequests, [][]netip.Addr{sample, {pn.IP}})
	if err != nil {
		return err
	}
	b.arpFigures("scale", label, rt[0], rt[1], "p99")
	if err := b.arpRounds(label, sample, pn.IP); err != nil {
		return err
	}

	// A restart finds every address already announced by this node, so
	// it skips the conflict probe and sends gratuitous ARP for all at
	// once, as a node taking over would.
	g, err := b.garpTime(ctx, n+1)
	if err != nil {
		return err
	}
	b.res.add(Figure{Section: "scale", Name: "restart to gratuitous ARP sent for all, " + label, Value: ms(g), Unit: "ms",
		Baseline: ms(garp0), BaselineName: "1 address"})
	if n < b.o.scales[len(b.o.scales)-1] {
		return nil
	}
	// The first measurement comes as soon as the speaker's report lists
	// every address, when the lab's API server and the controller may
	// still be busy with the creations. Once more, settled: after the
	// restart and its gratuitous ARP rounds (250 ms, 1 s and 3 s after
	// gaining).
	time.Sleep(10 * time.Second)
	rt, err = b.arpRoundTrips(b.o.arpRequests, [][]netip.Addr{sample, {pn.IP}})
	if err != nil {
		return err
	}
	b.arpFigures("scale", label+", settled, after a restart", rt[0], rt[1], "")
	return nil
}

// scaleIPs are the addresses the scale Services have.
func (b *bench) scaleIPs(ctx context.Context, kube kubernetes.Interface) []netip.Addr {
	list, err := kube.CoreV1().Services("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var ips []netip.Addr
	for i := range list.Items {
		s := &list.Items[i]
		if strings.HasPrefix(s.Name, "scale-") {
			if ip := lbservice.IngressIP(s); ip.IsValid() {
				ips = append(ips, ip)
			}
		}
	}
	return ips
}

func (b *bench) announcedBy(ctx context.Context, kube kubernetes.Interface, node string) int {
	list, err := kube.CoreV1().Services("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0
	}
	n := 0
	for i := range list.Items {
		if an, ok := lbservice.ParseAnnouncer(&list.Items[i]); ok && an.Node == node && strings.HasPrefix(list.Items[i].Name, "scale-") {
			n++
		}
	}
	return n
}

// reported is how many addresses node's speaker lists in its NIC report,
// or -1 when that cannot be read.
func (b *bench) reported(ctx context.Context, kube kubernetes.Interface, node string) int {
	gv := v1alpha1.GroupVersion
	raw, err := kube.CoreV1().RESTClient().Get().AbsPath("/apis", gv.Group, gv.Version, "nodenics", node).DoRaw(ctx)
	if err != nil {
		return -1
	}
	var r v1alpha1.NodeNICs
	if err := json.Unmarshal(raw, &r); err != nil || r.Status.Speaker == nil {
		return -1
	}
	return len(r.Status.Speaker.Addresses)
}

// garpTime restarts the speaker on the first node, as a kubelet restarts
// a container, and returns the time until its metrics count a gratuitous
// request and reply for each of want addresses.
func (b *bench) garpTime(ctx context.Context, want int) (time.Duration, error) {
	node := b.env.Net.Nodes[0]
	start := time.Now()
	if err := b.speakers.Restart(node.Name); err != nil {
		return 0, err
	}
	var got float64
	err := pollEvery(ctx, 2*time.Minute, 5*time.Millisecond, func() bool {
		v, err := metric(ctx, node, "porter_gratuitous_arps_sent_total")
		got = v
		return err == nil && int(v) >= 2*want
	})
	if err != nil {
		return 0, fmt.Errorf("%d of %d gratuitous ARPs after a restart: %w", int(got), 2*want, err)
	}
	return time.Since(start), nil
}

func pollEvery(ctx context.Context, timeout, every time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
	return nil
}

// arpRounds measures the round trip for sample beside the kernel's for
// node in b.o.arpRounds more rounds of b.o.arpRequests, one to three
// seconds apart, and records the median round's p99 and the spread. One
// round lasts about half a second and its p99 is its 20th-worst reply,
// so whatever else the machine did in that half-second moves it; the
// rounds fall at different points of the speaker's 2 s reconcile.
func (b *bench) arpRounds(label string, sample []netip.Addr, node netip.Addr) error {
	if b.o.arpRounds < 1 {
		return nil
	}
	type round struct{ s, k time.Duration }
	var rounds []round
	for i := range b.o.arpRounds {
		rt, err := b.arpRoundTrips(b.o.arpRequests, [][]netip.Addr{sample, {node}})
		if err != nil {
			return err
		}
		if len(rt[0].d) > 0 && len(rt[1].d) > 0 {
			rounds = append(rounds, round{quantile(rt[0].d, 0.99), quantile(rt[1].d, 0.99)})
		}
		time.Sleep(time.Second + time.Duration(i*733%2000)*time.Millisecond)
	}
	if len(rounds) == 0 {
		b.res.problem("scale %s: no ARP round had answers", label)
		return nil
	}
	ratio := func(r round) float64 { return float64(r.s) / float64(r.k) }
	slices.SortFunc(rounds, func(a, b round) int { return cmp.Compare(ratio(a), ratio(b)) })
	within := 0
	for _, r := range rounds {
		if ratio(r) <= 1.5 {
			within++
		}
	}
	med := rounds[len(rounds)/2]
	b.res.add(Figure{Section: "scale", Name: fmt.Sprintf("speaker p99, %s, median of %d rounds", label, len(rounds)), Value: us(med.s), Unit: "µs",
		Baseline: us(med.k), BaselineName: "kernel p99, same round",
		Note: fmt.Sprintf("rounds of %d requests; ratios from %.2f to %.2f; %d of %d rounds within 1.5×", b.o.arpRequests, ratio(rounds[0]), ratio(rounds[len(rounds)-1]), within, len(rounds))})
	return nil
}
