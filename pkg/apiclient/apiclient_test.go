package apiclient

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// The scheme is the point of the package: the kinds Porter reads, and no
// other group.
func TestSchemeRegistersOnlyWhatPorterReads(t *testing.T) {
	s, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []Kind{Services, Nodes, Namespaces, Pods, Secrets, ConfigMaps, EndpointSlices, ServiceCIDRs, Eips, NodeNICs} {
		obj := k.obj()
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil || len(gvks) == 0 || gvks[0].GroupVersion() != k.gv {
			t.Errorf("%s: kinds %v, %v; want group %s", k.name, gvks, err, k.gv)
		}
	}
	groups := map[string]bool{}
	for gvk := range s.AllKnownTypes() {
		groups[gvk.Group] = true
	}
	for _, g := range []string{"apps", "batch", "rbac.authorization.k8s.io", "coordination.k8s.io"} {
		if groups[g] {
			t.Errorf("the scheme registers group %s, which Porter's daemons do not read", g)
		}
	}
	if !s.Recognizes(schema.GroupVersionKind{Version: "v1", Kind: "Event"}) {
		t.Error("Events, which both daemons record, are not registered")
	}
}

// A protobuf kind is decoded whole: asking to leave a field out of it is
// an error, not a silent no-op.
func TestWithoutRefusesProtobufKinds(t *testing.T) {
	c, err := New(&rest.Config{Host: "https://192.0.2.1:6443"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resource(Services).Without("status"); err == nil {
		t.Error("a Service read as protobuf took an unread field")
	}
	if _, err := c.Resource(Services).Without(); err != nil {
		t.Errorf("no unread fields on a protobuf kind: %v", err)
	}
	r, err := c.Resource(NodeNICs).Without("status.speaker.addresses")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.prefixed("items", "*"); len(got) != 1 || got[0].String() != "items.*.status.speaker.addresses" {
		t.Errorf("in a list: %v", got)
	}
}
