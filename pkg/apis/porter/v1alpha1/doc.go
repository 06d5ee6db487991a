// Package v1alpha1 holds Porter's own API, porter.kubesphere.io/v1alpha1:
// objects the speakers publish about the nodes they run on.
//
// +kubebuilder:object:generate=true
// +groupName=porter.kubesphere.io
package v1alpha1
