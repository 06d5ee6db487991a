package initcmd

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/speaker/owner"
	"github.com/porterlb/porter/test/lab"
	"github.com/porterlb/porter/test/netlab"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// macs are the lab's random hardware addresses, keys the random gossip
// keys' fingerprints, and pods and renewals the controller pods' random
// names and the age of the leader's Lease, masked in golden files.
var (
	macs     = regexp.MustCompile(`([0-9a-f]{2}:){5}[0-9a-f]{2}`)
	keys     = regexp.MustCompile(`\b[0-9a-f]{12}\b`)
	pods     = regexp.MustCompile(`porter-controller-[0-9a-z]+-[0-9a-z]+`)
	renewals = regexp.MustCompile(`renewed [0-9]+s ago`)
)

func golden(t *testing.T, name, got string) {
	t.Helper()
	got = macs.ReplaceAllString(got, "<mac>")
	got = keys.ReplaceAllString(got, "<key>")
	got = pods.ReplaceAllString(got, "<controller-pod>")
	got = renewals.ReplaceAllString(got, "renewed <n>s ago")
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (run with -update to accept):\n--- got ---\n%s\n--- want ---\n%s", name, got, want)
	}
}

func lbService(t *testing.T, name string, mutate ...func(*corev1.Service)) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{lbservice.LBAnnotation: "porter"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	for _, m := range mutate {
		m(svc)
	}
	if _, err := cluster.Client.CoreV1().Services("default").Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.Remove(t, "Service "+name, func(ctx context.Context) error {
		return cluster.Client.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{})
	})
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func announced(name string) bool {
	svc, err := cluster.Client.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	an, ok := lbservice.ParseAnnouncer(svc)
	return ok && an.IP == lbservice.IngressIP(svc)
}

// uninstallAfter starts from a cluster without Porter, whatever earlier
// tests left, and leaves it so.
func uninstallAfter(t *testing.T) {
	if r := porter("uninstall", "--yes", "--force"); r.err != nil {
		t.Fatalf("uninstall before the test: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	t.Cleanup(func() {
		if r := porter("uninstall", "--yes", "--force"); r.err != nil {
			t.Errorf("cleanup uninstall: %v\n%s%s", r.err, r.stdout, r.stderr)
		}
	})
}

func TestStatusOnHealthyAndBrokenInstallations(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	uninstallAfter(t)
	if r := porter("init", "--yes", "--eip", "st=198.18.0.240-198.18.0.245"); r.err != nil {
		t.Fatalf("init: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if r := porter("eip", "list"); r.err != nil {
		t.Fatal(r.err)
	}
	// The pool from init is not the default; name it.
	lbService(t, "web", func(s *corev1.Service) { s.Annotations[lbservice.PoolAnnotation] = "st" })
	waitFor(t, "web to be announced", 30*time.Second, func() bool { return announced("web") })
	// The golden files name the node that announces web. Speakers started
	// on a loaded machine may find one another failed for a moment and
	// hold that member down: web is then announced elsewhere until the
	// hold-down ends. The status is read once its owner is the one every
	// live member picks.
	var nodes []string
	for _, n := range network.Nodes {
		nodes = append(nodes, n.Name)
	}
	waitFor(t, "web to be announced by the node all three speakers pick", 90*time.Second, func() bool {
		svc, err := cluster.Client.CoreV1().Services("default").Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			return false
		}
		an, ok := lbservice.ParseAnnouncer(svc)
		ip := lbservice.IngressIP(svc)
		return ok && an.IP == ip && an.Node == owner.Pick(ip, nodes)
	})
	var r result
	waitFor(t, "a healthy status", 30*time.Second, func() bool {
		r = porter("status")
		return r.err == nil && strings.Contains(r.stdout, "all 3 speakers see each other") && strings.Contains(r.stdout, "2/2 replicas ready")
	})
	golden(t, "status-healthy.txt", r.stdout)
	j := porter("status", "-o", "json")
	if j.err != nil {
		t.Fatalf("status -o json: %v %s", j.err, j.stderr)
	}
	golden(t, "status-healthy.json", j.stdout)

	// Break it four ways: a speaker stops, an address of the pool is
	// taken on the wire, strictARP is turned off behind Porter's back, and
	// the speaker's and the controller's accounts are given a right the
	// manifests do not grant.
	frozen := speakers.Proc("node2")
	if err := frozen.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = frozen.Signal(syscall.SIGCONT) })
	client := network.Client
	if out, err := client.Run(context.Background(), "ip", "addr", "add", "198.18.0.244/24", "dev", netlab.NIC1); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	t.Cleanup(func() {
		_, _ = client.Run(context.Background(), "ip", "addr", "del", "198.18.0.244/24", "dev", netlab.NIC1)
	})
	lbService(t, "clash", func(s *corev1.Service) {
		s.Annotations[lbservice.PoolAnnotation] = "st"
		s.Annotations[lbservice.IPAnnotation] = "198.18.0.244"
	})
	lbService(t, "nowhere", func(s *corev1.Service) { s.Annotations[lbservice.IPAnnotation] = "203.0.113.7" })
	cm, _ := configConf(t)
	cm.Data["config.conf"] = strings.Replace(cm.Data["config.conf"], "strictARP: true", "strictARP: false", 1)
	if _, err := cluster.Client.CoreV1().ConfigMaps("kube-system").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"create", "clusterrole", "porter-widened", "--verb=patch", "--resource=daemonsets.apps"},
		{"create", "clusterrolebinding", "porter-widened", "--clusterrole=porter-widened", "--serviceaccount=porter-system:porter-speaker", "--serviceaccount=porter-system:porter-controller"},
	} {
		if out, err := cluster.Kubectl(context.Background(), args...).CombinedOutput(); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() {
		_ = cluster.Kubectl(context.Background(), "delete", "clusterrolebinding,clusterrole", "porter-widened", "--ignore-not-found").Run()
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last status:\n%s%s", r.stdout, r.stderr)
		}
	})
	waitFor(t, "the broken status to settle", 60*time.Second, func() bool {
		r = porter("status")
		return r.err != nil && strings.Contains(r.stdout, "no other speaker sees node2") && strings.Contains(r.stdout, "in use on the wire") &&
			strings.Contains(r.stdout, "nowhere") && strings.Contains(r.stdout, "NoPool") && announced("web") &&
			strings.Count(r.stdout, "patch daemonsets.apps cluster-wide (clusterrolebinding porter-widened)") == 2
	})
	golden(t, "status-broken.txt", r.stdout)
	j = porter("status", "-o", "json")
	if j.err == nil {
		t.Fatal("status -o json exited 0 on a broken installation")
	}
	golden(t, "status-broken.json", j.stdout)
}

func TestUninstallRefusesThenRoundTrips(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	uninstallAfter(t)
	ctx := context.Background()
	if r := porter("init", "--yes", "--eip", "rt=198.18.0.246-198.18.0.249"); r.err != nil {
		t.Fatalf("init: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	lbService(t, "held", func(s *corev1.Service) { s.Annotations[lbservice.PoolAnnotation] = "rt" })
	waitFor(t, "held to get an address", 30*time.Second, func() bool { return announced("held") })

	before := state(t)
	r := porter("uninstall", "--yes")
	if r.err == nil || !strings.Contains(r.stderr, "default/held (198.18.0.246)") || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("uninstall with a Service holding an address: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if after := state(t); after != before {
		t.Fatalf("a refused uninstall changed the cluster:\n%s\n->\n%s", before, after)
	}
	if err := cluster.Client.CoreV1().Services("default").Delete(ctx, "held", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	r = porter("uninstall", "--dry-run=client")
	if r.err != nil {
		t.Fatalf("uninstall --dry-run=client: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	for _, want := range []string{"restore ipvs.strictARP to its value before init (false)", "porter-system/daemonset/porter-speaker", "porter-system/deployment/porter-controller", "remove the layer2 annotation init set on node3", "nothing was removed"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run lacks %q:\n%s", want, r.stdout)
		}
	}
	if after := state(t); after != before {
		t.Fatalf("a dry run changed the cluster:\n%s\n->\n%s", before, after)
	}
	if r := porter("uninstall", "--dry-run=server"); r.err != nil {
		t.Fatalf("uninstall --dry-run=server: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if after := state(t); after != before {
		t.Fatalf("a server dry run changed the cluster:\n%s\n->\n%s", before, after)
	}

	if r := porter("uninstall", "--yes"); r.err != nil {
		t.Fatalf("uninstall: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if _, err := cluster.Client.CoreV1().Namespaces().Get(ctx, "porter-system", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace porter-system after uninstall: %v", err)
	}
	if out, err := cluster.Kubectl(ctx, "get", "crd", "-o", "name").CombinedOutput(); err != nil || strings.Contains(string(out), "kubesphere.io") {
		t.Errorf("CRDs after uninstall: %v %s", err, out)
	}
	if _, cfg := configConf(t); cfg.StrictARP {
		t.Error("strictARP still true after uninstall")
	}
	if n, err := cluster.Client.CoreV1().Nodes().Get(ctx, "node3", metav1.GetOptions{}); err != nil || n.Annotations["layer2.porter.kubesphere.io/v1alpha1"] != "" {
		t.Errorf("node3 annotation after uninstall: %v %v", n.Annotations, err)
	}

	// And back: a working installation again.
	if r := porter("init", "--yes", "--eip", "rt=198.18.0.246-198.18.0.249"); r.err != nil {
		t.Fatalf("init after uninstall: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	lbService(t, "again", func(s *corev1.Service) { s.Annotations[lbservice.PoolAnnotation] = "rt" })
	waitFor(t, "again to be announced", 60*time.Second, func() bool { return announced("again") })
	waitFor(t, "a healthy status", 30*time.Second, func() bool { return porter("status").err == nil })
}
