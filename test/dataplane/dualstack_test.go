package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/lbservice"
)

func dualStack(policy corev1.IPFamilyPolicy) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = &policy
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
}

// A RequireDualStack Service gets an address of each family, from the
// default pool of each, and both are answered, each by its owner, and
// served.
func TestDualStackServiceGetsBothFamilies(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	createPool(t, "main6", "2001:db8:18::200-2001:db8:18::20f")
	startSpeakers(t)
	createService(t, "dual", dualStack(corev1.IPFamilyPolicyRequireDualStack))
	var ips []netip.Addr
	poll(t, 30*time.Second, "both addresses of Service dual", func(ctx context.Context) (bool, error) {
		svc, err := env.Cluster.Client.CoreV1().Services("default").Get(ctx, "dual", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ips = lbservice.IngressIPs(svc)
		return len(ips) == 2, nil
	})
	if !ips[0].Is4() || !ips[1].Is6() {
		t.Fatalf("ingress %v, want IPv4 then IPv6 as ipFamilies says", ips)
	}
	for _, ip := range ips {
		holdVIP(t, ip)
	}
	for _, ip := range ips {
		poll(t, 15*time.Second, fmt.Sprintf("exactly one node to answer for %s", ip), func(context.Context) (bool, error) {
			return len(whoHas(t, ip, 300*time.Millisecond)) == 1, nil
		})
		owner := nodeByMAC(whoHas(t, ip, 300*time.Millisecond)[0])
		servedBy(t, ip, 10*time.Second, func(n string) bool { return n == owner })
		t.Logf("%s is answered and served by %s", ip, owner)
	}
}

// RequireDualStack with only an IPv4 pool: the Service stays pending, and
// an Event says why; PreferDualStack takes the IPv4 address alone.
func TestRequireDualStackWithoutAnIPv6PoolStaysPending(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	startSpeakers(t)
	createService(t, "need-both", dualStack(corev1.IPFamilyPolicyRequireDualStack))
	waitEvent(t, "need-both", "NoPool", "RequireDualStack needs an address of each family")
	createService(t, "want-both", dualStack(corev1.IPFamilyPolicyPreferDualStack))
	if ip := waitIP(t, "want-both"); !ip.Is4() {
		t.Errorf("want-both got %s, want its IPv4 address", ip)
	}
	svc, err := env.Cluster.Client.CoreV1().Services("default").Get(context.Background(), "need-both", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := lbservice.IngressIPs(svc); len(got) != 0 {
		t.Errorf("need-both got %v, want it pending", got)
	}
}
