// Package v1alpha2 holds the network.kubesphere.io/v1alpha2 API: the Eip
// address pool, field for field compatible with Porter's and OpenELB's.
//
// +kubebuilder:object:generate=true
// +groupName=network.kubesphere.io
package v1alpha2
