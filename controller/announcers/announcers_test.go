package announcers

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/lbservice"
)

func nics(node string, addrs ...string) *v1alpha1.NodeNICs {
	n := &v1alpha1.NodeNICs{ObjectMeta: metav1.ObjectMeta{Name: node}}
	if addrs == nil {
		return n
	}
	n.Status.Speaker = &v1alpha1.SpeakerStatus{Members: []string{"node1", "node2", "node3", "node4"}}
	for _, a := range addrs {
		n.Status.Speaker.Addresses = append(n.Status.Speaker.Addresses, v1alpha1.AnnouncedAddress{Address: a, Interface: "eth0"})
	}
	return n
}

func svc(ip, annotation string) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Annotations: map[string]string{lbservice.LBAnnotation: "porter"}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
	}
	if ip != "" {
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	}
	if annotation != "" {
		s.Annotations[lbservice.AnnouncerAnnotation] = annotation
	}
	return s
}

func TestWant(t *testing.T) {
	idx := Build([]*v1alpha1.NodeNICs{
		nics("node2", "198.18.0.10"),
		nics("node1", "198.18.0.10", "198.18.0.11"),
		nics("node3"),
		nics("node4", "not-an-address"),
	})
	if got := idx[netip.MustParseAddr("198.18.0.10")].Node; got != "node1" {
		t.Errorf("an address two nodes report goes to the first by name: got %q", got)
	}
	for _, tc := range []struct {
		name       string
		svc        *corev1.Service
		want       string // "" means nil
		wantChange bool
	}{
		{"announced, not yet annotated", svc("198.18.0.11", ""), "198.18.0.11 node1 eth0", true},
		{"announced and annotated alike", svc("198.18.0.11", "198.18.0.11 node1 eth0"), "198.18.0.11 node1 eth0", false},
		{"moved to another node", svc("198.18.0.10", "198.18.0.10 node2 eth0"), "198.18.0.10 node1 eth0", true},
		{"a tenant's forged value is corrected", svc("198.18.0.11", "198.18.0.11 evil eth9"), "198.18.0.11 node1 eth0", true},
		{"nobody announces: kept", svc("198.18.0.99", "198.18.0.99 node2 eth0"), "", false},
		{"no address: removed", svc("", "198.18.0.99 node2 eth0"), "", true},
		{"no address, no annotation", svc("", ""), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, change := Want(tc.svc, lbservice.IsPorter(tc.svc), idx)
			got := ""
			if v != nil {
				got = *v
			}
			if got != tc.want || change != tc.wantChange {
				t.Errorf("Want = %q, %v; want %q, %v", got, change, tc.want, tc.wantChange)
			}
		})
	}
}

// A speaker killed with its address leaves its report naming it; the node
// that took the address over is named, since no live speaker sees the
// dead one.
func TestBuildSkipsADeadSpeakersLastReport(t *testing.T) {
	dead := nics("node1", "198.18.0.10")
	dead.Status.Speaker.Members = []string{"node1", "node2", "node3"}
	heir := nics("node3", "198.18.0.10")
	heir.Status.Speaker.Members = []string{"node2", "node3"}
	other := nics("node2")
	other.Status.Speaker = &v1alpha1.SpeakerStatus{Members: []string{"node2", "node3"}}
	if got := Build([]*v1alpha1.NodeNICs{dead, heir, other})[netip.MustParseAddr("198.18.0.10")].Node; got != "node3" {
		t.Errorf("198.18.0.10 announced by %q, want node3", got)
	}
}

func TestChanged(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, cur *v1alpha1.NodeNICs
		want     []string
	}{
		{"new report", nil, nics("n", "198.18.0.1"), []string{"198.18.0.1"}},
		{"same", nics("n", "198.18.0.1"), nics("n", "198.18.0.1"), nil},
		{"gained and lost", nics("n", "198.18.0.1"), nics("n", "198.18.0.2"), []string{"198.18.0.1", "198.18.0.2"}},
		{"speaker gone", nics("n", "198.18.0.1"), nics("n"), []string{"198.18.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := changed(tc.old, tc.cur)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("changed = %v, want %v", got, tc.want)
			}
		})
	}
}
