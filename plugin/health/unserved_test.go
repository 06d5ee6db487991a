package health

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/lbservice"
)

func TestUnservedBecause(t *testing.T) {
	other := "example.test/other"
	for _, tc := range []struct {
		name       string
		svc        corev1.Service
		unclassed  bool
		wantOK     bool
		wantReason string
		wantFix    string
	}{
		{"no class, Porter not serving those", corev1.Service{}, false, true, "names no load balancer", "serve-services-without-class=true"},
		{"no class, Porter serving those: pending, not unserved", corev1.Service{}, true, false, "", ""},
		{"another class", corev1.Service{Spec: corev1.ServiceSpec{LoadBalancerClass: &other}}, true, true, "example.test/other", "recreate it"},
		{"another annotation", corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{lbservice.LBAnnotation: "metallb"}}}, false, true, `"metallb"`, "--overwrite"},
		{"already has an address", corev1.Service{Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.1"}}}}}, false, false, "", ""},
		{"Porter's own", corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{lbservice.LBAnnotation: "porter"}}}, false, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.svc
			s.Name, s.Namespace, s.Spec.Type = "web", "default", corev1.ServiceTypeLoadBalancer
			u, ok := UnservedBecause(&s, tc.unclassed)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v (%+v)", ok, tc.wantOK, u)
			}
			if !strings.Contains(u.Reason, tc.wantReason) || !strings.Contains(u.Fix, tc.wantFix) {
				t.Errorf("got %+v, want reason with %q and fix with %q", u, tc.wantReason, tc.wantFix)
			}
			if ok && u.Name != "default/web" {
				t.Errorf("name %q", u.Name)
			}
		})
	}
}
