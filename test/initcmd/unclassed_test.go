package initcmd

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/test/lab"
)

// kubectl runs the machine's real kubectl, with the plugin on its PATH.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := env.Kubectl(context.Background(), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func ingressOf(name string) netip.Addr {
	s, err := cluster.Client.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return netip.Addr{}
	}
	return lbservice.IngressIP(s)
}

// A new user's first steps: init with a pool, then a LoadBalancer Service
// made the plainest way, with no annotation and no class. It gets an
// address. With the documented opt-out, the next one does not, and status
// says why and what fixes it.
func TestPlainLoadBalancerServiceGetsAnAddress(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	uninstallAfter(t)
	r := porter("init", "--yes", "--eip", "lan=198.18.0.230-198.18.0.233")
	if r.err != nil {
		t.Fatalf("init: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "lan is the default pool, and serves LoadBalancer Services that name no class") {
		t.Errorf("init did not say it serves Services with no class:\n%s", r.stdout)
	}
	for _, name := range []string{"plain", "plain-after-opt-out"} {
		lab.Remove(t, "Service "+name, func(ctx context.Context) error {
			return cluster.Client.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{})
		})
	}
	kubectl(t, "create", "service", "loadbalancer", "plain", "--tcp=80:8080")
	var ip netip.Addr
	waitFor(t, "plain to get an address", 30*time.Second, func() bool {
		ip = ingressOf("plain")
		return ip.IsValid()
	})
	if ip.Compare(netip.MustParseAddr("198.18.0.230")) < 0 || ip.Compare(netip.MustParseAddr("198.18.0.233")) > 0 {
		t.Errorf("plain got %s, outside the pool 198.18.0.230-198.18.0.233", ip)
	}
	if out := kubectl(t, "get", "service", "plain"); !strings.Contains(out, ip.String()) {
		t.Errorf("kubectl get service does not show %s:\n%s", ip, out)
	}
	waitFor(t, "plain to be announced", 30*time.Second, func() bool { return announced("plain") })

	// The opt-out: the default pool no longer asks for Services with no
	// class. Porter lets them go, and serves only those that ask.
	kubectl(t, "annotate", "eip", "lan", "porter.kubesphere.io/serve-services-without-class=false", "--overwrite")
	kubectl(t, "create", "service", "loadbalancer", "plain-after-opt-out", "--tcp=80:8080")
	waitFor(t, "plain to give its address back", 30*time.Second, func() bool { return !ingressOf("plain").IsValid() })
	var st result
	waitFor(t, "status to name the Services nothing serves", 30*time.Second, func() bool {
		st = porter("status")
		return st.err != nil && strings.Contains(st.stdout, "unserved") && strings.Contains(st.stdout, "default/plain-after-opt-out")
	})
	for _, want := range []string{"names no load balancer", "kubectl -n default annotate service plain lb.kubesphere.io/v1alpha1=porter"} {
		if !strings.Contains(st.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, st.stdout)
		}
	}
	time.Sleep(2 * time.Second)
	if ip := ingressOf("plain-after-opt-out"); ip.IsValid() {
		t.Errorf("a Service with no class got %s after the opt-out", ip)
	}
	j := porter("status", "-o", "json")
	if !strings.Contains(j.stdout, `"unserved"`) || !strings.Contains(j.stdout, `"fix"`) {
		t.Errorf("status -o json lacks the unserved Services:\n%s", j.stdout)
	}
}
