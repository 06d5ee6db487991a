package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NIC is one network interface of a node, as its speaker sees it.
type NIC struct {
	// Name is the interface name, e.g. eth0.
	Name string `json:"name"`
	// MAC is the hardware address; empty for interfaces without one.
	// +optional
	MAC string `json:"mac,omitempty"`
	// Up is true when the interface is administratively up.
	Up bool `json:"up"`
	// Carrier is true when the link has carrier (a cable, a peer).
	Carrier bool `json:"carrier"`
	// Addresses are the interface's addresses in CIDR form, e.g.
	// 192.0.2.10/24.
	// +optional
	Addresses []string `json:"addresses,omitempty"`
	// HoldsInternalIP is true for the NIC that has the node's InternalIP.
	// +optional
	HoldsInternalIP bool `json:"holdsInternalIP,omitempty"`
}

// NodeNICsStatus is the inventory.
type NodeNICsStatus struct {
	// NICs are the node's interfaces, loopback and virtual interfaces of
	// container networking left out.
	// +optional
	NICs []NIC `json:"nics,omitempty"`
	// Primary is the name of the NIC holding the node's InternalIP.
	// +optional
	Primary string `json:"primary,omitempty"`
	// Gateways are the next hops of the node's default routes. Porter
	// never hands out or answers for them.
	// +optional
	Gateways []string `json:"gateways,omitempty"`
	// Conflicts are addresses this node's speaker stopped answering for
	// because another host answered for them on the wire.
	// +optional
	Conflicts []AddressConflict `json:"conflicts,omitempty"`
	// UpdatedAt is when the speaker last read the interfaces.
	// +optional
	UpdatedAt metav1.Time `json:"updatedAt,omitempty"`
	// Speaker is what the node's speaker reports about itself.
	// +optional
	Speaker *SpeakerStatus `json:"speaker,omitempty"`
}

// AddressConflict is an address another host answers for.
type AddressConflict struct {
	// Address is the conflicting address.
	Address string `json:"address"`
	// MAC is the hardware address of the host that answered.
	MAC string `json:"mac"`
	// Since is when the speaker first saw the other host answer.
	// +optional
	Since metav1.Time `json:"since,omitempty"`
}

// SpeakerStatus is the speaker's own view: where its peers reach it, which
// peers it sees alive, and how many addresses it answers for.
type SpeakerStatus struct {
	// MemberAddress is the host:port of the speaker's membership protocol.
	// Peers join through it.
	// +optional
	MemberAddress string `json:"memberAddress,omitempty"`
	// Members are the node names of the speakers this one sees alive and
	// counts (the cluster vouches for them), itself included.
	// +optional
	Members []string `json:"members,omitempty"`
	// Announcing is how many addresses this node answers ARP for.
	// +optional
	Announcing int `json:"announcing,omitempty"`
	// Addresses are the addresses this node answers ARP for, and on which
	// NIC. Status reads who announces an address from here, not from the
	// Service's porter.kubesphere.io/announcer annotation, which anyone
	// who may edit the Service can write.
	// +optional
	Addresses []AnnouncedAddress `json:"addresses,omitempty"`
	// MemberKeys are the fingerprints of the keys the speaker's gossip is
	// accepted under, the one it sends with first. None means it gossips
	// without a key (--insecure-member).
	// +optional
	MemberKeys []string `json:"memberKeys,omitempty"`
	// UnknownMembers are the gossip members this speaker ignores because
	// the cluster does not vouch for them, each with why.
	// +optional
	UnknownMembers []string `json:"unknownMembers,omitempty"`
	// Version is the speaker's version.
	// +optional
	Version string `json:"version,omitempty"`
}

// AnnouncedAddress is an address a speaker answers for.
type AnnouncedAddress struct {
	// Address is the announced address.
	Address string `json:"address"`
	// Interface is the NIC it is announced on.
	Interface string `json:"interface"`
}

// NodeNICs is the NIC inventory of one node, named after the node and
// published by the speaker running there. It is what `ip link` and `ip addr`
// would show on the node, readable with kubectl.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=porter,shortName=nics
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Primary",type=string,JSONPath=`.status.primary`
// +kubebuilder:printcolumn:name="NICs",type=string,JSONPath=`.status.nics[*].name`
// +kubebuilder:printcolumn:name="Announcing",type=integer,JSONPath=`.status.speaker.announcing`
// +kubebuilder:printcolumn:name="Members",type=string,JSONPath=`.status.speaker.members`,priority=1
// +kubebuilder:printcolumn:name="Updated",type=date,JSONPath=`.status.updatedAt`
type NodeNICs struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Status NodeNICsStatus `json:"status,omitempty"`
}

// NodeNICsList is a list of NodeNICs.
//
// +kubebuilder:object:root=true
type NodeNICsList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeNICs `json:"items"`
}
