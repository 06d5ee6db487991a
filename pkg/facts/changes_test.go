package facts

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

func TestChanges(t *testing.T) {
	node := func(ip string, mutate ...func(*corev1.Node)) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
		for _, m := range mutate {
			m(n)
		}
		return n
	}
	eip := func(address string, usage int) *v1alpha2.Eip {
		return &v1alpha2.Eip{ObjectMeta: metav1.ObjectMeta{Name: "p"},
			Spec: v1alpha2.EipSpec{Address: address}, Status: v1alpha2.EipStatus{Usage: usage}}
	}
	nics := func(addrs []string, gws []string, announcing int) *v1alpha1.NodeNICs {
		return &v1alpha1.NodeNICs{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: v1alpha1.NodeNICsStatus{
			NICs: []v1alpha1.NIC{{Name: "eth0", Addresses: addrs}}, Gateways: gws,
			Speaker: &v1alpha1.SpeakerStatus{Announcing: announcing}, UpdatedAt: metav1.Now()}}
	}
	slice := func(ns, svc string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}}}
	}
	for _, tc := range []struct {
		name string
		o, n any
		want bool
	}{
		{"node heartbeat", node("192.0.2.1"), node("192.0.2.1", func(n *corev1.Node) {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		}), false},
		{"node address", node("192.0.2.1"), node("192.0.2.2"), true},
		{"node layer2 annotation", node("192.0.2.1"), node("192.0.2.1", func(n *corev1.Node) {
			n.Annotations = map[string]string{"layer2.porter.kubesphere.io/v1alpha1": "198.51.100.1"}
		}), true},
		{"pool status write", eip("192.0.2.10-192.0.2.20", 1), eip("192.0.2.10-192.0.2.20", 2), false},
		{"pool range", eip("192.0.2.10-192.0.2.20", 1), eip("192.0.2.10-192.0.2.30", 1), true},
		{"namespace labels", &corev1.Namespace{}, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"team": "a"}}}, true},
		{"namespace status", &corev1.Namespace{}, &corev1.Namespace{Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}, false},
		{"an ordinary Service's endpoints", slice("web", "shop"), slice("web", "shop"), false},
		{"the API server's endpoints, unchanged", slice("default", "kubernetes"), slice("default", "kubernetes"), false},
		{"the API server's endpoints", slice("default", "kubernetes"), func() any {
			s := slice("default", "kubernetes")
			s.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.5"}}}
			return s
		}(), true},
		{"node pod CIDR", node("192.0.2.1"), node("192.0.2.1", func(n *corev1.Node) { n.Spec.PodCIDRs = []string{"198.19.0.0/24"} }), true},
		{"speaker status in a NIC report", nics([]string{"198.18.0.11/24"}, nil, 1), nics([]string{"198.18.0.11/24"}, nil, 2), false},
		{"a secondary address in a NIC report", nics([]string{"198.18.0.11/24"}, nil, 1), nics([]string{"198.18.0.11/24", "198.18.0.30/24"}, nil, 1), true},
		{"a gateway in a NIC report", nics([]string{"198.18.0.11/24"}, nil, 1), nics([]string{"198.18.0.11/24"}, []string{"198.18.0.1"}, 1), true},
		{"pool labels, which no rule reads", eip("192.0.2.10-192.0.2.20", 1), func() any {
			e := eip("192.0.2.10-192.0.2.20", 1)
			e.Labels = map[string]string{"team": "a"}
			return e
		}(), false},
		{"pool made the default", eip("192.0.2.10-192.0.2.20", 1), func() any {
			e := eip("192.0.2.10-192.0.2.20", 1)
			e.Annotations = map[string]string{v1alpha2.DefaultEipAnnotation: "true"}
			return e
		}(), true},
		{"pool status write, decoded", addrpolicy.DecodePool(eip("192.0.2.10-192.0.2.20", 1)), addrpolicy.DecodePool(eip("192.0.2.10-192.0.2.20", 2)), false},
		{"pool range, decoded", addrpolicy.DecodePool(eip("192.0.2.10-192.0.2.20", 1)), addrpolicy.DecodePool(eip("192.0.2.10-192.0.2.30", 1)), true},
		{"speaker status in a NIC report, decoded", addrpolicy.DecodeReport(nics([]string{"198.18.0.11/24"}, nil, 1)), addrpolicy.DecodeReport(nics([]string{"198.18.0.11/24"}, nil, 2)), false},
		{"a secondary address in a NIC report, decoded", addrpolicy.DecodeReport(nics([]string{"198.18.0.11/24"}, nil, 1)), addrpolicy.DecodeReport(nics([]string{"198.18.0.11/24", "198.18.0.30/24"}, nil, 1)), true},
		{"a gateway in a NIC report, decoded", addrpolicy.DecodeReport(nics([]string{"198.18.0.11/24"}, nil, 1)), addrpolicy.DecodeReport(nics([]string{"198.18.0.11/24"}, []string{"198.18.0.1"}, 1)), true},
		{"a NIC report first published, decoded", addrpolicy.DecodeReport(&v1alpha1.NodeNICs{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}), addrpolicy.DecodeReport(nics(nil, nil, 0)), true},
		{"a pool replaced by a decoded one", eip("192.0.2.10-192.0.2.20", 1), addrpolicy.DecodePool(eip("192.0.2.10-192.0.2.20", 1)), true},
		{"cluster-info", &corev1.ConfigMap{}, &corev1.ConfigMap{Data: map[string]string{"kubeconfig": "x"}}, true},
	} {
		if got := Changes(tc.o, tc.n); got != tc.want {
			t.Errorf("%s: Changes = %v, want %v", tc.name, got, tc.want)
		}
	}
}
