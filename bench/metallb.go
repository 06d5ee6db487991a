package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/test/backend"
	"github.com/porterlb/porter/test/daemons"
)

// MetalLB runs beside Porter in the same lab, on the same nodes, for the
// same client: its own namespace, its own load balancer class (so neither
// touches the other's Service), its own memberlist port (7946, Porter's is
// 7947) and its own pool.
const (
	metalLBNamespace = "metallb-system"
	metalLBClass     = "metallb"
	metalLBPool      = "198.18.0.160-198.18.0.180"
	metalLBLabels    = "app=metallb,component=speaker"
	metalLBService   = "bench-metallb"
)

// metalLBObjects are MetalLB's namespace, its speaker DaemonSet and
// controller Deployment (kwok pretends to run the pods, whose names MetalLB
// reads; the real processes run beside them), its pool and its layer 2
// advertisement.
var metalLBObjects = `apiVersion: v1
kind: Namespace
metadata:
  name: metallb-system
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: speaker
  namespace: metallb-system
spec:
  selector:
    matchLabels: {app: metallb, component: speaker}
  template:
    metadata:
      labels: {app: metallb, component: speaker}
    spec:
      hostNetwork: true
      tolerations:
      - operator: Exists
      containers:
      - name: speaker
        image: quay.io/metallb/speaker:v0.16.2
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: controller
  namespace: metallb-system
spec:
  replicas: 1
  selector:
    matchLabels: {app: metallb, component: controller}
  template:
    metadata:
      labels: {app: metallb, component: controller}
    spec:
      tolerations:
      - operator: Exists
      containers:
      - name: controller
        image: quay.io/metallb/controller:v0.16.2
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: bench
  namespace: metallb-system
spec:
  addresses: [` + metalLBPool + `]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: bench
  namespace: metallb-system
spec:
  ipAddressPools: [bench]
`

// metalLB sets MetalLB up once and returns it as a stack.
func (b *bench) metalLB(ctx context.Context) (*stack, error) {
	if b.mlb != nil {
		return b.mlb, nil
	}
	bin := os.Getenv("PORTER_METALLB_BIN")
	if bin == "" {
		return nil, errors.New("PORTER_METALLB_BIN is not set: run the benchmark through `make bench`, which builds MetalLB (`make metallb`)")
	}
	for _, p := range []string{"speaker", "controller"} {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			return nil, fmt.Errorf("MetalLB's %s: %w (build it with `make metallb`)", p, err)
		}
	}
	fmt.Fprintln(os.Stderr, "== setting up MetalLB v0.16.2 beside Porter")
	list := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "go.universe.tf/metallb")
	list.Dir = filepath.Join("hack", "metallb")
	out, err := list.Output()
	if err != nil {
		return nil, fmt.Errorf("find MetalLB's module: %w", err)
	}
	crds := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "bases")
	if out, err := b.env.Kubectl(ctx, "apply", "--server-side", "-f", crds).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apply MetalLB's CRDs: %w\n%s", err, out)
	}
	if out, err := b.env.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/ipaddresspools.metallb.io", "crd/l2advertisements.metallb.io").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("wait for MetalLB's CRDs: %w\n%s", err, out)
	}
	apply := b.env.Kubectl(ctx, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(metalLBObjects)
	if out, err := apply.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apply MetalLB's objects: %w\n%s", err, out)
	}

	dir := filepath.Join(b.env.Sandbox.Dir(), "metallb")
	keyDir := filepath.Join(dir, "memberlist")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(filepath.Join(keyDir, "secretkey"), []byte(hex.EncodeToString(key)), 0o600); err != nil {
		return nil, err
	}
	kc, err := b.env.Cluster.LANKubeconfig()
	if err != nil {
		return nil, err
	}
	speakers, err := daemons.Start(ctx, daemons.Options{
		Client: b.kube, Net: b.env.Net,
		Namespace: metalLBNamespace, Selector: metalLBLabels,
		LogDir: filepath.Join(dir, "speakers"),
		Command: func(p *corev1.Pod) ([]string, error) {
			node := p.Spec.NodeName
			n := b.env.Net.Node(node)
			if n == nil {
				return nil, fmt.Errorf("no lab node %s", node)
			}
			pod, err := b.metalLBPod(ctx, metalLBLabels, node)
			if err != nil {
				return nil, err
			}
			return []string{"env", "KUBECONFIG=" + kc, filepath.Join(bin, "speaker"),
				"--node-name", node, "--pod-name", pod, "--namespace", metalLBNamespace,
				"--ml-bindaddr", n.IP.String(), "--ml-labels", metalLBLabels, "--ml-secret-key-path", keyDir,
				"--lb-class", metalLBClass, "--port", "0", "--log-level", "info"}, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("run MetalLB's speakers: %w", err)
	}
	b.cleanups = append(b.cleanups, speakers.Stop)
	log, err := os.Create(filepath.Join(dir, "controller.log"))
	if err != nil {
		return nil, err
	}
	var ctlPod string
	if err := poll(ctx, time.Minute, func() bool {
		ctlPod, err = b.metalLBPod(ctx, "app=metallb,component=controller", "")
		return err == nil
	}); err != nil {
		return nil, fmt.Errorf("wait for MetalLB's controller pod: %w", err)
	}
	// On a lab node, where the API server's LAN address is reachable.
	ctl := b.env.Net.Nodes[0].Command(context.Background(), "env", "KUBECONFIG="+kc, filepath.Join(bin, "controller"),
		"--namespace", metalLBNamespace, "--pod-name", ctlPod, "--lb-class", metalLBClass,
		"--webhook-mode", "disabled", "--disable-cert-rotation", "--port", "0", "--health-probe-port", "0", "--log-level", "info")
	ctl.Stdout, ctl.Stderr = log, log
	if err := ctl.Start(); err != nil {
		return nil, fmt.Errorf("run MetalLB's controller: %w", err)
	}
	b.cleanups = append(b.cleanups, func() {
		_ = ctl.Process.Kill()
		_ = ctl.Wait()
		log.Close()
	})
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := speakers.WaitAll(wctx); err != nil {
		return nil, err
	}
	vip, err := b.metalLBService(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w; see %s", err, dir)
	}
	for _, n := range b.env.Net.Nodes {
		if err := backend.Hold(ctx, n, vip); err != nil {
			return nil, err
		}
	}
	if _, err := backend.ServedBy(wctx, b.env.Net.Client, vip, func(string) bool { return true }); err != nil {
		return nil, fmt.Errorf("the client is not served through MetalLB's %s: %w; see %s", vip, err, dir)
	}
	s := &stack{name: "MetalLB", vip: vip, speakers: speakers}
	s.gains = func(context.Context) (float64, error) {
		var n float64
		for _, f := range speakers.LogFiles() {
			b, err := os.ReadFile(f)
			if err != nil {
				return 0, err
			}
			// Logged at info each time a speaker starts to announce.
			n += float64(bytes.Count(b, []byte("service has IP, announcing")))
		}
		return n, nil
	}
	s.settled = func(context.Context) bool {
		for _, n := range b.env.Net.Nodes {
			p := speakers.Proc(n.Name)
			if p == nil {
				return false
			}
			select {
			case <-p.Done():
				return false
			default:
			}
		}
		return true
	}
	b.mlb = s
	fmt.Fprintf(os.Stderr, "MetalLB answers for %s\n", vip)
	return s, nil
}

// metalLBPod is the name of the MetalLB pod that selector picks, on node
// unless node is "".
func (b *bench) metalLBPod(ctx context.Context, selector, node string) (string, error) {
	opts := metav1.ListOptions{LabelSelector: selector}
	if node != "" {
		opts.FieldSelector = "spec.nodeName=" + node
	}
	l, err := b.kube.CoreV1().Pods(metalLBNamespace).List(ctx, opts)
	if err != nil {
		return "", fmt.Errorf("list MetalLB pods: %w", err)
	}
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			return p.Name, nil
		}
	}
	return "", fmt.Errorf("no MetalLB pod %s on %q", selector, node)
}

// metalLBService creates MetalLB's Service, with a ready endpoint (MetalLB
// announces no Service without one), and returns its address.
func (b *bench) metalLBService(ctx context.Context) (netip.Addr, error) {
	svc := lbService(metalLBService, "")
	svc.Annotations = nil
	class := metalLBClass
	svc.Spec.LoadBalancerClass = &class
	// A second set-up, after MetalLB was stopped, finds them in place.
	if _, err := b.kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return netip.Addr{}, fmt.Errorf("create Service %s: %w", metalLBService, err)
	}
	n := b.env.Net.Nodes[0]
	ready, port, proto := true, int32(backend.Port), corev1.ProtocolTCP
	name := "http"
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: metalLBService + "-1", Namespace: "default",
			Labels: map[string]string{discoveryv1.LabelServiceName: metalLBService, discoveryv1.LabelManagedBy: "porter-bench"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{n.IP.String()}, NodeName: &n.Name,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
	if _, err := b.kube.DiscoveryV1().EndpointSlices("default").Create(ctx, es, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return netip.Addr{}, fmt.Errorf("create the EndpointSlice of %s: %w", metalLBService, err)
	}
	var ip netip.Addr
	err := poll(ctx, time.Minute, func() bool {
		s, err := b.kube.CoreV1().Services("default").Get(ctx, metalLBService, metav1.GetOptions{})
		if err == nil {
			ip = lbservice.IngressIP(s)
		}
		return ip.IsValid()
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("MetalLB gave %s no address: %w", metalLBService, err)
	}
	return ip, nil
}

// stopMetalLB stops MetalLB's processes, if they run.
func (b *bench) stopMetalLB() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
	b.cleanups, b.mlb = nil, nil
}
