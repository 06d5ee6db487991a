package lbservice

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestServes(t *testing.T) {
	class := func(c string) func(*corev1.Service) { return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c } }
	annotate := func(v string) func(*corev1.Service) {
		return func(s *corev1.Service) { s.Annotations = map[string]string{LBAnnotation: v} }
	}
	ingress := func(ip string) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
	clusterIP := func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }
	ours := func(ip netip.Addr) bool { return netip.MustParsePrefix("198.18.0.0/24").Contains(ip) }
	for _, tc := range []struct {
		name      string
		mutate    []func(*corev1.Service)
		unclassed bool
		want      bool
	}{
		{"annotated porter", []func(*corev1.Service){annotate("porter")}, false, true},
		{"annotated openelb", []func(*corev1.Service){annotate("openelb")}, false, true},
		{"Porter's class", []func(*corev1.Service){class(Class)}, false, true},
		{"no class, not serving those", nil, false, false},
		{"no class, serving those", nil, true, true},
		{"no class, holding one of Porter's addresses", []func(*corev1.Service){ingress("198.18.0.7")}, true, true},
		{"no class, holding another load balancer's address", []func(*corev1.Service){ingress("203.0.113.7")}, true, false},
		{"no class, holding a hostname only", []func(*corev1.Service){func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "lb.example.test"}}
		}}, true, false},
		{"another class, even when serving unclassed", []func(*corev1.Service){class("example.test/other")}, true, false},
		{"annotated for another load balancer", []func(*corev1.Service){annotate("metallb")}, true, false},
		{"not a LoadBalancer", []func(*corev1.Service){clusterIP}, true, false},
		{"annotated porter with a foreign address is still Porter's", []func(*corev1.Service){annotate("porter"), ingress("203.0.113.7")}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
			for _, m := range tc.mutate {
				m(s)
			}
			if got := Serves(s, tc.unclassed, ours); got != tc.want {
				t.Errorf("Serves = %v, want %v", got, tc.want)
			}
		})
	}
}
