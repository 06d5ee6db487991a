package v1alpha2

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Protocols an Eip may name. Porter announces layer2 pools only; the others
// are accepted so that existing OpenELB objects stay valid.
const (
	ProtocolLayer2 = "layer2"
	ProtocolBGP    = "bgp"
	ProtocolVIP    = "vip"
)

// Annotations and prefixes shared with OpenELB.
const (
	// DefaultEipAnnotation marks the pool used by Services that name none.
	DefaultEipAnnotation = "eip.openelb.kubesphere.io/is-default-eip"
	// CanReachPrefix in spec.interface picks the NIC that routes to an IP.
	CanReachPrefix = "can_reach:"
)

// EipSpec describes an address pool.
type EipSpec struct {
	// Address is the pool: one IP, a CIDR, or a range "first-last", of at
	// most 65536 addresses; an IPv6 range lies within one /112. The API
	// server refuses anything else; Porter's own parser (pkg/addr) reads
	// it the same way.
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:XValidation:rule="self.contains('-') ? (self.split('-').size() == 2 && self.split('-').all(x, isIP(x.trim()))) : (self.contains('/') ? isCIDR(self.trim()) : isIP(self.trim()))",message="must be one IP, a CIDR like 192.0.2.0/28, or a range like 192.0.2.10-192.0.2.20; IPv4-mapped IPv6 addresses and zones are not allowed"
	// +kubebuilder:validation:XValidation:rule="!self.contains('-') || self.split('-').size() != 2 || !self.split('-').all(x, isIP(x.trim())) || ip(self.split('-')[0].trim()).family() == ip(self.split('-')[1].trim()).family()",message="a range must not mix IPv4 and IPv6"
	// +kubebuilder:validation:XValidation:rule="!(self.contains('-') && self.split('-').size() == 2 && self.split('-').all(x, isIP(x.trim()) && ip(x.trim()).family() == 4)) || (int(self.split('-')[1].trim().split('.')[0]) * 16777216 + int(self.split('-')[1].trim().split('.')[1]) * 65536 + int(self.split('-')[1].trim().split('.')[2]) * 256 + int(self.split('-')[1].trim().split('.')[3])) >= (int(self.split('-')[0].trim().split('.')[0]) * 16777216 + int(self.split('-')[0].trim().split('.')[1]) * 65536 + int(self.split('-')[0].trim().split('.')[2]) * 256 + int(self.split('-')[0].trim().split('.')[3]))",message="the range is reversed: its first address comes after its last"
	// +kubebuilder:validation:XValidation:rule="!(self.contains('-') && self.split('-').size() == 2 && self.split('-').all(x, isIP(x.trim()) && ip(x.trim()).family() == 4)) || (int(self.split('-')[1].trim().split('.')[0]) * 16777216 + int(self.split('-')[1].trim().split('.')[1]) * 65536 + int(self.split('-')[1].trim().split('.')[2]) * 256 + int(self.split('-')[1].trim().split('.')[3])) - (int(self.split('-')[0].trim().split('.')[0]) * 16777216 + int(self.split('-')[0].trim().split('.')[1]) * 65536 + int(self.split('-')[0].trim().split('.')[2]) * 256 + int(self.split('-')[0].trim().split('.')[3])) < 65536",message="a pool holds at most 65536 addresses"
	// +kubebuilder:validation:XValidation:rule="!(self.contains('-') && self.split('-').size() == 2 && isIP(self.split('-')[0].trim()) && isIP(self.split('-')[1].trim()) && ip(self.split('-')[0].trim()).family() == 6 && ip(self.split('-')[1].trim()).family() == 6) || cidr(self.split('-')[0].trim() + '/112').masked() == cidr(self.split('-')[1].trim() + '/112').masked()",message="an IPv6 range must lie within one /112, so that it holds at most 65536 addresses"
	// +kubebuilder:validation:XValidation:rule="!(self.contains('-') && self.split('-').size() == 2 && isIP(self.split('-')[0].trim()) && isIP(self.split('-')[1].trim()) && ip(self.split('-')[0].trim()).family() == 6 && ip(self.split('-')[1].trim()).family() == 6) || !(cidr(self.split('-')[0].trim() + '/112').masked() == cidr(self.split('-')[1].trim() + '/112').masked()) || (self.split('-')[0].trim().substring(self.split('-')[0].trim().lastIndexOf(':') + 1).contains('.') != self.split('-')[1].trim().substring(self.split('-')[1].trim().lastIndexOf(':') + 1).contains('.')) || (self.split('-')[0].trim().substring(self.split('-')[0].trim().lastIndexOf(':') + 1).contains('.') ? int(self.split('-')[0].trim().substring(self.split('-')[0].trim().lastIndexOf(':') + 1).split('.')[2]) * 256 + int(self.split('-')[0].trim().substring(self.split('-')[0].trim().lastIndexOf(':') + 1).split('.')[3]) <= int(self.split('-')[1].trim().substring(self.split('-')[1].trim().lastIndexOf(':') + 1).split('.')[2]) * 256 + int(self.split('-')[1].trim().substring(self.split('-')[1].trim().lastIndexOf(':') + 1).split('.')[3]) : ('0000' + self.split('-')[0].trim().substring(self.split('-')[0].trim().lastIndexOf(':') + 1)).substring(self.split('-')[0].trim().substring(self.split('-')[0].trim().lastIndexOf(':') + 1).size()).lowerAscii() <= ('0000' + self.split('-')[1].trim().substring(self.split('-')[1].trim().lastIndexOf(':') + 1)).substring(self.split('-')[1].trim().substring(self.split('-')[1].trim().lastIndexOf(':') + 1).size()).lowerAscii())",message="the range is reversed: its first address comes after its last"
	// +kubebuilder:validation:XValidation:rule="!(self.contains('-') && self.split('-').size() == 2 && isIP(self.split('-')[0].trim()) && isIP(self.split('-')[1].trim()) && ip(self.split('-')[0].trim()).family() == 6 && ip(self.split('-')[1].trim()).family() == 6) || !(cidr(self.split('-')[0].trim() + '/112').masked() == cidr(self.split('-')[1].trim() + '/112').masked()) || self.split('-')[0].trim().substring(self.split('-')[0].trim().lastIndexOf(':') + 1).contains('.') == self.split('-')[1].trim().substring(self.split('-')[1].trim().lastIndexOf(':') + 1).contains('.')",message="write both ends of an IPv6 range alike: both in hex, or both with a dotted IPv4 tail"
	// +kubebuilder:validation:XValidation:rule="self.contains('-') || !self.contains('/') || !isCIDR(self.trim()) || cidr(self.trim()) == cidr(self.trim()).masked()",message="the CIDR has host bits set: write its network address, such as 192.0.2.0/28"
	// +kubebuilder:validation:XValidation:rule="self.contains('-') || !self.contains('/') || !isCIDR(self.trim()) || cidr(self.trim()).prefixLength() >= (cidr(self.trim()).ip().family() == 4 ? 16 : 112)",message="a pool holds at most 65536 addresses: an IPv4 CIDR must be /16 or longer, an IPv6 CIDR /112 or longer"
	Address string `json:"address"`

	// Protocol is how the pool's addresses are announced. Porter announces
	// layer2 pools; bgp and vip pools are accepted and left alone. As in
	// OpenELB, a pool that names no protocol is a bgp pool.
	// +kubebuilder:validation:Enum=layer2;bgp;vip
	// +kubebuilder:default=bgp
	// +optional
	Protocol string `json:"protocol,omitempty"`

	// Interface is the NIC to announce on: a name such as eth0, or
	// "can_reach:<ip>" for the NIC that routes to that IP.
	// +optional
	Interface string `json:"interface,omitempty"`

	// Disable stops new allocations from the pool.
	// +optional
	Disable bool `json:"disable,omitempty"`

	// UsingKnownIPs allows addresses that may look reserved, such as a
	// subnet's network or broadcast address, because the admin knows them
	// to be free.
	// +optional
	UsingKnownIPs bool `json:"usingKnownIPs,omitempty"`

	// Priority orders pools that could serve a Service: lower is preferred.
	// +optional
	Priority int `json:"priority,omitempty"`

	// Namespaces limits the pool to Services in these namespaces.
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`

	// NamespaceSelector limits the pool to Services in namespaces with
	// these labels.
	// +optional
	NamespaceSelector map[string]string `json:"namespaceSelector,omitempty"`

	// NodeSelector limits which nodes answer for the pool's addresses:
	// only nodes whose labels it matches are candidates. Empty or absent
	// means every node. Porter's own field: older Porter and OpenELB
	// readers ignore it.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
}

// EipConflict is an address of the pool that Porter will not announce.
type EipConflict struct {
	// Address is the refused address or range.
	Address string `json:"address"`
	// Reason says why, naming the object that holds the address, e.g.
	// "InternalIP of node orion".
	Reason string `json:"reason"`
	// MAC is the hardware address that answered for the address on the
	// wire, when a speaker found it in use by another host.
	// +optional
	MAC string `json:"mac,omitempty"`
}

// EipStatus is the pool's state as Porter keeps it.
type EipStatus struct {
	// Occupied is true when every address is in use.
	// +optional
	Occupied bool `json:"occupied,omitempty"`
	// Usage is how many addresses are in use.
	// +optional
	Usage int `json:"usage,omitempty"`
	// PoolSize is how many addresses the pool holds.
	// +optional
	PoolSize int `json:"poolSize,omitempty"`
	// Used maps each address in use to "namespace/service".
	// +optional
	Used map[string]string `json:"used,omitempty"`
	// FirstIP is the pool's first address.
	// +optional
	FirstIP string `json:"firstIP,omitempty"`
	// LastIP is the pool's last address.
	// +optional
	LastIP string `json:"lastIP,omitempty"`
	// Ready is true when Porter can allocate from and announce the pool.
	// +optional
	Ready bool `json:"ready,omitempty"`
	// V4 is true for an IPv4 pool.
	// +optional
	V4 bool `json:"v4,omitempty"`
	// Conflicts are addresses Porter refuses to announce, or found in use
	// on the wire, each with the reason.
	// +optional
	Conflicts []EipConflict `json:"conflicts,omitempty"`
}

// Eip is a pool of addresses for LoadBalancer Services.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=porter
// +kubebuilder:subresource:status
// +kubebuilder:storageversion
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="Protocol",type=string,JSONPath=`.spec.protocol`
// +kubebuilder:printcolumn:name="Interface",type=string,JSONPath=`.spec.interface`
// +kubebuilder:printcolumn:name="Usage",type=integer,JSONPath=`.status.usage`
// +kubebuilder:printcolumn:name="Total",type=integer,JSONPath=`.status.poolSize`
// +kubebuilder:printcolumn:name="Ready",type=boolean,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Disabled",type=boolean,JSONPath=`.spec.disable`
type Eip struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   EipSpec   `json:"spec,omitempty"`
	Status EipStatus `json:"status,omitempty"`
}

// EipList is a list of Eips.
//
// +kubebuilder:object:root=true
type EipList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Eip `json:"items"`
}

// IsDefault reports whether the Eip is the default pool.
func (e *Eip) IsDefault() bool {
	return e.Annotations[DefaultEipAnnotation] == "true"
}

// ServeUnclassedAnnotation, "true" on the default pool, makes Porter serve
// LoadBalancer Services that name no loadBalancerClass and carry no
// lb.kubesphere.io/v1alpha1 annotation, as the cluster's one load
// balancer. `kubectl porter init` sets it when no other load balancer is
// found; "false", or no annotation, opts out, and Porter then serves only
// the Services that ask for it, as OpenELB does.
const ServeUnclassedAnnotation = "porter.kubesphere.io/serve-services-without-class"

// ServesUnclassed reports whether the Eip is the default pool and asks
// Porter to serve Services without a class.
func (e *Eip) ServesUnclassed() bool {
	return e.IsDefault() && e.Annotations[ServeUnclassedAnnotation] == "true"
}

// Node annotations Porter reads.
const (
	// Layer2Annotation names the IP of the NIC a node announces on.
	Layer2Annotation = "layer2.porter.kubesphere.io/v1alpha1"
	// Layer2AnnotationOpenELB is OpenELB's spelling of Layer2Annotation.
	Layer2AnnotationOpenELB = "layer2.openelb.kubesphere.io/v1alpha1"
)
