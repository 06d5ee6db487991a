package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/test/netlab"
	"github.com/porterlb/porter/test/sandbox"
)

// The package shares one cluster, run inside a network lab's LAN namespace
// so that node namespaces can reach it. Tests isolate themselves by name.
var (
	sb      *sandbox.Sandbox
	network *netlab.Lab
	cluster *Cluster
)

// crashEnv makes the test binary start a cluster and SIGKILL itself, so a
// test can check that the cluster dies with its owner.
const crashEnv = "PORTER_LAB_CRASH_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(crashEnv) != "" {
		os.Exit(crashHelper())
	}
	os.Exit(Main(m, EnvOptions{Net: &netlab.Options{Nodes: 2}}, func(e *Env) {
		sb, network, cluster = e.Sandbox, e.Net, e.Cluster
	}))
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cluster.Kubectl(context.Background(), args...).Output()
	if err != nil {
		var stderr string
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

func TestRealKubectlListsNodes(t *testing.T) {
	ctx := context.Background()
	want := map[string]netip.Addr{
		"kubectl-a": netip.MustParseAddr("198.18.0.101"),
		"kubectl-b": netip.MustParseAddr("198.18.0.102"),
	}
	for name, ip := range want {
		_, err := cluster.CreateNode(ctx, Node{Name: name, InternalIP: ip, ExternalIP: netip.MustParseAddr("203.0.113.7")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cluster.DeleteNode(context.Background(), name) })
	}

	var list corev1.NodeList
	if err := json.Unmarshal([]byte(kubectl(t, "get", "nodes", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, n := range list.Items {
		ip, ok := want[n.Name]
		if !ok {
			continue
		}
		seen++
		addrs := map[corev1.NodeAddressType]string{}
		for _, a := range n.Status.Addresses {
			addrs[a.Type] = a.Address
		}
		if addrs[corev1.NodeInternalIP] != ip.String() || addrs[corev1.NodeExternalIP] != "203.0.113.7" {
			t.Errorf("node %s addresses %v, want InternalIP %s and ExternalIP 203.0.113.7", n.Name, n.Status.Addresses, ip)
		}
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
		}
		if !ready {
			t.Errorf("node %s is not Ready: %v", n.Name, n.Status.Conditions)
		}
	}
	if seen != len(want) {
		t.Fatalf("kubectl listed %d of the %d nodes", seen, len(want))
	}
	if out := kubectl(t, "get", "nodes", "kubectl-a", "-o", "wide"); !strings.Contains(out, "Ready") || !strings.Contains(out, "198.18.0.101") {
		t.Fatalf("kubectl get nodes -o wide:\n%s", out)
	}
}

func TestKubeProxyRollsOutAndRestarts(t *testing.T) {
	ctx := context.Background()
	nodes := map[string]string{"kp-1": "198.18.0.111", "kp-2": "198.18.0.112", "kp-3": "198.18.0.113"}
	for name, ip := range nodes {
		if _, err := cluster.CreateNode(ctx, Node{Name: name, InternalIP: netip.MustParseAddr(ip)}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cluster.DeleteNode(context.Background(), name) })
	}
	if err := cluster.InstallKubeProxy(ctx, KubeProxy{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.UninstallKubeProxy(context.Background()) })

	cm, err := cluster.Client.CoreV1().ConfigMaps("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conf := cm.Data["config.conf"]
	for _, line := range []string{"kind: KubeProxyConfiguration", "mode: ipvs", "  strictARP: false"} {
		if !strings.Contains(conf, "\n"+line+"\n") && !strings.HasPrefix(conf, line+"\n") {
			t.Errorf("config.conf lacks line %q:\n%s", line, conf)
		}
	}

	if _, err := cluster.WaitDaemonSet(ctx, "kube-system", "kube-proxy", time.Minute); err != nil {
		t.Fatal(err)
	}
	before := kubeProxyPods(t, nodes)

	kubectl(t, "-n", "kube-system", "rollout", "restart", "daemonset/kube-proxy")
	kubectl(t, "-n", "kube-system", "rollout", "status", "daemonset/kube-proxy", "--timeout=90s")
	after := kubeProxyPods(t, nodes)
	for node, uid := range after {
		if before[node] == uid {
			t.Errorf("kube-proxy pod on %s was not replaced by the restart", node)
		}
	}
}

// kubeProxyPods returns the UID of the running kube-proxy pod on each of
// nodes, checking that it got its node's InternalIP, as hostNetwork pods do.
func kubeProxyPods(t *testing.T, nodes map[string]string) map[string]string {
	t.Helper()
	pods, err := cluster.Client.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{LabelSelector: "k8s-app=kube-proxy"})
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]string{}
	for _, p := range pods.Items {
		ip, ours := nodes[p.Spec.NodeName]
		if !ours || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		if p.Status.PodIP != ip {
			t.Errorf("kube-proxy pod %s on %s has IP %q, want the node's %s", p.Name, p.Spec.NodeName, p.Status.PodIP, ip)
		}
		uids[p.Spec.NodeName] = string(p.UID)
	}
	if len(uids) != len(nodes) {
		t.Fatalf("running kube-proxy pods on %d of %d nodes: %v", len(uids), len(nodes), uids)
	}
	return uids
}

func TestNodeNamespaceReachesAPIServer(t *testing.T) {
	ctx := context.Background()
	kc, err := cluster.LANKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	node := network.Nodes[0]
	// The real kubectl, run "on" a lab node, verifies the serving
	// certificate against the LAN address.
	out, err := node.Run(ctx, "kubectl", "--kubeconfig", kc, "get", "--raw", "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "ok" {
		t.Fatalf("/readyz from %s: %q", node.Name, out)
	}
	// The API server listens in the LAN namespace only, not on the host.
	ap, _ := cluster.APIServer()
	if l := hostListeners(t, int(ap.Port())); l != "" {
		t.Fatalf("something listens on the host at port %d:\n%s", ap.Port(), l)
	}
}

// The host-mode cluster is started and stopped here, so its teardown is
// checked: no processes, no listening port, no directory.
func TestHostClusterStopsCleanly(t *testing.T) {
	ctx := context.Background()
	c, err := Start(ctx, Options{Sandbox: sb, Name: "host"})
	if err != nil {
		t.Fatal(err)
	}
	kwokDir, host := c.kwokDir, strings.TrimPrefix(c.Config.Host, "https://")
	if !strings.HasPrefix(host, "127.0.0.1:") {
		t.Errorf("host-mode API server at %s, want loopback", host)
	}
	out, err := c.Kubectl(ctx, "get", "namespace", "kube-system", "-o", "name").Output()
	if err != nil || strings.TrimSpace(string(out)) != "namespace/kube-system" {
		t.Fatalf("kubectl against the host cluster: %q, %v", out, err)
	}
	if len(pidsUnder(kwokDir)) < 5 {
		t.Fatalf("want at least 5 control-plane processes under %s, found %v", kwokDir, pidsUnder(kwokDir))
	}

	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if pids := pidsUnder(kwokDir); len(pids) != 0 {
		t.Errorf("processes left after Stop: %v", pids)
	}
	if l := hostListeners(t, c.port); l != "" {
		t.Errorf("API server port %d still open after Stop:\n%s", c.port, l)
	}
	if _, err := os.Stat(kwokDir); !os.IsNotExist(err) {
		t.Errorf("work directory %s left after Stop", kwokDir)
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestResolveBinDirNamesMissingBinaries(t *testing.T) {
	_, err := ResolveBinDir(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "kube-apiserver") || !strings.Contains(err.Error(), "make lab") {
		t.Fatalf("err = %v, want one naming the missing binaries and `make lab`", err)
	}
}

func TestStartRefusesAPIServerIPOnHost(t *testing.T) {
	_, err := Start(context.Background(), Options{Sandbox: sb, APIServerIP: netip.MustParseAddr("198.18.0.1")})
	if err == nil || !strings.Contains(err.Error(), "Netns") {
		t.Fatalf("err = %v, want a refusal", err)
	}
}

// hostListeners lists the host namespace's TCP listeners on port, without
// sending any traffic.
func hostListeners(t *testing.T, port int) string {
	t.Helper()
	out, err := exec.Command("ss", "-Hltnp", fmt.Sprintf("sport = :%d", port)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func crashHelper() int {
	ctx := context.Background()
	sb, err := sandbox.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := Start(ctx, Options{Sandbox: sb, Name: "crash"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Printf("%s %d\n", c.kwokDir, c.port)
	_ = os.Stdout.Sync()
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	return 2
}

func TestClusterDiesWithItsOwner(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, _ := cmd.Output() // it kills itself: the error is expected
	var kwokDir string
	var port int
	if _, err := fmt.Sscanf(string(out), "%s %d", &kwokDir, &port); err != nil {
		t.Fatalf("helper printed %q: %v\n%s", out, err, stderr.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(pidsUnder(kwokDir)) > 0 || exists(kwokDir) {
		if time.Now().After(deadline) {
			t.Fatalf("30s after its owner died: processes %v, directory exists: %v", pidsUnder(kwokDir), exists(kwokDir))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Another package's cluster may have taken the freed port since; only a
	// listener of the dead owner's cluster is a leak.
	if l := hostListeners(t, port); l != "" {
		for _, m := range regexp.MustCompile(`pid=(\d+)`).FindAllStringSubmatch(l, -1) {
			cmdline, _ := os.ReadFile("/proc/" + m[1] + "/cmdline")
			if strings.Contains(string(cmdline), kwokDir) {
				t.Fatalf("the dead owner's API server port %d is still open:\n%s", port, l)
			}
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
