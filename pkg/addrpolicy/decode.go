package addrpolicy

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/porterlb/porter/pkg/addr"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

// Pool is an Eip as every component reads it.
type Pool struct {
	Name    string
	Created time.Time
	// Range is the pool's addresses; invalid when Err is set.
	Range addr.Range
	// Err says why spec.address could not be read. Such a pool holds
	// nothing.
	Err error
	// Protocol is spec.protocol as written; empty means bgp, as in
	// OpenELB.
	Protocol  string
	Interface string
	Disabled  bool
	Default   bool
	// ServesUnclassed: the default pool asks Porter to serve Services
	// that name no class (v1alpha2.ServeUnclassedAnnotation).
	ServesUnclassed bool
	UsingKnownIPs   bool
	Priority        int
	// Namespaces and Selector limit the pool to some namespaces; both
	// empty means any namespace.
	Namespaces []string
	Selector   labels.Selector
	// NodeSelector picks the nodes that may answer for the pool; nil
	// means every node. One that cannot be read selects none, and
	// NodeSelectorErr says why.
	NodeSelector    labels.Selector
	NodeSelectorErr error
}

// PoolFromEip decodes an Eip.
func PoolFromEip(e *v1alpha2.Eip) Pool {
	p := Pool{
		Name:            e.Name,
		Created:         e.CreationTimestamp.Time,
		Protocol:        e.Spec.Protocol,
		Interface:       e.Spec.Interface,
		Disabled:        e.Spec.Disable,
		Default:         e.IsDefault(),
		ServesUnclassed: e.ServesUnclassed(),
		UsingKnownIPs:   e.Spec.UsingKnownIPs,
		Priority:        e.Spec.Priority,
		Namespaces:      e.Spec.Namespaces,
	}
	p.Range, p.Err = addr.Parse(e.Spec.Address)
	if len(e.Spec.NamespaceSelector) > 0 {
		p.Selector = labels.SelectorFromSet(e.Spec.NamespaceSelector)
	}
	if e.Spec.NodeSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(e.Spec.NodeSelector)
		if err != nil {
			sel, p.NodeSelectorErr = labels.Nothing(), fmt.Errorf("spec.nodeSelector: %w", err)
		}
		p.NodeSelector = sel
	}
	return p
}

// SelectsNode reports whether node n may answer for the pool's addresses.
func (p *Pool) SelectsNode(n *Node) bool {
	return p.NodeSelector == nil || p.NodeSelector.Matches(n.Labels)
}

// Layer2 reports whether Porter serves the pool: a layer2 pool whose
// address could be read.
func (p *Pool) Layer2() bool { return p.Err == nil && p.Protocol == v1alpha2.ProtocolLayer2 }

// Announced reports whether the pool's addresses are answered for. A
// disabled pool keeps the addresses it gave but goes silent: disabling is
// how the lockout guard takes a pool off the wire.
func (p *Pool) Announced() bool { return p.Layer2() && !p.Disabled }

// Restricted reports whether the pool serves only some namespaces.
func (p *Pool) Restricted() bool {
	return len(p.Namespaces) > 0 || p.Selector != nil && !p.Selector.Empty()
}

// Admits reports whether a Service in namespace ns, whose labels are
// nsLabels, may draw from the pool.
func (p *Pool) Admits(ns string, nsLabels labels.Set) bool {
	if !p.Restricted() {
		return true
	}
	for _, n := range p.Namespaces {
		if n == ns {
			return true
		}
	}
	return p.Selector != nil && !p.Selector.Empty() && p.Selector.Matches(nsLabels)
}

// Node is what a Node object says about where the node is on the network.
type Node struct {
	Name string
	// InternalIP is the node's first InternalIP.
	InternalIP netip.Addr
	// Layer2 is the address the layer2 annotation names, in either
	// spelling; Porter's wins over OpenELB's.
	Layer2 netip.Addr
	// Addresses are every address the Node object names, each with where.
	Addresses []Reserved
	PodCIDRs  []netip.Prefix
	// Labels pick the pools whose nodeSelector the node is in.
	Labels labels.Set
}

// NodeFromObject decodes a Node. Addresses are normalised: an IPv4-mapped
// IPv6 address is its IPv4 address.
func NodeFromObject(n *corev1.Node) Node {
	return nodeFrom(n, true)
}

// nodeFrom is NodeFromObject; it shares n's labels unless clone is set.
func nodeFrom(n *corev1.Node, clone bool) Node {
	out := Node{Name: n.Name}
	if len(n.Labels) > 0 {
		out.Labels = labels.Set(n.Labels)
		if clone {
			out.Labels = maps.Clone(out.Labels)
		}
	}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		ip, err := netip.ParseAddr(strings.TrimSpace(a.Address))
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		if a.Type == corev1.NodeInternalIP && !out.InternalIP.IsValid() {
			out.InternalIP = ip
		}
		out.Addresses = append(out.Addresses, Reserved{
			Range:  addr.Range{First: ip, Last: ip},
			Reason: Reason{Class: ClassNode, Text: fmt.Sprintf("is the %s of node %s", a.Type, n.Name)},
		})
	}
	for _, k := range layer2Keys {
		v, ok := n.Annotations[k]
		if !ok {
			continue
		}
		ip, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		if !out.Layer2.IsValid() {
			out.Layer2 = ip
		}
		out.Addresses = append(out.Addresses, Reserved{
			Range:  addr.Range{First: ip, Last: ip},
			Reason: Reason{Class: ClassNode, Text: fmt.Sprintf("is the layer2 NIC address of node %s (annotation %s)", n.Name, k)},
		})
	}
	for _, c := range n.Spec.PodCIDRs {
		if p, err := netip.ParsePrefix(strings.TrimSpace(c)); err == nil {
			out.PodCIDRs = append(out.PodCIDRs, addr.UnmapPrefix(p).Masked())
		}
	}
	if len(out.PodCIDRs) == 0 && n.Spec.PodCIDR != "" {
		if p, err := netip.ParsePrefix(strings.TrimSpace(n.Spec.PodCIDR)); err == nil {
			out.PodCIDRs = append(out.PodCIDRs, addr.UnmapPrefix(p).Masked())
		}
	}
	return out
}

// layer2Keys are the layer2 annotation's spellings, Porter's first.
var layer2Keys = []string{v1alpha2.Layer2Annotation, v1alpha2.Layer2AnnotationOpenELB}

// Layer2Value is the node's layer2 annotation as written, in whichever
// spelling it carries, Porter's first; "" when it has none.
func Layer2Value(annotations map[string]string) string {
	for _, k := range layer2Keys {
		if v := strings.TrimSpace(annotations[k]); v != "" {
			return v
		}
	}
	return ""
}

// Primaries are the addresses whose NIC a pool without an interface is
// announced on, in order: the layer2 annotation, then the InternalIP.
func (n *Node) Primaries() []netip.Addr {
	var out []netip.Addr
	for _, ip := range []netip.Addr{n.Layer2, n.InternalIP} {
		if ip.IsValid() {
			out = append(out, ip)
		}
	}
	return out
}

// NIC is one interface of a node, as its speaker reports it.
type NIC struct {
	Name    string
	MAC     string
	Up      bool
	Carrier bool
	// Prefixes are the interface's addresses with their subnet lengths.
	Prefixes []netip.Prefix
}

// Holds reports whether ip is one of the NIC's addresses.
func (n *NIC) Holds(ip netip.Addr) bool {
	for _, p := range n.Prefixes {
		if p.Addr() == ip {
			return true
		}
	}
	return false
}

// Report is a speaker's account of its node: NICs, default gateways and
// what it found on the wire. Only Porter's speakers write it.
type Report struct {
	Node string
	NICs []NIC
	// Gateways are the next hops of the node's default routes.
	Gateways []netip.Addr
	// Conflicts are announced addresses another host answered for.
	Conflicts []WireConflict
	// Announced are the addresses the node's speaker answers for, each
	// with its NIC.
	Announced map[netip.Addr]string
	// MemberAddress is where the node's speaker gossips (host:port).
	MemberAddress string
	// Published is true once the speaker has written a full report; an
	// object without one is only a placeholder.
	Published bool
}

// WireConflict is an address a speaker found answered by another host.
type WireConflict struct {
	IP    netip.Addr
	MAC   string
	Node  string // the reporting node
	Since time.Time
}

// ReportFromNodeNICs decodes a NodeNICs inventory.
func ReportFromNodeNICs(inv *v1alpha1.NodeNICs) Report { return reportFrom(inv, true) }

// reportFrom decodes inv; the list of addresses announced, which grows
// with the cluster, is decoded only when announced is true.
func reportFrom(inv *v1alpha1.NodeNICs, announced bool) Report {
	r := Report{Node: inv.Name, Published: !inv.Status.UpdatedAt.IsZero()}
	for _, n := range inv.Status.NICs {
		nic := NIC{Name: n.Name, MAC: n.MAC, Up: n.Up, Carrier: n.Carrier}
		for _, a := range n.Addresses {
			if p, err := netip.ParsePrefix(strings.TrimSpace(a)); err == nil {
				nic.Prefixes = append(nic.Prefixes, netip.PrefixFrom(p.Addr().Unmap(), addr.UnmapPrefix(p).Bits()))
			}
		}
		r.NICs = append(r.NICs, nic)
	}
	for _, g := range inv.Status.Gateways {
		if ip, err := netip.ParseAddr(strings.TrimSpace(g)); err == nil {
			r.Gateways = append(r.Gateways, ip.Unmap())
		}
	}
	for _, c := range inv.Status.Conflicts {
		if ip, err := netip.ParseAddr(strings.TrimSpace(c.Address)); err == nil {
			r.Conflicts = append(r.Conflicts, WireConflict{IP: ip.Unmap(), MAC: c.MAC, Node: inv.Name, Since: c.Since.Time})
		}
	}
	if sp := inv.Status.Speaker; sp != nil {
		r.MemberAddress = sp.MemberAddress
	}
	if sp := inv.Status.Speaker; announced && sp != nil && len(sp.Addresses) > 0 {
		r.Announced = make(map[netip.Addr]string, len(sp.Addresses))
		for _, a := range sp.Addresses {
			if ip, err := netip.ParseAddr(strings.TrimSpace(a.Address)); err == nil {
				r.Announced[ip.Unmap()] = a.Interface
			}
		}
	}
	return r
}

// NICFor is the NIC of the report that a pool naming iface is announced
// on, by ChooseNIC without a route table: a can_reach address picks the
// NIC whose subnet holds it. ok is false when there is none.
func (r *Report) NICFor(iface string, primary ...netip.Addr) (NIC, bool) {
	nic, err := ChooseNIC(r.NICs, iface, primary, nil)
	return nic, err == nil
}

// sortPools orders pools by precedence: the older pool holds an address
// two pools share, and the name breaks a tie.
func sortPools(pools []Pool) {
	sort.SliceStable(pools, func(i, j int) bool {
		if !pools[i].Created.Equal(pools[j].Created) {
			return pools[i].Created.Before(pools[j].Created)
		}
		return pools[i].Name < pools[j].Name
	})
}

// DecodedNode is a Node as a speaker caches it: decoded once, as it
// enters the cache, and kept in that form alone. A node's images,
// conditions, capacity and most annotations are most of its size, and a
// speaker caches every node.
type DecodedNode struct {
	Node
	UID             types.UID
	ResourceVersion string
}

// DecodeNode decodes n for a cache;
// n is the informer's own copy, dropped once decoded, so its labels are
// taken rather than copied.
func DecodeNode(n *corev1.Node) *DecodedNode {
	return &DecodedNode{Node: nodeFrom(n, false), UID: n.UID, ResourceVersion: n.ResourceVersion}
}

// Decoded is the node as the policy reads it.
func (n *DecodedNode) Decoded() Node { return n.Node }

// GetObjectMeta names n to the informer that caches it.
func (n *DecodedNode) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion}
}

// DecodedPool is an Eip as a speaker caches it: decoded once, as it
// enters the cache, and kept in that form alone. The pool's status lists
// every address in use, and the data path reads none of it.
type DecodedPool struct {
	Pool
	UID             types.UID
	ResourceVersion string
}

// DecodePool decodes e for a cache.
func DecodePool(e *v1alpha2.Eip) *DecodedPool {
	return &DecodedPool{Pool: PoolFromEip(e), UID: e.UID, ResourceVersion: e.ResourceVersion}
}

// Decoded is the pool as the policy reads it.
func (p *DecodedPool) Decoded() Pool { return p.Pool }

// GetObjectMeta names p to the informer that caches it.
func (p *DecodedPool) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion}
}

// DecodedReport is a NIC report as a speaker caches it, decoded once and
// kept in that form alone. It has no Announced: that list and the members
// a speaker sees grow with the cluster, are for status, and a speaker
// caches every node's report.
type DecodedReport struct {
	Report
	UID             types.UID
	ResourceVersion string
}

// DecodeReport decodes inv for a cache.
func DecodeReport(inv *v1alpha1.NodeNICs) *DecodedReport {
	return &DecodedReport{Report: reportFrom(inv, false), UID: inv.UID, ResourceVersion: inv.ResourceVersion}
}

// Decoded is the report as the policy reads it.
func (r *DecodedReport) Decoded() Report { return r.Report }

// GetObjectMeta names r to the informer that caches it.
func (r *DecodedReport) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: r.Node, UID: r.UID, ResourceVersion: r.ResourceVersion}
}

// SamePolicy reports whether r and o say the same of what the policy
// reads: NICs, gateways, conflicts and whether the report is published.
// Where the speaker gossips and what it announces are not among them.
func (r *Report) SamePolicy(o *Report) bool {
	return r.Node == o.Node && r.Published == o.Published &&
		reflect.DeepEqual(r.NICs, o.NICs) && slices.Equal(r.Gateways, o.Gateways) &&
		slices.EqualFunc(r.Conflicts, o.Conflicts, func(a, b WireConflict) bool {
			return a.IP == b.IP && a.MAC == b.MAC && a.Node == b.Node && a.Since.Equal(b.Since)
		})
}

// APIConflicts are the report's conflicts as a NodeNICs status holds
// them.
func (r *Report) APIConflicts() []v1alpha1.AddressConflict {
	if len(r.Conflicts) == 0 {
		return nil
	}
	out := make([]v1alpha1.AddressConflict, len(r.Conflicts))
	for i, c := range r.Conflicts {
		out[i] = v1alpha1.AddressConflict{Address: c.IP.String(), MAC: c.MAC, Since: metav1.NewTime(c.Since)}
	}
	return out
}
