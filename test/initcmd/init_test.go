// Package initcmd tests `kubectl porter init` through the machine's real
// kubectl against a lab cluster with a kubeadm-style kube-proxy.
package initcmd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/pkg/kubeproxy"
	"github.com/porterlb/porter/plugin/setup"
	"github.com/porterlb/porter/plugin/steps"
	"github.com/porterlb/porter/test/daemons"
	"github.com/porterlb/porter/test/lab"
	"github.com/porterlb/porter/test/netlab"
)

var (
	env     *lab.Env
	cluster *lab.Cluster
	network *netlab.Lab
)

func TestMain(m *testing.M) {
	code := lab.Main(m, lab.EnvOptions{
		Net:   &netlab.Options{Nodes: 3, SecondNICNodes: []string{"node3"}},
		Build: []string{"github.com/porterlb/porter/cmd/kubectl-porter", "github.com/porterlb/porter/cmd/porter-speaker", "github.com/porterlb/porter/cmd/porter-controller"},
	}, startLab)
	os.Exit(code)
}

// speakers stand in for the speaker DaemonSet's pods: a real process on the
// lab node for each pod kwok pretends to run, so the NIC inventory init
// reads is real, and uninstall really stops the speakers. controllers do
// the same for the controller Deployment's pods.
var speakers, controllers *daemons.Runner

func startLab(e *lab.Env) {
	env, cluster, network = e, e.Cluster, e.Net
	ctx := context.Background()
	for _, n := range network.Nodes {
		if _, err := cluster.CreateNode(ctx, lab.Node{Name: n.Name, InternalIP: n.IP}); err != nil {
			panic(err)
		}
	}
	var err error
	speakers, err = daemons.Speakers(ctx, e, filepath.Join(e.Sandbox.Dir(), "speakers"), "--inventory-interval", "300ms")
	if err != nil {
		panic(err)
	}
	controllers, err = daemons.Controllers(ctx, e, filepath.Join(e.Sandbox.Dir(), "controllers"))
	if err != nil {
		panic(err)
	}
	e.Defer(func(failed bool) {
		speakers.Stop()
		controllers.Stop()
		if failed {
			fmt.Fprintf(os.Stderr, "speaker logs:\n%s\ncontroller logs:\n%s", speakers.Logs(40), controllers.Logs(40))
		}
	})
}

type result struct {
	stdout, stderr string
	err            error
}

// speakerImage is passed to every init, so that runs agree on the speaker
// DaemonSet and a rerun has nothing to update.
const speakerImage = "example.test/porter-speaker:v1"

func porter(args ...string) result {
	if len(args) > 0 && args[0] == "init" && !slices.Contains(args, "--image") {
		args = append(args, "--image", speakerImage)
	}
	cmd := env.Kubectl(context.Background(), append([]string{"porter"}, args...)...)
	cmd.Env = append(cmd.Env, "NO_COLOR=1")
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return result{out.String(), errOut.String(), err}
}

// withKubeProxy installs kube-proxy for one test and removes it after.
func withKubeProxy(t *testing.T, kp lab.KubeProxy) {
	t.Helper()
	ctx := context.Background()
	if err := cluster.InstallKubeProxy(ctx, kp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.UninstallKubeProxy(context.Background()); err != nil {
			t.Errorf("remove kube-proxy: %v", err)
		}
	})
	if _, err := cluster.WaitDaemonSet(ctx, "kube-system", "kube-proxy", time.Minute); err != nil {
		t.Fatal(err)
	}
}

// checkFullInit checks what the later steps did: the speaker deployed with
// the chosen image, the two-NIC node annotated with the IP of the NIC that
// holds its InternalIP, the one-NIC nodes left alone, and the pool created.
func checkFullInit(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	ds, err := cluster.Client.AppsV1().DaemonSets("porter-system").Get(ctx, "porter-speaker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := ds.Spec.Template.Spec.Containers[0].Image; img != "example.test/porter-speaker:v1" {
		t.Errorf("speaker image %s", img)
	}
	if ds.Status.NumberReady != 3 {
		t.Errorf("%d speakers ready, want 3", ds.Status.NumberReady)
	}
	dep, err := cluster.Client.AppsV1().Deployments("porter-system").Get(ctx, "porter-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != "example.test/porter-speaker:v1" {
		t.Errorf("controller image %s", img)
	}
	if dep.Status.ReadyReplicas != 2 {
		t.Errorf("%d controller replicas ready, want 2", dep.Status.ReadyReplicas)
	}
	for _, n := range network.Nodes {
		node, err := cluster.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := node.Annotations["layer2.porter.kubesphere.io/v1alpha1"]
		want := ""
		if n.IP2.IsValid() {
			want = n.IP.String()
		}
		if got != want {
			t.Errorf("node %s layer2 annotation %q, want %q", n.Name, got, want)
		}
	}
	out, err := cluster.Kubectl(ctx, "get", "eip", "lan", "-o", "jsonpath={.spec.address} {.spec.protocol}").Output()
	if err != nil || string(out) != "198.18.0.200-198.18.0.210 layer2" {
		t.Errorf("pool lan: %q %v", out, err)
	}
}

// state is what init may write: the ConfigMap's resourceVersion, and the
// generation of the DaemonSets and pools (their status moves on its own:
// the speakers keep pool status).
func state(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var parts []string
	if list, err := cluster.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		for _, n := range list.Items {
			parts = append(parts, n.Name+"="+n.Annotations["layer2.porter.kubesphere.io/v1alpha1"])
		}
	}
	if out, err := cluster.Kubectl(ctx, "get", "eip", "-o", "jsonpath={.items[*].metadata.generation}").Output(); err == nil {
		parts = append(parts, "eips="+string(out))
	}
	if ds, err := cluster.Client.AppsV1().DaemonSets("porter-system").Get(ctx, "porter-speaker", metav1.GetOptions{}); err == nil {
		parts = append(parts, fmt.Sprintf("speaker=%d", ds.Generation))
	}
	if cm, err := cluster.Client.CoreV1().ConfigMaps("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{}); err == nil {
		parts = append(parts, "cm="+cm.ResourceVersion)
	}
	if out, err := cluster.Kubectl(ctx, "get", "crd,ns,clusterrole", "-o", "name").Output(); err == nil {
		for _, l := range strings.Fields(string(out)) {
			if strings.Contains(l, "porter") || strings.Contains(l, "kubesphere") {
				parts = append(parts, l)
			}
		}
	}
	if ds, err := cluster.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{}); err == nil {
		parts = append(parts, fmt.Sprintf("ds=%d", ds.Generation))
	}
	return strings.Join(parts, " ")
}

func configConf(t *testing.T) (*corev1.ConfigMap, *kubeproxy.Config) {
	t.Helper()
	cm, err := cluster.Client.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "kube-proxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kubeproxy.Parse(cm.Data["config.conf"])
	if err != nil {
		t.Fatal(err)
	}
	return cm, cfg
}

// This runs first, on a cluster where Porter was never installed.
func TestInitDryRunsWriteNothing(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	snap := state(t)
	r := porter("init", "--dry-run=client", "--eip", "lan=198.18.0.200-198.18.0.210")
	if r.err != nil || !strings.Contains(r.stdout, "~ strictARP") || !strings.Contains(r.stdout, "nothing was written") {
		t.Fatalf("client dry run: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	r = porter("init", "--dry-run=server", "--eip", "lan=198.18.0.200-198.18.0.210")
	if r.err != nil || !strings.Contains(r.stdout, "(server dry run)") {
		t.Fatalf("server dry run: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if after := state(t); after != snap {
		t.Fatalf("a dry run wrote: %s -> %s", snap, after)
	}
	if _, cfg := configConf(t); cfg.StrictARP {
		t.Fatal("strictARP became true in a dry run")
	}
}

func TestInitSetsStrictARPRestartsAndIsIdempotent(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	before, _ := configConf(t)

	full := []string{"init", "--yes", "--timeout", "90s", "--eip", "lan=198.18.0.200-198.18.0.210"}
	r := porter(full...)
	if r.err != nil {
		t.Fatalf("init: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, "Warning") {
		t.Errorf("init warned although the speakers report every NIC:\n%s", r.stdout)
	}
	checkFullInit(t)
	for _, want := range []string{"• preflight            API server v1.37.2; all permissions present", "✓ strictARP", "+  strictARP: true", "-  strictARP: false", "✓ restart kube-proxy", "done: "} {
		if !strings.Contains(r.stdout, strings.ReplaceAll(want, "+  ", "+      ")) && !strings.Contains(r.stdout, want) {
			t.Errorf("init output lacks %q:\n%s", want, r.stdout)
		}
	}
	cm, cfg := configConf(t)
	if !cfg.StrictARP {
		t.Fatal("strictARP is not true after init")
	}
	if cm.Annotations["porter.kubesphere.io/previous-strictarp"] != "false" {
		t.Errorf("previous value not kept: %v", cm.Annotations)
	}
	// Only the strictARP line changed.
	a, b := strings.Split(before.Data["config.conf"], "\n"), strings.Split(cm.Data["config.conf"], "\n")
	if len(a) != len(b) {
		t.Fatalf("config.conf went from %d to %d lines", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] && strings.TrimSpace(b[i]) != "strictARP: true" {
			t.Errorf("line %d changed: %q -> %q", i+1, a[i], b[i])
		}
	}
	ds, err := cluster.Client.AppsV1().DaemonSets("kube-system").Get(context.Background(), "kube-proxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
		t.Fatal("kube-proxy was not restarted the way kubectl rollout restart does")
	}

	// A second init writes nothing.
	snap := state(t)
	r = porter(full...)
	if r.err != nil {
		t.Fatalf("second init: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "nothing to do") || !strings.Contains(r.stdout, "• strictARP") {
		t.Errorf("second init output:\n%s", r.stdout)
	}
	if after := state(t); after != snap {
		t.Fatalf("second init wrote: %s -> %s", snap, after)
	}

	// -o json: one document with every step.
	r = porter(append(full, "-o", "json")...)
	var rep struct {
		DryRun  string
		Changed int
		Steps   []struct{ Step, Outcome string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.err != nil {
		t.Fatalf("init -o json: %v %v\n%s", err, r.err, r.stdout)
	}
	if rep.DryRun != "none" || rep.Changed != 0 || len(rep.Steps) != 6 || rep.Steps[1].Outcome != "already" {
		t.Fatalf("json report %+v", rep)
	}
}

func TestInitWithoutTerminalOrYesRefuses(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	snap := state(t)
	r := porter("init")
	if r.err == nil || !strings.Contains(r.stdout, "no terminal to confirm it on") || !strings.Contains(r.stdout, "rerun with --yes") {
		t.Fatalf("init without --yes on a pipe: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if after := state(t); after != snap {
		t.Fatalf("refused init wrote: %s -> %s", snap, after)
	}
}

func TestInitSkipsRestartOutsideIPVS(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "iptables"})
	snap := state(t)
	r := porter("init", "--yes")
	if r.err != nil {
		t.Fatalf("init: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "skipped: kube-proxy runs in iptables mode") || !strings.Contains(r.stdout, "• restart kube-proxy") {
		t.Fatalf("init output:\n%s", r.stdout)
	}
	if after := state(t); after != snap {
		t.Fatalf("init in iptables mode wrote: %s -> %s", snap, after)
	}
}

func TestInitWithoutKubeProxy(t *testing.T) {
	r := porter("init", "--yes")
	if r.err != nil {
		t.Fatalf("init: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "skipped: no kube-proxy ConfigMap") {
		t.Fatalf("init output:\n%s", r.stdout)
	}
}

func TestInitRefusesMalformedConfig(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	ctx := context.Background()
	patch := `{"data":{"config.conf":"kind: KubeProxyConfiguration\nipvs:\n\tstrictARP: false\n"}}`
	if _, err := cluster.Client.CoreV1().ConfigMaps("kube-system").Patch(ctx, "kube-proxy", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	snap := state(t)
	r := porter("init", "--yes")
	if r.err == nil || !strings.Contains(r.stdout, "✗ strictARP") || !strings.Contains(r.stdout, "it was left untouched") || !strings.Contains(r.stdout, "kubectl -n kube-system edit configmap kube-proxy") {
		t.Fatalf("init on a malformed config: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if after := state(t); after != snap {
		t.Fatalf("malformed config was written: %s -> %s", snap, after)
	}
}

func TestInitNamesMissingPermissions(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	ctx := context.Background()
	// jane may read the ConfigMap and nothing else init needs.
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "jane-read", Namespace: "kube-system"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "jane-read", Namespace: "kube-system"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "jane-read"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "jane"}}}
	if _, err := cluster.Client.RbacV1().Roles("kube-system").Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client.RbacV1().RoleBindings("kube-system").Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.Remove(t, "Role jane-read", func(ctx context.Context) error {
		return cluster.Client.RbacV1().Roles("kube-system").Delete(ctx, "jane-read", metav1.DeleteOptions{})
	})
	lab.Remove(t, "RoleBinding jane-read", func(ctx context.Context) error {
		return cluster.Client.RbacV1().RoleBindings("kube-system").Delete(ctx, "jane-read", metav1.DeleteOptions{})
	})

	snap := state(t)
	r := porter("init", "--yes", "--as", "jane")
	if r.err == nil {
		t.Fatalf("init as jane succeeded:\n%s", r.stdout)
	}
	want := []string{
		"permission(s); nothing was changed:",
		"cannot list daemonsets.apps cluster-wide",
		"cannot list deployments.apps cluster-wide",
		"cannot update configmaps 'kube-proxy' in kube-system",
		"cannot get daemonsets.apps 'kube-proxy' in kube-system",
		"cannot patch daemonsets.apps 'kube-proxy' in kube-system",
		"cannot list pods in kube-system",
	}
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "cannot get configmaps") {
		t.Errorf("reported a permission jane holds:\n%s", r.stdout)
	}
	if after := state(t); after != snap {
		t.Fatalf("init as jane wrote: %s -> %s", snap, after)
	}
}

func TestInitStuckRolloutNamesPods(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	ctx := context.Background()
	// A scheduling gate keeps new kube-proxy pods Pending forever, so the
	// restart's rollout cannot finish.
	gate := `{"spec":{"template":{"spec":{"schedulingGates":[{"name":"porter.test/hold"}]}}}}`
	if _, err := cluster.Client.AppsV1().DaemonSets("kube-system").Patch(ctx, "kube-proxy", types.StrategicMergePatchType, []byte(gate), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	r := porter("init", "--yes", "--timeout", "5s")
	if r.err == nil {
		t.Fatalf("init finished despite a stuck rollout:\n%s", r.stdout)
	}
	for _, want := range []string{"✓ strictARP", "✗ restart kube-proxy", "did not finish within 5s", "kube-proxy-", "(Pending)", "run `kubectl porter init` again to resume", "init stopped after completing: strictARP"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestInitReportsMetalLB(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "metallb-system"}}
	if _, err := cluster.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.Remove(t, "namespace metallb-system", func(ctx context.Context) error {
		return cluster.Client.CoreV1().Namespaces().Delete(ctx, "metallb-system", metav1.DeleteOptions{})
	})
	r := porter("init", "--dry-run=client")
	if r.err != nil || !strings.Contains(r.stdout, "also installed: MetalLB (namespace metallb-system)") {
		t.Fatalf("init with MetalLB present: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
}

func TestInitNamesNodesWhoseNICCannotBeDecided(t *testing.T) {
	snap := state(t)
	r := porter("init", "--yes", "--interface", "eth7")
	if r.err == nil {
		t.Fatalf("init with a NIC no node has succeeded:\n%s", r.stdout)
	}
	for _, want := range []string{"✗ NIC annotations", "cannot decide the NIC of 3 node(s); nothing was changed", "node node1: has no NIC eth7; candidates: eth0 (198.18.0.11/24, 2001:db8:18::b/64)", "node node3: has no NIC eth7; candidates: eth0 (198.18.0.13/24, 2001:db8:18::d/64); eth1 (198.18.1.13/24)", "hint: name the NIC with --interface"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if after := state(t); after != snap {
		t.Fatalf("refused init wrote: %s -> %s", snap, after)
	}
}

// holdRollouts makes new kube-proxy pods wait at a scheduling gate, so a
// rollout cannot finish until release is called.
func holdRollouts(t *testing.T) (release func()) {
	t.Helper()
	ctx := context.Background()
	gate := `{"spec":{"template":{"spec":{"schedulingGates":[{"name":"porter.test/hold"}]}}}}`
	if _, err := cluster.Client.AppsV1().DaemonSets("kube-system").Patch(ctx, "kube-proxy", types.StrategicMergePatchType, []byte(gate), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	return func() {
		open := `{"spec":{"template":{"spec":{"schedulingGates":null}}}}`
		if _, err := cluster.Client.AppsV1().DaemonSets("kube-system").Patch(ctx, "kube-proxy", types.MergePatchType, []byte(open), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInitInterruptedThenResumed(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	release := holdRollouts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := env.Kubectl(ctx, "porter", "init", "--yes", "--timeout", "90s", "--image", speakerImage)
	cmd.Env = append(cmd.Env, "NO_COLOR=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		// kubectl execs the plugin, so the signal reaches it directly.
		if strings.Contains(sc.Text(), "nodes updated") {
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cmd.Wait(); err == nil {
		t.Fatalf("interrupted init exited 0:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "init stopped after completing: strictARP") || !strings.Contains(out.String(), "again to resume") {
		t.Fatalf("interrupted init did not say what was done:\n%s", out.String())
	}

	release()
	r := porter("init", "--yes", "--timeout", "90s")
	if r.err != nil {
		t.Fatalf("resumed init: %v\n%s", r.err, r.stdout)
	}
	// The interrupted run had already asked for the restart; resuming
	// finds strictARP set and that restart rolled out, and repeats neither.
	if !strings.Contains(r.stdout, "• strictARP") || !strings.Contains(r.stdout, "restart kube-proxy   kube-proxy runs the current configuration") {
		t.Fatalf("resumed init did not pick up where it stopped:\n%s", r.stdout)
	}
}

func TestInitAsksOnATerminal(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	// script(1) gives the plugin a terminal; the answers are typed ahead.
	run := func(answers string) string {
		kubectl := env.Kubectl(context.Background(), "porter", "init", "--image", speakerImage)
		cmd := exec.Command("script", "-q", "-e", "-c", strings.Join(kubectl.Args, " "), "/dev/null")
		cmd.Env = append(kubectl.Env, "NO_COLOR=1", "TERM=dumb")
		cmd.Stdin = strings.NewReader(answers)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	snap := state(t)
	out := run("n\n")
	if !strings.Contains(out, "strictARP will set ipvs.strictARP: true") || !strings.Contains(out, "Apply this change? [y/N]") || !strings.Contains(out, "declined") {
		t.Fatalf("answering no:\n%s", out)
	}
	if after := state(t); after != snap {
		t.Fatalf("a declined init wrote: %s -> %s", snap, after)
	}
	out = run("y\ny\n")
	if _, cfg := configConf(t); !cfg.StrictARP || !strings.Contains(out, "✓ restart kube-proxy") {
		t.Fatalf("answering yes twice:\n%s", out)
	}
}

// TestUndoTakesInitBack runs every step's Undo, in reverse, after a full
// init, as `uninstall` will: strictARP returns to its previous value and
// kube-proxy restarts, the speaker goes, and only the annotations init made
// are removed. CRDs and pools stay.
func TestUndoTakesInitBack(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	ctx := context.Background()
	node1 := network.Nodes[0].Name
	// An annotation the admin set must survive.
	mine := `{"metadata":{"annotations":{"layer2.porter.kubesphere.io/v1alpha1":"` + network.Nodes[0].IP.String() + `"}}}`
	if _, err := cluster.Client.CoreV1().Nodes().Patch(ctx, node1, types.MergePatchType, []byte(mine), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		undo := `{"metadata":{"annotations":{"layer2.porter.kubesphere.io/v1alpha1":null}}}`
		_, _ = cluster.Client.CoreV1().Nodes().Patch(context.Background(), node1, types.MergePatchType, []byte(undo), metav1.PatchOptions{})
	})
	if r := porter("init", "--yes", "--eip", "undo-pool=198.18.0.230-198.18.0.231"); r.err != nil {
		t.Fatalf("init: %v\n%s", r.err, r.stdout)
	}
	t.Cleanup(func() { _, _ = cluster.Kubectl(context.Background(), "delete", "eip", "undo-pool").CombinedOutput() })

	ds, err := cluster.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	initRestart := ds.Spec.Template.Annotations[setup.RestartedAtAnnotation]
	time.Sleep(1100 * time.Millisecond) // restart stamps have one-second resolution

	dc, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cluster.Client.Discovery()))
	restart := &setup.RestartKubeProxy{Client: cluster.Client, Timeout: time.Minute}
	work := []steps.Step{
		&setup.StrictARP{Client: cluster.Client, Restart: restart},
		restart,
		&setup.Speaker{Client: cluster.Client, Dynamic: dc, Mapper: mapper, Image: speakerImage},
		&setup.NICAnnotations{Client: cluster.Client, Dynamic: dc},
		&setup.Eips{Client: cluster.Client, Dynamic: dc, Eips: eips.New(dc)},
	}
	if _, err := (steps.Runner{}).Undo(ctx, work); err != nil {
		t.Fatal(err)
	}

	cm, cfg := configConf(t)
	if cfg.StrictARP || cm.Annotations[setup.PreviousStrictARPAnnotation] != "" {
		t.Errorf("strictARP %v, previous-value annotation %q after undo", cfg.StrictARP, cm.Annotations[setup.PreviousStrictARPAnnotation])
	}
	if ds, err := cluster.WaitDaemonSet(ctx, "kube-system", "kube-proxy", time.Minute); err != nil {
		t.Fatal(err)
	} else if got := ds.Spec.Template.Annotations[setup.RestartedAtAnnotation]; got == initRestart || initRestart == "" {
		t.Errorf("kube-proxy was not restarted after strictARP was restored (restartedAt %q, init's %q)", got, initRestart)
	}
	if _, err := cluster.Client.AppsV1().DaemonSets("porter-system").Get(ctx, "porter-speaker", metav1.GetOptions{}); err == nil {
		t.Error("speaker DaemonSet survived undo")
	}
	nodes, err := cluster.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		got := n.Annotations["layer2.porter.kubesphere.io/v1alpha1"]
		switch {
		case n.Name == node1 && got != network.Nodes[0].IP.String():
			t.Errorf("undo removed the admin's own annotation on %s", n.Name)
		case n.Name != node1 && got != "":
			t.Errorf("undo left init's annotation on %s: %q", n.Name, got)
		}
	}
	if out, err := cluster.Kubectl(ctx, "get", "eip", "undo-pool", "-o", "name").CombinedOutput(); err != nil {
		t.Errorf("undo removed the pool: %v %s", err, out)
	}
}
