package lbservice

import (
	"net/netip"
	"slices"
	"strings"
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

func TestCanShareWith(t *testing.T) {
	svc := func(key string, local bool, sel map[string]string, ports ...corev1.ServicePort) Sharing {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}, Spec: corev1.ServiceSpec{Ports: ports, Selector: sel}}
		if key != "" {
			s.Annotations[SharedIPAnnotation] = key
		}
		if local {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
		return SharingOf(s)
	}
	tcp := func(p int32) corev1.ServicePort { return corev1.ServicePort{Port: p, Protocol: corev1.ProtocolTCP} }
	udp := func(p int32) corev1.ServicePort { return corev1.ServicePort{Port: p, Protocol: corev1.ProtocolUDP} }
	web := map[string]string{"app": "web"}
	for _, tc := range []struct {
		name string
		a, b Sharing
		want string // "" means they may share
	}{
		{"same key, other ports", svc("k", false, nil, tcp(80)), svc("k", false, nil, tcp(443)), ""},
		{"same port, other protocols", svc("k", false, nil, tcp(53)), svc("k", false, nil, udp(53)), ""},
		{"same port", svc("k", false, nil, tcp(80)), svc("k", false, nil, tcp(80)), "both use TCP/80"},
		{"no protocol means TCP", svc("k", false, nil, corev1.ServicePort{Port: 80}), svc("k", false, nil, tcp(80)), "both use TCP/80"},
		{"other keys", svc("k", false, nil, tcp(80)), svc("j", false, nil, tcp(443)), "keys differ"},
		{"one without a key", svc("k", false, nil, tcp(80)), svc("", false, nil, tcp(443)), "needs the annotation"},
		{"Local, same pods", svc("k", true, web, tcp(80)), svc("k", true, web, tcp(443)), ""},
		{"Local, other pods", svc("k", true, web, tcp(80)), svc("k", true, map[string]string{"app": "db"}, tcp(443)), "same pods"},
		{"Local and Cluster", svc("k", true, web, tcp(80)), svc("k", false, web, tcp(443)), "Local and the other not"},
		{"Local without a selector", svc("k", true, nil, tcp(80)), svc("k", true, nil, tcp(443)), "same pods"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, pair := range [][2]Sharing{{tc.a, tc.b}, {tc.b, tc.a}} {
				err := pair[0].CanShareWith(pair[1])
				switch {
				case tc.want == "" && err != nil:
					t.Errorf("refused: %v", err)
				case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
					t.Errorf("got %v, want an error with %q", err, tc.want)
				}
			}
		})
	}
}

func TestSharingReadsMetalLBsKey(t *testing.T) {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{SharedIPAnnotationMetalLB: "mlb"}}}
	if got := SharingOf(s).Key; got != "mlb" {
		t.Errorf("key %q, want mlb", got)
	}
	s.Annotations[SharedIPAnnotation] = "porter"
	if got := SharingOf(s).Key; got != "porter" {
		t.Errorf("key %q, want Porter's to win", got)
	}
}

func TestStackOf(t *testing.T) {
	pol := func(p corev1.IPFamilyPolicy) *corev1.IPFamilyPolicy { return &p }
	for _, tc := range []struct {
		name     string
		policy   *corev1.IPFamilyPolicy
		families []corev1.IPFamily
		want     []Family
		required bool
	}{
		{"no policy", nil, nil, []Family{0}, false},
		{"single stack IPv6", pol(corev1.IPFamilyPolicySingleStack), []corev1.IPFamily{corev1.IPv6Protocol}, []Family{0}, false},
		{"prefer dual on a single-stack cluster", pol(corev1.IPFamilyPolicyPreferDualStack), []corev1.IPFamily{corev1.IPv4Protocol}, []Family{4}, false},
		{"prefer dual, IPv4 first", pol(corev1.IPFamilyPolicyPreferDualStack), []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}, []Family{4, 6}, false},
		{"require dual, IPv6 first", pol(corev1.IPFamilyPolicyRequireDualStack), []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}, []Family{6, 4}, true},
		{"prefer dual, no families named", pol(corev1.IPFamilyPolicyPreferDualStack), nil, []Family{4, 6}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := StackOf(&corev1.Service{Spec: corev1.ServiceSpec{IPFamilyPolicy: tc.policy, IPFamilies: tc.families}})
			if !slices.Equal(s.Families, tc.want) || s.Required != tc.required {
				t.Errorf("StackOf = %+v, want %v required=%v", s, tc.want, tc.required)
			}
		})
	}
	svc := &corev1.Service{Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "2001:db8::5"}, {IP: "198.18.0.5"}}}}}
	if got := IngressOf(svc, 4); got != netip.MustParseAddr("198.18.0.5") {
		t.Errorf("IngressOf 4 = %s", got)
	}
	if got := IngressOf(svc, 6); got != netip.MustParseAddr("2001:db8::5") {
		t.Errorf("IngressOf 6 = %s", got)
	}
	if got := IngressOf(svc, 0); got != netip.MustParseAddr("2001:db8::5") {
		t.Errorf("IngressOf 0 = %s", got)
	}
}
