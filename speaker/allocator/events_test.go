package allocator

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestChangesPools(t *testing.T) {
	node := func(ip string, mutate ...func(*corev1.Node)) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
		for _, m := range mutate {
			m(n)
		}
		return n
	}
	eip := func(address, usage string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"name": "p"},
			"spec":     map[string]any{"address": address},
			"status":   map[string]any{"usage": usage},
		}}
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
		{"pool status write", eip("192.0.2.10-192.0.2.20", "1"), eip("192.0.2.10-192.0.2.20", "2"), false},
		{"pool range", eip("192.0.2.10-192.0.2.20", "1"), eip("192.0.2.10-192.0.2.30", "1"), true},
		{"namespace labels", &corev1.Namespace{}, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"team": "a"}}}, true},
		{"namespace status", &corev1.Namespace{}, &corev1.Namespace{Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}, false},
		{"an ordinary Service's endpoints", slice("web", "shop"), slice("web", "shop"), false},
		{"the API server's endpoints", slice("default", "kubernetes"), slice("default", "kubernetes"), true},
	} {
		if got := ChangesPools(tc.o, tc.n); got != tc.want {
			t.Errorf("%s: ChangesPools = %v, want %v", tc.name, got, tc.want)
		}
	}
}
