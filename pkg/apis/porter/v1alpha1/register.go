package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API's group and version.
var GroupVersion = schema.GroupVersion{Group: "porter.kubesphere.io", Version: "v1alpha1"}

// NodeNICsResource is the NodeNICs resource, for dynamic clients.
var NodeNICsResource = GroupVersion.WithResource("nodenics")

// AddToScheme registers the API's types in a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &NodeNICs{}, &NodeNICsList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
