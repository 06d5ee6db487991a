package v1alpha2

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API's group and version.
var GroupVersion = schema.GroupVersion{Group: "network.kubesphere.io", Version: "v1alpha2"}

// EipResource is the Eip resource, for dynamic and discovery clients.
var EipResource = GroupVersion.WithResource("eips")

// AddToScheme registers the API's types in a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &Eip{}, &EipList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
