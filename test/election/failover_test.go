package election

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/porterlb/porter/controller"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/test/lab"
)

// replica is one porter-controller process.
type replica struct {
	name string
	cmd  *exec.Cmd
	out  output
	done chan struct{} // closed when the process has exited, with err
	err  error
}

func startReplica(t *testing.T, name, kubeconfig string) *replica {
	t.Helper()
	r := &replica{name: name, done: make(chan struct{})}
	r.cmd = env.Cluster.Command(context.Background(), filepath.Join(env.BinDir, "porter-controller"), "--kubeconfig", kubeconfig, "--identity", name,
		"--health-address", "", "--lease-duration", "2s", "--lease-renew-deadline", "1500ms", "--lease-retry-period", "200ms")
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.err = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			_ = r.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("controller %s:\n%s", name, r.out.String())
		}
	})
	return r
}

func leaseHolder() string {
	l, err := env.Cluster.Client.CoordinationV1().Leases("porter-system").Get(context.Background(), controller.LeaseName, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// The leader is killed (SIGKILL: no release of the Lease) while Services
// are being created and allocated. The standby takes over, every Service
// ends with an address of its own, none that had one before the kill
// changed it, and the pool's status counts each exactly once.
func TestControllerKilledMidAllocationLeavesAllocationsExact(t *testing.T) {
	ctx := context.Background()
	dc, err := dynamic.NewForConfig(env.Cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	const pool, count = "failover", 60
	if _, err := eips.New(dc).Create(ctx, &v1alpha2.Eip{
		ObjectMeta: metav1.ObjectMeta{Name: pool},
		Spec:       v1alpha2.EipSpec{Address: "198.18.1.0-198.18.1.99", Protocol: v1alpha2.ProtocolLayer2},
	}, false); err != nil {
		t.Fatal(err)
	}
	lab.Remove(t, "Eip "+pool, func(ctx context.Context) error {
		cur, err := eips.New(dc).Get(ctx, pool)
		if err != nil {
			return err
		}
		return eips.New(dc).Delete(ctx, pool, cur.ResourceVersion, false)
	})
	kc, err := env.Cluster.ServiceAccountKubeconfig(ctx, "porter-system", "porter-controller")
	if err != nil {
		t.Fatal(err)
	}
	replicas := map[string]*replica{}
	for _, name := range []string{"replica-a", "replica-b"} {
		replicas[name] = startReplica(t, name, kc)
	}
	var first *replica
	poll(t, 60*time.Second, "a leader", func() bool {
		first = replicas[leaseHolder()]
		return first != nil && first.out.count(`msg="allocator leading"`) > 0
	})

	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("kill-%02d", i)
	}
	for _, n := range names {
		lab.Remove(t, "Service "+n, func(ctx context.Context) error {
			return env.Cluster.Client.CoreV1().Services("default").Delete(ctx, n, metav1.DeleteOptions{})
		})
	}
	var wg sync.WaitGroup
	var createErr error
	wg.Go(func() {
		for _, n := range names {
			if createErr = createService(n, pool); createErr != nil {
				return
			}
		}
	})
	// Kill the leader once some, not all, Services have addresses.
	before := map[string]netip.Addr{}
	poll(t, 60*time.Second, "the first allocations", func() bool {
		for _, n := range names[:10] {
			if !hasIP(n) {
				return false
			}
		}
		return true
	})
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.done
	if first.err == nil {
		t.Fatalf("the killed leader %s exited cleanly", first.name)
	}
	killedAt := time.Now()
	for _, n := range names {
		// Not all exist yet: creation goes on through the takeover.
		if s, err := env.Cluster.Client.CoreV1().Services("default").Get(ctx, n, metav1.GetOptions{}); err == nil {
			if ip := lbservice.IngressIP(s); ip.IsValid() {
				before[n] = ip
			}
		}
	}
	wg.Wait()
	if createErr != nil {
		t.Fatal(createErr)
	}
	if len(before) == count {
		t.Fatalf("every Service had its address before the leader was killed; nothing was left mid-allocation")
	}
	t.Logf("leader %s killed with %d of %d Services allocated", first.name, len(before), count)

	var second *replica
	poll(t, 30*time.Second, "the standby to lead", func() bool {
		second = replicas[leaseHolder()]
		return second != nil && second != first && second.out.count(`msg="allocator leading"`) > 0
	})
	poll(t, 60*time.Second, "every Service to get an address", func() bool {
		for _, n := range names {
			if !hasIP(n) {
				return false
			}
		}
		return true
	})
	t.Logf("%s took over; all allocated %s after the kill", second.name, time.Since(killedAt).Round(time.Millisecond))

	seen := map[netip.Addr]string{}
	lo, hi := netip.MustParseAddr("198.18.1.0"), netip.MustParseAddr("198.18.1.99")
	for _, n := range names {
		ip := ingress(t, n)
		if ip.Compare(lo) < 0 || ip.Compare(hi) > 0 {
			t.Errorf("%s got %s, outside the pool", n, ip)
		}
		if other, dup := seen[ip]; dup {
			t.Errorf("%s and %s both hold %s", other, n, ip)
		}
		seen[ip] = n
		if b, ok := before[n]; ok && b != ip {
			t.Errorf("%s moved from %s to %s across the takeover", n, b, ip)
		}
	}
	poll(t, 30*time.Second, "the pool's status to count every Service once", func() bool {
		e, err := eips.New(dc).Get(ctx, pool)
		if err != nil || e.Status.Usage != count || len(e.Status.Used) != count {
			return false
		}
		for ip, svc := range e.Status.Used {
			a, err := netip.ParseAddr(ip)
			if err != nil || seen[a] == "" || "default/"+seen[a] != svc {
				return false
			}
		}
		return true
	})
}

func ingress(t *testing.T, name string) netip.Addr {
	t.Helper()
	s, err := env.Cluster.Client.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return lbservice.IngressIP(s)
}
