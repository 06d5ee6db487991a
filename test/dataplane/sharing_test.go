package dataplane

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/lbservice"
)

// sharing returns a Service mutation: the sharing key, the ports, and
// optionally externalTrafficPolicy Local with a pod selector.
func sharing(key string, local map[string]string, ports ...int32) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Annotations[lbservice.SharedIPAnnotation] = key
		s.Spec.Ports = nil
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "p" + string(rune('a'+len(s.Spec.Ports))), Port: p, Protocol: corev1.ProtocolTCP})
		}
		if local != nil {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.Selector = local
		}
	}
}

func requesting(ip string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Annotations[lbservice.IPAnnotation] = ip }
}

// Two Services with one sharing key and different ports get one address,
// answered by one node and served. A third on the same port, and a
// Local one that selects other pods, asking for that address, stay
// pending with an Event that says why; a Service without the key too.
func TestServicesShareAnAddress(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	startSpeakers(t)
	createService(t, "share-web", sharing("front", nil, 80))
	ip := waitIP(t, "share-web")
	createService(t, "share-tls", sharing("front", nil, 443))
	if got := waitIP(t, "share-tls"); got != ip {
		t.Fatalf("share-tls got %s, want to share %s with share-web", got, ip)
	}
	owner := ownerOf(t, "share-web", ip)
	if an := announcer(t, "share-tls", ip); an.Node != owner {
		t.Errorf("share-tls is announced by %s, share-web by %s", an.Node, owner)
	}
	for _, tc := range []struct {
		name, why string
		mutate    []func(*corev1.Service)
	}{
		{"share-clash", "both use TCP/80", []func(*corev1.Service){sharing("front", nil, 80), requesting(ip.String())}},
		{"share-local", "Local and the other not", []func(*corev1.Service){sharing("front", map[string]string{"app": "x"}, 8080), requesting(ip.String())}},
		{"share-stranger", "keys differ", []func(*corev1.Service){sharing("back", nil, 9090), requesting(ip.String())}},
	} {
		createService(t, tc.name, tc.mutate...)
		waitEvent(t, tc.name, "AddressInUse", tc.why)
		svc, err := env.Cluster.Client.CoreV1().Services("default").Get(context.Background(), tc.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := lbservice.IngressIP(svc); got.IsValid() {
			t.Errorf("%s got %s, want it pending", tc.name, got)
		}
	}
	poll(t, 10*time.Second, "the pool to count the shared address once, with both holders", func(context.Context) (bool, error) {
		st := getPool(t, "main").Status
		return st.Usage == 1 && st.Used[ip.String()] == "default/share-web,default/share-tls", nil
	})
}
