package plugin

import (
	"strings"
	"testing"

	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
)

func TestBuildEip(t *testing.T) {
	o := eipCreateOptions{address: " 192.0.2.10-192.0.2.12 ", iface: "can_reach:192.0.2.1", protocol: "layer2",
		namespaces: []string{"web"}, namespaceSelector: map[string]string{"team": "a"}, priority: 3, disable: true, isDefault: true, usingKnownIPs: true}
	e, err := o.buildEip("pool-a")
	if err != nil {
		t.Fatal(err)
	}
	want := v1alpha2.EipSpec{Address: "192.0.2.10-192.0.2.12", Protocol: "layer2", Interface: "can_reach:192.0.2.1", Disable: true,
		UsingKnownIPs: true, Priority: 3, Namespaces: []string{"web"}, NamespaceSelector: map[string]string{"team": "a"}}
	if e.Spec.Address != want.Address || e.Spec.Interface != want.Interface || !e.Spec.Disable || !e.Spec.UsingKnownIPs ||
		e.Spec.Priority != 3 || e.Spec.Namespaces[0] != "web" || e.Spec.NamespaceSelector["team"] != "a" || !e.IsDefault() {
		t.Fatalf("built %+v", e)
	}
	if e.APIVersion != "network.kubesphere.io/v1alpha2" || e.Kind != "Eip" {
		t.Fatalf("type meta %v", e.TypeMeta)
	}
}

func TestBuildEipRefusesBadInput(t *testing.T) {
	base := eipCreateOptions{address: "192.0.2.10", protocol: "layer2"}
	for _, c := range []struct {
		name string
		mod  func(*eipCreateOptions)
		want string
	}{
		{"Bad_Name", func(*eipCreateOptions) {}, "invalid Eip name"},
		{"ok", func(o *eipCreateOptions) { o.protocol = "ospf" }, `invalid --protocol "ospf"`},
		{"ok", func(o *eipCreateOptions) { o.iface = "can_reach:" }, "can_reach needs an IP"},
		{"ok", func(o *eipCreateOptions) { o.namespaces = []string{"Web"} }, `invalid namespace "Web"`},
		{"ok", func(o *eipCreateOptions) { o.address = "192.0.2.9-192.0.2.1" }, "invalid --address"},
	} {
		o := base
		c.mod(&o)
		if _, err := o.buildEip(c.name); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %+v: err %v, want %q", c.name, o, err, c.want)
		}
	}
}

func TestEipCreateNeedsAddress(t *testing.T) {
	code, _, stderr := execute("eip", "create", "p")
	if code == 0 || !strings.Contains(stderr, `required flag(s) "address" not set`) {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}
