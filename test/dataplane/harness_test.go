// Package dataplane tests porter-speaker end to end: three lab nodes, each
// running the speaker as a process in its own network namespace against the
// lab cluster, a client on the same LAN, and ARP on a real (virtual) wire.
// Each node plays kube-proxy in IPVS mode: Service addresses sit on its
// loopback with arp_ignore=1 and arp_announce=2, as strictARP sets, so only
// the speaker can make the node answer for them, and a small TCP server
// answers with the node's name.
package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/pkg/memberkey"
	"github.com/porterlb/porter/test/backend"
	"github.com/porterlb/porter/test/lab"
	"github.com/porterlb/porter/test/netlab"
)

var (
	env *lab.Env
	// labKey is the gossip key of the lab's speakers.
	labKey = []byte("porter-dataplane-lab-member-key!")
	// speakerKubeconfigs, by node, authenticate as the speaker's
	// ServiceAccount with a token bound to the node's speaker pod, so the
	// speakers run with exactly the RBAC of manifests/rbac.yaml and the
	// admission policies see their node.
	speakerKubeconfigs = map[string]string{}
	// controllers run for the whole package, as the Deployment would.
	controllers *controllerSet
)

func TestMain(m *testing.M) {
	os.Exit(lab.Main(m, lab.EnvOptions{
		Net:   &netlab.Options{Nodes: 3, SecondNIC: true},
		Build: []string{"github.com/porterlb/porter/cmd/porter-speaker", "github.com/porterlb/porter/cmd/porter-controller", "github.com/porterlb/porter/cmd/kubectl-porter"},
	}, setup))
}

func setup(e *lab.Env) {
	env = e
	ctx := context.Background()
	crds, _ := filepath.Abs("../../manifests/crd")
	ns, _ := filepath.Abs("../../manifests/namespace.yaml")
	rbac, _ := filepath.Abs("../../manifests/rbac.yaml")
	guardPolicy, _ := filepath.Abs("../../manifests/guard-policy.yaml")
	speakerPolicy, _ := filepath.Abs("../../manifests/speaker-policy.yaml")
	for _, args := range [][]string{
		{"apply", "-f", crds, "-f", ns},
		{"apply", "-f", rbac, "-f", guardPolicy, "-f", speakerPolicy},
		{"wait", "--for", "condition=established", "--timeout=60s", "crd/nodenics.porter.kubesphere.io", "crd/eips.network.kubesphere.io"},
	} {
		if out, err := e.Cluster.Kubectl(ctx, args...).CombinedOutput(); err != nil {
			panic(fmt.Sprintf("kubectl %v: %v\n%s", args, err, out))
		}
	}
	var err error
	if controllers, err = startControllers(ctx, e, "replica-a", "replica-b"); err != nil {
		panic(err)
	}
	e.Defer(func(failed bool) {
		controllers.stop()
		if failed {
			fmt.Fprintf(os.Stderr, "controller logs:\n%s", controllers.logs())
		}
	})
	// The gossip key, as init makes it.
	if _, err := e.Cluster.Client.CoreV1().Secrets("porter-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: memberkey.SecretName},
		Data:       map[string][]byte{memberkey.DataKey: memberkey.Format([][]byte{labKey})},
	}, metav1.CreateOptions{}); err != nil {
		panic(fmt.Sprintf("create the member key: %v", err))
	}
	for _, n := range e.Net.Nodes {
		if _, err := e.Cluster.CreateNode(ctx, lab.Node{Name: n.Name, InternalIP: n.IP}); err != nil {
			panic(err)
		}
		// A ready porter-speaker pod on the node, as the DaemonSet makes
		// (kwok marks it ready): a member counts only where one runs.
		if err := speakerPodAndToken(ctx, e, n.Name); err != nil {
			panic(err)
		}
		if err := backend.StrictARP(ctx, n); err != nil {
			panic(err)
		}
		if _, err := backend.Serve(n); err != nil {
			panic(err)
		}
	}
}

// speakerPodAndToken creates node's speaker pod and the kubeconfig its
// speaker runs with, whose token is bound to that pod: a pod made anew
// voids the token bound to the last one.
func speakerPodAndToken(ctx context.Context, e *lab.Env, node string) error {
	pod, err := speakerPod(ctx, e, node)
	if err != nil {
		return err
	}
	speakerKubeconfigs[node], err = e.Cluster.PodKubeconfig(ctx, pod, filepath.Join(e.Sandbox.Dir(), "speaker-"+node+".kubeconfig"))
	return err
}

// speakerPod creates the pod the speaker DaemonSet would run on node, and
// waits until it is ready.
func speakerPod(ctx context.Context, e *lab.Env, node string) (*corev1.Pod, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "porter-speaker-" + node, Namespace: "porter-system",
			Labels: map[string]string{"app.kubernetes.io/name": "porter-speaker"}},
		Spec: corev1.PodSpec{NodeName: node, HostNetwork: true, ServiceAccountName: "porter-speaker",
			Containers: []corev1.Container{{Name: "speaker", Image: "porter-speaker:lab"}}},
	}
	created, err := e.Cluster.Client.CoreV1().Pods("porter-system").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create speaker pod on %s: %w", node, err)
	}
	return created, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := e.Cluster.Client.CoreV1().Pods("porter-system").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // poll again
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

// speaker is one porter-speaker process on a lab node.
type speaker struct {
	node *netlab.Host
	cmd  interface{ Wait() error }
	pid  int
	mu   sync.Mutex
	logs strings.Builder
	done chan struct{}
}

func (s *speaker) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.Write(p)
}

func (s *speaker) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

func (s *speaker) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(s.pid, sig); err != nil {
		t.Fatalf("signal speaker on %s: %v", s.node.Name, err)
	}
}

// exited waits for the process to end.
func (s *speaker) exited(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(within):
		t.Fatalf("speaker on %s still running after %s", s.node.Name, within)
	}
}

// startSpeaker runs porter-speaker on node until the test ends.
func startSpeaker(t *testing.T, node *netlab.Host, extra ...string) *speaker {
	t.Helper()
	args := append([]string{filepath.Join(env.BinDir, "porter-speaker"),
		"--kubeconfig", speakerKubeconfigs[node.Name], "--node-name", node.Name,
		"--inventory-interval", "1s",
		"--rejoin-interval", "500ms",
	}, extra...)
	cmd := node.Command(context.Background(), args...)
	s := &speaker{node: node, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s, s
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd, s.pid = cmd, cmd.Process.Pid
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = syscall.Kill(s.pid, syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(s.pid, syscall.SIGKILL)
				<-s.done
			}
		}
		if t.Failed() || os.Getenv("PORTER_SPEAKER_LOGS") != "" {
			t.Logf("speaker on %s:\n%s", node.Name, s.Logs())
		}
	})
	return s
}

// startSpeakers runs a speaker on every node and waits until each sees all
// the others.
func startSpeakers(t *testing.T) map[string]*speaker {
	t.Helper()
	out := map[string]*speaker{}
	for _, n := range env.Net.Nodes {
		out[n.Name] = startSpeaker(t, n)
	}
	waitMembers(t, len(env.Net.Nodes))
	return out
}

// startSpeakersAtRest is startSpeakers for a test of a failure: it starts
// from a cluster at rest, as a real one would be, so that the failure it
// makes is the only one (waitSettled).
func startSpeakersAtRest(t *testing.T) map[string]*speaker {
	t.Helper()
	sp := startSpeakers(t)
	waitSettled(t)
	return sp
}

// waitSettled waits until no speaker holds another down. Speakers started
// together on a loaded machine may find one another failed for a moment
// as they join; the member found so is held down for --hold-down, and when
// that ends, some addresses move to it, as designed.
func waitSettled(t *testing.T) {
	t.Helper()
	poll(t, 30*time.Second, "no speaker to hold another down", func(context.Context) (bool, error) {
		for _, n := range env.Net.Nodes {
			b, err := httpTry(n, "/metrics")
			if err != nil || !strings.Contains(b, "\nporter_held_down_members 0\n") {
				return false, nil //nolint:nilerr // a speaker still starting: poll again
			}
		}
		return true, nil
	})
}

// waitMembers waits until every speaker's published view holds want
// members.
func waitMembers(t *testing.T, want int) {
	t.Helper()
	dc := dynamicClient(t)
	poll(t, 30*time.Second, fmt.Sprintf("every speaker to see %d members", want), func(ctx context.Context) (bool, error) {
		l, err := dc.Resource(v1alpha1.NodeNICsResource).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // the API may be catching up: poll again
		}
		seen := 0
		for _, u := range l.Items {
			m, _, _ := unstructured.NestedStringSlice(u.Object, "status", "speaker", "members")
			if len(m) == want {
				seen++
			}
		}
		return seen >= want, nil
	})
}

func poll(t *testing.T, timeout time.Duration, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func dynamicClient(t *testing.T) dynamic.Interface {
	t.Helper()
	dc, err := dynamic.NewForConfig(env.Cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	return dc
}

// createPool creates a layer2 Eip directly through the API, as kubectl
// apply would, bypassing the plugin's checks.
func createPool(t *testing.T, name, address string, mutate ...func(*v1alpha2.Eip)) {
	t.Helper()
	e := &v1alpha2.Eip{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{v1alpha2.DefaultEipAnnotation: "true"}},
		Spec:       v1alpha2.EipSpec{Address: address, Protocol: v1alpha2.ProtocolLayer2},
	}
	for _, m := range mutate {
		m(e)
	}
	ec := eips.New(dynamicClient(t))
	if _, err := ec.Create(context.Background(), e, false); err != nil {
		t.Fatalf("create Eip %s: %v", name, err)
	}
	lab.Remove(t, "Eip "+name, func(ctx context.Context) error {
		cur, err := ec.Get(ctx, name)
		if err != nil {
			return err
		}
		return ec.Delete(ctx, name, cur.ResourceVersion, false)
	})
}

func getPool(t *testing.T, name string) *v1alpha2.Eip {
	t.Helper()
	e, err := eips.New(dynamicClient(t)).Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// createService creates a Porter LoadBalancer Service in the default
// namespace and removes it when the test ends.
func createService(t *testing.T, name string, mutate ...func(*corev1.Service)) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{lbservice.LBAnnotation: "porter"}},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Port: backend.Port, Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, m := range mutate {
		m(svc)
	}
	cs := env.Cluster.Client
	got, err := cs.CoreV1().Services("default").Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Service %s: %v", name, err)
	}
	lab.Remove(t, "Service "+name, func(ctx context.Context) error {
		return cs.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{})
	})
	return got
}

// waitIP waits for the Service's load balancer address and puts it on every
// node's loopback, as kube-proxy in IPVS mode puts it on kube-ipvs0.
func waitIP(t *testing.T, name string) netip.Addr {
	t.Helper()
	var ip netip.Addr
	poll(t, 30*time.Second, "an address for Service "+name, func(ctx context.Context) (bool, error) {
		svc, err := env.Cluster.Client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ip = lbservice.IngressIP(svc)
		return ip.IsValid(), nil
	})
	holdVIP(t, ip)
	return ip
}

func holdVIP(t *testing.T, ip netip.Addr) {
	t.Helper()
	for _, n := range env.Net.Nodes {
		if err := backend.Hold(context.Background(), n, ip); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range env.Net.Nodes {
			_ = backend.Release(context.Background(), n, ip)
		}
	})
}

// whoHas sends one ARP request for ip from the client and returns every
// MAC that answered within wait.
func whoHas(t *testing.T, ip netip.Addr, wait time.Duration) []string {
	t.Helper()
	return whoHasFrom(t, env.Net.Client, netlab.NIC1, ip, wait)
}

// whoHasFrom asks from host's nic, by ARP or, for IPv6, by NDP
// (backend.WhoHas, backend.WhoHas6).
func whoHasFrom(t *testing.T, host *netlab.Host, nic string, ip netip.Addr, wait time.Duration) []string {
	t.Helper()
	ask := backend.WhoHas
	if ip.Is6() {
		ask = backend.WhoHas6
	}
	macs, err := ask(host, nic, ip, wait)
	if err != nil {
		t.Fatal(err)
	}
	return macs
}

func nodeByMAC(mac string) string {
	for _, n := range env.Net.Nodes {
		if n.MAC.String() == mac {
			return n.Name
		}
	}
	return "unknown(" + mac + ")"
}

func nodeByName(name string) *netlab.Host {
	for _, n := range env.Net.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// servedBy waits until the client is served through ip by a node that
// ok accepts, and returns it.
func servedBy(t *testing.T, ip netip.Addr, timeout time.Duration, ok func(string) bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	node, err := backend.ServedBy(ctx, env.Net.Client, ip, ok)
	if err != nil {
		t.Fatal(err)
	}
	return node
}

// announcer reads the node the Service's announcer annotation names.
func announcer(t *testing.T, name string, ip netip.Addr) lbservice.Announcer {
	t.Helper()
	var a lbservice.Announcer
	poll(t, 30*time.Second, "the announcer annotation of "+name, func(ctx context.Context) (bool, error) {
		svc, err := env.Cluster.Client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		var ok bool
		a, ok = lbservice.ParseAnnouncer(svc)
		return ok && a.IP == ip, nil
	})
	return a
}

// events lists the reasons and messages of the Service's Events.
func events(t *testing.T, name string) []string {
	t.Helper()
	l, err := env.Cluster.Client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range l.Items {
		out = append(out, e.Reason+": "+e.Message)
	}
	return out
}

func waitEvent(t *testing.T, name, reason, contains string) string {
	t.Helper()
	var got string
	poll(t, 20*time.Second, fmt.Sprintf("a %s Event on %s containing %q", reason, name, contains), func(context.Context) (bool, error) {
		for _, e := range events(t, name) {
			if strings.HasPrefix(e, reason+": ") && strings.Contains(e, contains) {
				got = e
				return true, nil
			}
		}
		return false, nil
	})
	return got
}

func announcerNow(t *testing.T, name string) (lbservice.Announcer, bool) {
	t.Helper()
	svc, err := env.Cluster.Client.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return lbservice.ParseAnnouncer(svc)
}

// reportedBy lists the nodes whose speakers report answering for ip in
// their NodeNICs, the place status reads it from.
func reportedBy(t *testing.T, ip netip.Addr) []string {
	t.Helper()
	l, err := dynamicClient(t).Resource(v1alpha1.NodeNICsResource).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list NodeNICs: %v", err)
	}
	var out []string
	for i := range l.Items {
		n := decodeNICs(t, &l.Items[i])
		if _, ok := addrpolicy.ReportFromNodeNICs(n).Announced[ip]; ok {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

func decodeNICs(t *testing.T, u *unstructured.Unstructured) *v1alpha1.NodeNICs {
	t.Helper()
	var n v1alpha1.NodeNICs
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &n); err != nil {
		t.Fatalf("decode NodeNICs %s: %v", u.GetName(), err)
	}
	return &n
}
