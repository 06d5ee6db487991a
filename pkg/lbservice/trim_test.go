package lbservice

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Every reader of this package answers the same for Trim(svc) as for svc:
// the speaker caches only Trim's output.
func TestTrimKeepsEveryAnswer(t *testing.T) {
	class := Class
	other := "example.com/lb"
	dual := corev1.IPFamilyPolicyRequireDualStack
	full := func() *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{
				Name: "web", Namespace: "shop", UID: "u", ResourceVersion: "9",
				Labels: map[string]string{"app": "web"},
				Annotations: map[string]string{
					LBAnnotation: "porter", PoolAnnotation: "pool", IPAnnotation: "198.18.0.7",
					SharedIPAnnotation: "k", AnnouncerAnnotation: "198.18.0.7 node1 eth0",
					"unrelated": "x", corev1.LastAppliedConfigAnnotation: "{}",
				},
			},
			Spec: corev1.ServiceSpec{
				Type:                  corev1.ServiceTypeLoadBalancer,
				Ports:                 []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30080}},
				Selector:              map[string]string{"app": "web"},
				ClusterIP:             "10.0.0.9",
				ClusterIPs:            []string{"10.0.0.9", "2001:db8:96::9"},
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
				HealthCheckNodePort:   31000,
				IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
				IPFamilyPolicy:        &dual,
				LoadBalancerIP:        "198.18.0.7",
			},
			Status: corev1.ServiceStatus{
				LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.18.0.7"}, {IP: "2001:db8:18::7"}}},
				Conditions:   []metav1.Condition{{Type: "x"}},
			},
		}
	}
	variants := map[string]func(*corev1.Service){
		"as is":          func(*corev1.Service) {},
		"Porter class":   func(s *corev1.Service) { s.Spec.LoadBalancerClass = &class },
		"another class":  func(s *corev1.Service) { s.Spec.LoadBalancerClass = &other },
		"no annotations": func(s *corev1.Service) { s.Annotations = nil },
		"OpenELB spelling": func(s *corev1.Service) {
			s.Annotations = map[string]string{LBAnnotation: "openelb", PoolAnnotationOpenELB: "p", IPAnnotationOpenELB: "bad"}
		},
		"MetalLB sharing": func(s *corev1.Service) {
			delete(s.Annotations, SharedIPAnnotation)
			s.Annotations[SharedIPAnnotationMetalLB] = "m"
		},
		"ClusterIP":    func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP },
		"single stack": func(s *corev1.Service) { s.Spec.IPFamilyPolicy = nil },
		"no status":    func(s *corev1.Service) { s.Status = corev1.ServiceStatus{} },
	}
	ours := func(ip netip.Addr) bool { return ip.Is4() }
	for name, mutate := range variants {
		t.Run(name, func(t *testing.T) {
			svc := full()
			mutate(svc)
			tr := Trim(svc.DeepCopy())
			type answers struct {
				IsPorter, Unclassed, ServesU, Serves bool
				Key, Pool                            string
				Requested                            netip.Addr
				RequestedErr                         string
				Ingress                              netip.Addr
				IngressIPs                           []netip.Addr
				Ingress4, Ingress6                   netip.Addr
				Stack                                Stack
				Sharing                              Sharing
				Announcer                            Announcer
				AnnouncerOK                          bool
			}
			of := func(s *corev1.Service) answers {
				a := answers{IsPorter: IsPorter(s), Unclassed: Unclassed(s), ServesU: Serves(s, true, ours), Serves: Serves(s, false, ours),
					Key: Key(s), Pool: Pool(s), Ingress: IngressIP(s), IngressIPs: IngressIPs(s),
					Ingress4: IngressOf(s, 4), Ingress6: IngressOf(s, 6), Stack: StackOf(s), Sharing: SharingOf(s)}
				var err error
				if a.Requested, err = RequestedIP(s); err != nil {
					a.RequestedErr = err.Error()
				}
				a.Announcer, a.AnnouncerOK = ParseAnnouncer(s)
				return a
			}
			if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
				// Of other Services, readers only learn they are not
				// LoadBalancers.
				if IsPorter(tr) || Unclassed(tr) || Serves(tr, true, ours) || tr.Spec.Ports != nil || tr.Annotations != nil {
					t.Errorf("a %s Service kept more than its identity and type: %+v", svc.Spec.Type, tr)
				}
				return
			}
			if got, want := of(tr), of(svc); !reflect.DeepEqual(got, want) {
				t.Errorf("trimmed Service answers\n%+v\nwant\n%+v", got, want)
			}
			if tr.Labels != nil || tr.Spec.ClusterIPs != nil || tr.Status.Conditions != nil || tr.Annotations["unrelated"] != "" {
				t.Errorf("Trim kept fields nothing reads: %+v", tr)
			}
			if tr.UID != svc.UID || tr.ResourceVersion != svc.ResourceVersion {
				t.Error("Trim dropped the identity Events are recorded against")
			}
		})
	}
}
