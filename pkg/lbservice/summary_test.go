package lbservice

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
)

// A Summary answers as every reader of this package that the data path
// calls answers for the Service: the speaker caches only Summaries.
func TestSummaryKeepsEveryAnswer(t *testing.T) {
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
		"unclassed": func(s *corev1.Service) {
			delete(s.Annotations, LBAnnotation)
		},
		"unclassed, an IPv6 address not ours": func(s *corev1.Service) {
			delete(s.Annotations, LBAnnotation)
			s.Status.LoadBalancer.Ingress = s.Status.LoadBalancer.Ingress[1:]
		},
		"unclassed, an ingress that does not parse": func(s *corev1.Service) {
			delete(s.Annotations, LBAnnotation)
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.18.0.7"}, {Hostname: "lb.example"}}
		},
		"mapped ingress": func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "::ffff:198.18.0.7"}}
		},
		"no sharing key": func(s *corev1.Service) {
			delete(s.Annotations, SharedIPAnnotation)
		},
	}
	ours := func(ip netip.Addr) bool { return ip.Is4() }
	for name, mutate := range variants {
		t.Run(name, func(t *testing.T) {
			svc := full()
			mutate(svc)
			sum := Summarize(svc.DeepCopy())
			if sum.Key != Key(svc) || sum.Namespace != svc.Namespace || sum.Name != svc.Name || sum.UID != svc.UID || sum.ResourceVersion != svc.ResourceVersion {
				t.Errorf("identity %q %q %q %q %q", sum.Key, sum.Namespace, sum.Name, sum.UID, sum.ResourceVersion)
			}
			for _, unclassed := range []bool{false, true} {
				if got, want := sum.Serves(unclassed, ours), Serves(svc, unclassed, ours); got != want {
					t.Errorf("Serves(unclassed %v) = %v, the Service's %v", unclassed, got, want)
				}
			}
			if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
				// Of other Services, readers only learn they are not
				// LoadBalancers.
				if !reflect.DeepEqual(sum, &Summary{Key: sum.Key, Namespace: sum.Namespace, Name: sum.Name, UID: sum.UID, ResourceVersion: sum.ResourceVersion}) {
					t.Errorf("a %s Service kept more than its identity: %+v", svc.Spec.Type, sum)
				}
				return
			}
			type answers struct {
				IsPorter, Unclassed, Local bool
				Pool                       string
				IngressIPs                 []netip.Addr
				Sharing                    Sharing
			}
			got := answers{sum.Porter, sum.Unclassed, sum.Local, sum.Pool, sum.Ingress, sum.Share}
			want := answers{IsPorter(svc), Unclassed(svc), svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
				Pool(svc), IngressIPs(svc), SharingOf(svc)}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("summary answers\n%+v\nwant\n%+v", got, want)
			}
			if !sum.Equal(Summarize(svc)) {
				t.Error("a Summary differs from another of the same Service")
			}
		})
	}
}

// An informer's store keys and indexes a Summary as it would the Service.
func TestSummaryIsKeyedAsItsService(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u"}}
	store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := store.Add(Summarize(svc)); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := store.GetByKey("shop/web"); !ok {
		t.Errorf("no shop/web in %v", store.ListKeys())
	}
	if got, _ := store.ByIndex(cache.NamespaceIndex, "shop"); len(got) != 1 {
		t.Errorf("namespace index holds %d", len(got))
	}
	ref := Summarize(svc).Reference()
	if ref.Kind != "Service" || ref.APIVersion != "v1" || ref.Namespace != "shop" || ref.Name != "web" || ref.UID != "u" {
		t.Errorf("reference %+v", ref)
	}
}

// Only a change to what a decision reads makes two Summaries differ.
func TestSummaryEqualIgnoresWhatNothingReads(t *testing.T) {
	base := func() *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "1", Annotations: map[string]string{LBAnnotation: "porter"}},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
			Status:     corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.18.0.7"}}}},
		}
	}
	for name, tc := range map[string]struct {
		mutate func(*corev1.Service)
		equal  bool
	}{
		"resource version": {func(s *corev1.Service) { s.ResourceVersion = "2" }, true},
		"announcer annotation": {func(s *corev1.Service) {
			s.Annotations[AnnouncerAnnotation] = "198.18.0.7 node1 eth0"
		}, true},
		"a condition":  {func(s *corev1.Service) { s.Status.Conditions = []metav1.Condition{{Type: "x"}} }, true},
		"ingress":      {func(s *corev1.Service) { s.Status.LoadBalancer.Ingress[0].IP = "198.18.0.8" }, false},
		"pool":         {func(s *corev1.Service) { s.Annotations[PoolAnnotation] = "p" }, false},
		"local":        {func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }, false},
		"sharing key":  {func(s *corev1.Service) { s.Annotations[SharedIPAnnotation] = "k" }, false},
		"not Porter's": {func(s *corev1.Service) { delete(s.Annotations, LBAnnotation) }, false},
	} {
		t.Run(name, func(t *testing.T) {
			changed := base()
			tc.mutate(changed)
			if got := Summarize(base()).Equal(Summarize(changed)); got != tc.equal {
				t.Errorf("Equal = %v, want %v", got, tc.equal)
			}
		})
	}
}
