// Package election runs race-detector builds of porter-controller through
// terms of leadership, taken from them by a real API server or by a
// killed leader, and checks that the terms never overlap (no data race)
// and that allocations stay exact across them.
package election

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/porterlb/porter/controller"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/test/lab"
	"github.com/porterlb/porter/test/netlab"
)

var env *lab.Env

func TestMain(m *testing.M) {
	os.Exit(lab.Main(m, lab.EnvOptions{
		Net:   &netlab.Options{Nodes: 1},
		Build: []string{"github.com/porterlb/porter/cmd/porter-controller"},
		Race:  true,
	}, setup))
}

func setup(e *lab.Env) {
	env = e
	ctx := context.Background()
	for _, args := range [][]string{
		{"apply", "-f", abs("../../manifests/crd"), "-f", abs("../../manifests/namespace.yaml")},
		{"apply", "-f", abs("../../manifests/rbac.yaml")},
		{"wait", "--for", "condition=established", "--timeout=60s", "crd/nodenics.porter.kubesphere.io", "crd/eips.network.kubesphere.io"},
	} {
		if out, err := e.Cluster.Kubectl(ctx, args...).CombinedOutput(); err != nil {
			panic(fmt.Sprintf("kubectl %v: %v\n%s", args, err, out))
		}
	}
	for _, n := range e.Net.Nodes {
		if _, err := e.Cluster.CreateNode(ctx, lab.Node{Name: n.Name, InternalIP: n.IP}); err != nil {
			panic(err)
		}
	}
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

// output collects a process's stdout and stderr.
type output struct {
	mu sync.Mutex
	b  strings.Builder
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

func (o *output) count(s string) int { return strings.Count(o.String(), s) }

func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// takeLease makes the allocator Lease another's, freshly renewed: the
// controller cannot renew it and loses its term after its renew deadline,
// then wins the next one once the intruder's lease expires.
func takeLease(t *testing.T) {
	t.Helper()
	leases := env.Cluster.Client.CoordinationV1().Leases("porter-system")
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := leases.Get(ctx, controller.LeaseName, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // poll again
		}
		now := metav1.NowMicro()
		l.Spec = coordinationv1.LeaseSpec{HolderIdentity: ptr("intruder"), LeaseDurationSeconds: ptr(int32(2)), AcquireTime: &now, RenewTime: &now}
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("take the allocator Lease: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func service(t *testing.T, name string) { serviceIn(t, name, "terms") }

func serviceIn(t *testing.T, name, pool string) {
	t.Helper()
	if err := createService(name, pool); err != nil {
		t.Fatal(err)
	}
	lab.Remove(t, "Service "+name, func(ctx context.Context) error {
		return env.Cluster.Client.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{})
	})
}

func createService(name, pool string) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{lbservice.LBAnnotation: "porter", lbservice.PoolAnnotation: pool}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	if _, err := env.Cluster.Client.CoreV1().Services("default").Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Service %s: %w", name, err)
	}
	return nil
}

func hasIP(name string) bool {
	s, err := env.Cluster.Client.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
	return err == nil && lbservice.IngressIP(s).IsValid()
}

func TestBackToBackTermsDoNotOverlap(t *testing.T) {
	ctx := context.Background()
	dc, err := dynamic.NewForConfig(env.Cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eips.New(dc).Create(ctx, &v1alpha2.Eip{
		ObjectMeta: metav1.ObjectMeta{Name: "terms"},
		Spec:       v1alpha2.EipSpec{Address: "198.18.0.200-198.18.0.229", Protocol: v1alpha2.ProtocolLayer2},
	}, false); err != nil {
		t.Fatal(err)
	}
	kc, err := env.Cluster.ServiceAccountKubeconfig(ctx, "porter-system", "porter-controller")
	if err != nil {
		t.Fatal(err)
	}
	var out output
	cmd := env.Cluster.Command(ctx, filepath.Join(env.BinDir, "porter-controller"), "--kubeconfig", kc, "--identity", "terms",
		"--health-address", "",
		"--lease-duration", "2s", "--lease-renew-deadline", "1500ms", "--lease-retry-period", "200ms")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			if err := <-exited; err != nil {
				t.Logf("controller killed: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("controller:\n%s", out.String())
		}
	})

	const leading, stoppedLeading = `msg="allocator leading"`, `msg="allocator stopped leading"`
	const terms = 4
	for term := 1; term <= terms; term++ {
		poll(t, 60*time.Second, fmt.Sprintf("term %d", term), func() bool { return out.count(leading) == term })
		// Work in flight as the term ends: Services to allocate.
		for i := range 5 {
			service(t, fmt.Sprintf("t%d-%d", term, i))
		}
		if term == terms {
			break
		}
		takeLease(t)
		poll(t, 30*time.Second, fmt.Sprintf("the end of term %d", term), func() bool { return out.count(stoppedLeading) == term })
	}
	for term := 1; term <= terms; term++ {
		for i := range 5 {
			name := fmt.Sprintf("t%d-%d", term, i)
			poll(t, 30*time.Second, name+" to get an address", func() bool { return hasIP(name) })
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("controller exited: %v (66 is the race detector's)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("controller did not stop within 30s of SIGTERM")
	}
	if strings.Contains(out.String(), "DATA RACE") {
		t.Errorf("the race detector found a race:\n%s", out.String())
	}
	if n := out.count(leading); n != terms {
		t.Errorf("%d terms, want %d", n, terms)
	}
}
