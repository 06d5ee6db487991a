package setup

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

// Every object is applied after what it lives in: on a cluster without
// the namespace, a namespaced object applied first fails.
func TestSpeakerObjectsComeInApplyOrder(t *testing.T) {
	mapper := meta.NewDefaultRESTMapper(nil)
	for _, k := range []struct {
		gv    schema.GroupVersion
		kind  string
		scope meta.RESTScope
	}{
		{schema.GroupVersion{Version: "v1"}, "Namespace", meta.RESTScopeRoot},
		{schema.GroupVersion{Version: "v1"}, "ServiceAccount", meta.RESTScopeNamespace},
		{schema.GroupVersion{Version: "v1"}, "Service", meta.RESTScopeNamespace},
		{schema.GroupVersion{Group: "apps", Version: "v1"}, "DaemonSet", meta.RESTScopeNamespace},
		{schema.GroupVersion{Group: "apps", Version: "v1"}, "Deployment", meta.RESTScopeNamespace},
		{schema.GroupVersion{Group: "rbac.authorization.k8s.io", Version: "v1"}, "ClusterRole", meta.RESTScopeRoot},
		{schema.GroupVersion{Group: "rbac.authorization.k8s.io", Version: "v1"}, "ClusterRoleBinding", meta.RESTScopeRoot},
		{schema.GroupVersion{Group: "rbac.authorization.k8s.io", Version: "v1"}, "Role", meta.RESTScopeNamespace},
		{schema.GroupVersion{Group: "rbac.authorization.k8s.io", Version: "v1"}, "RoleBinding", meta.RESTScopeNamespace},
		{schema.GroupVersion{Group: "apiextensions.k8s.io", Version: "v1"}, "CustomResourceDefinition", meta.RESTScopeRoot},
		{schema.GroupVersion{Group: "admissionregistration.k8s.io", Version: "v1"}, "ValidatingAdmissionPolicy", meta.RESTScopeRoot},
		{schema.GroupVersion{Group: "admissionregistration.k8s.io", Version: "v1"}, "ValidatingAdmissionPolicyBinding", meta.RESTScopeRoot},
	} {
		mapper.Add(k.gv.WithKind(k.kind), k.scope)
	}
	s := &Speaker{Mapper: mapper, Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())}
	objs, err := s.objects()
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.obj.GetKind())
	}
	if kinds[0] != "Namespace" {
		t.Fatalf("first object is a %s, not the Namespace: %v", kinds[0], kinds)
	}
	if i, j := slices.Index(kinds, "Service"), slices.Index(kinds, "DaemonSet"); i < 0 || j < 0 || i > j {
		t.Errorf("order %v", kinds)
	}
	for i := 1; i < len(objs); i++ {
		if applyRank(objs[i-1].obj) > applyRank(objs[i].obj) {
			t.Errorf("%s before %s: %v", kinds[i-1], kinds[i], kinds)
		}
	}
}
