// Package addrpolicy is the one place that decides which addresses Porter
// may hand out and answer for. In layer 2, answering ARP for an address
// that belongs to a node, a gateway or the API server takes that host off
// the network; so the allocator, the speakers' announcer, the pool check
// of `eip create` and `init`, and `status` all ask this package and decide
// nothing themselves.
//
// Everything here is a pure function of a Snapshot: the pools, the nodes,
// the speakers' NIC reports, the API server's addresses and the cluster's
// address plans. Reading those from the API is the caller's business.
package addrpolicy

import (
	"fmt"
	corev1 "k8s.io/api/core/v1"
	"net/netip"
	"sort"

	"github.com/porterlb/porter/pkg/addr"
	"github.com/porterlb/porter/pkg/lbservice"
)

// Class is a kind of reserved address.
type Class string

// The classes of reserved addresses. Each is documented in docs/speaker.md.
const (
	// ClassNode: an address the Node object names (InternalIP,
	// ExternalIP, the layer2 annotation in either spelling).
	ClassNode Class = "node"
	// ClassNIC: an address on a node's NIC, as its speaker reports it.
	// Secondary addresses and VIPs held by keepalived or kube-vip are
	// among them, though no Node object names them.
	ClassNIC Class = "nic"
	// ClassGateway: a next hop of a node's default route.
	ClassGateway Class = "gateway"
	// ClassAPIServer: an endpoint of default/kubernetes, or the server a
	// cluster's kubeconfig names.
	ClassAPIServer Class = "apiserver"
	// ClassServiceCIDR: the Service ClusterIP range.
	ClassServiceCIDR Class = "service-cidr"
	// ClassPodCIDR: a node's pod CIDR.
	ClassPodCIDR Class = "pod-cidr"
	// ClassSubnet: the network or broadcast address of a NIC's subnet,
	// unless the pool holding it sets usingKnownIPs.
	ClassSubnet Class = "subnet"
	// ClassPool: an address an older pool holds; two pools never share.
	ClassPool Class = "pool"
	// ClassLinkLocal: a link-local address (fe80::/10, 169.254.0.0/16).
	// Neighbours reach it only on one link, and an IPv6 host derives its
	// own there, so Porter never hands one out.
	ClassLinkLocal Class = "link-local"
)

// linkLocal are the link-local ranges, always reserved.
var linkLocal = []netip.Prefix{netip.MustParsePrefix("fe80::/10"), netip.MustParsePrefix("169.254.0.0/16")}

// Reason says why an address is refused, naming what holds it. Text is a
// predicate that follows the address: "198.18.0.11 " + Text reads as a
// sentence.
type Reason struct {
	Class Class
	Text  string
}

func (r Reason) String() string { return r.Text }

// Reserved is a run of addresses refused for one reason.
type Reserved struct {
	Range  addr.Range
	Reason Reason
}

// ControlPlane is an address the cluster's own configuration gives for the
// API server, with where it was found.
type ControlPlane struct {
	IP     netip.Addr
	Source string
}

// Snapshot is everything the policy is decided from.
type Snapshot struct {
	// Pools are every Eip, of any protocol: a bgp pool still holds its
	// addresses against a newer layer2 pool.
	Pools   []Pool
	Nodes   []Node
	Reports []Report
	// APIServer are the endpoints of the Service default/kubernetes.
	APIServer []netip.Addr
	// ControlPlane are the server addresses of kube-public/cluster-info
	// and kubeadm's controlPlaneEndpoint.
	ControlPlane []ControlPlane
	ServiceCIDRs []netip.Prefix
	// PodCIDRs are the cluster's pod ranges as a whole (kubeadm's
	// podSubnet); each node's own slice comes with the node.
	PodCIDRs []netip.Prefix
}

// Policy answers for one Snapshot. It is immutable and safe for concurrent
// use.
type Policy struct {
	pools  []Pool // precedence order: older first
	byName map[string]int
	// single holds reserved single addresses; ranges the wider ones (Service
	// and pod CIDRs), which are few.
	single map[netip.Addr]Reason
	ranges []Reserved
	// edges are subnet network and broadcast addresses, waived for a
	// pool with usingKnownIPs.
	edges map[netip.Addr]Reason
	nodes map[string]*Node
	// unclassed: a layer2 default pool asks Porter to serve Services
	// that name no class.
	unclassed bool
}

// New builds the policy of s.
func New(s Snapshot) *Policy {
	p := &Policy{
		pools:  append([]Pool(nil), s.Pools...),
		byName: map[string]int{},
		single: map[netip.Addr]Reason{},
		edges:  map[netip.Addr]Reason{},
		nodes:  map[string]*Node{},
	}
	sortPools(p.pools)
	// Serves asks this for every Service of every decision: decided once.
	for i := range p.pools {
		if pl := &p.pools[i]; pl.Layer2() && pl.Default && pl.ServesUnclassed {
			p.unclassed = true
		}
	}
	for i := range p.pools {
		p.byName[p.pools[i].Name] = i
	}
	// The first reason recorded for an address wins, so the order below
	// is the order of precedence in messages: what the Node object says
	// reads better than what a report says about the same address.
	put := func(ip netip.Addr, r Reason) {
		ip = ip.Unmap()
		if _, ok := p.single[ip]; !ok && ip.IsValid() {
			p.single[ip] = r
		}
	}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		p.nodes[n.Name] = n
		for _, a := range n.Addresses {
			put(a.Range.First, a.Reason)
		}
		for _, c := range n.PodCIDRs {
			p.ranges = append(p.ranges, Reserved{Range: addr.PrefixRange(c), Reason: Reason{ClassPodCIDR, fmt.Sprintf("overlaps pod CIDR %s of node %s", c, n.Name)}})
		}
	}
	for _, ip := range s.APIServer {
		put(ip, Reason{ClassAPIServer, "is an address of the API server (endpoints of service default/kubernetes)"})
	}
	for _, c := range s.ControlPlane {
		put(c.IP, Reason{ClassAPIServer, "is an address of the API server (" + c.Source + ")"})
	}
	for _, r := range s.Reports {
		for _, nic := range r.NICs {
			for _, pf := range nic.Prefixes {
				put(pf.Addr(), Reason{ClassNIC, fmt.Sprintf("is an address of NIC %s on node %s", nic.Name, r.Node)})
				// IPv6 routers answer the all-zeros address of each of
				// their subnets (RFC 4291, subnet-router anycast): it is
				// never free, so usingKnownIPs does not waive it.
				if pf.Addr().Is6() && pf.Bits() < 127 && !pf.Addr().IsLinkLocalUnicast() {
					put(pf.Masked().Addr(), Reason{ClassSubnet, fmt.Sprintf("is the subnet-router anycast address of %s, the subnet of NIC %s on node %s", pf.Masked(), nic.Name, r.Node)})
				}
				if pf.Addr().Is4() && pf.Bits() < 31 {
					sub := addr.PrefixRange(pf)
					if _, ok := p.edges[sub.First]; !ok {
						p.edges[sub.First] = Reason{ClassSubnet, fmt.Sprintf("is the network address of %s, the subnet of NIC %s on node %s (set usingKnownIPs if it really is free)", pf.Masked(), nic.Name, r.Node)}
					}
					if _, ok := p.edges[sub.Last]; !ok {
						p.edges[sub.Last] = Reason{ClassSubnet, fmt.Sprintf("is the broadcast address of %s, the subnet of NIC %s on node %s (set usingKnownIPs if it really is free)", pf.Masked(), nic.Name, r.Node)}
					}
				}
			}
		}
		for _, g := range r.Gateways {
			put(g, Reason{ClassGateway, "is the default gateway of node " + r.Node})
		}
	}
	for _, ll := range linkLocal {
		p.ranges = append(p.ranges, Reserved{Range: addr.PrefixRange(ll), Reason: Reason{ClassLinkLocal, fmt.Sprintf("is link-local (%s): reachable on one link only", ll)}})
	}
	for _, c := range s.ServiceCIDRs {
		p.ranges = append(p.ranges, Reserved{Range: addr.PrefixRange(addr.UnmapPrefix(c)), Reason: Reason{ClassServiceCIDR, fmt.Sprintf("overlaps the Service ClusterIP range %s", c.Masked())}})
	}
	for _, c := range s.PodCIDRs {
		p.ranges = append(p.ranges, Reserved{Range: addr.PrefixRange(addr.UnmapPrefix(c)), Reason: Reason{ClassPodCIDR, fmt.Sprintf("overlaps the cluster's pod CIDR %s", c.Masked())}})
	}
	return p
}

// Pools are every pool in precedence order: older first, then by name.
func (p *Policy) Pools() []Pool { return p.pools }

// Pool is the pool named name.
func (p *Policy) Pool(name string) (*Pool, bool) {
	i, ok := p.byName[name]
	if !ok {
		return nil, false
	}
	return &p.pools[i], true
}

// Node is the decoded Node named name.
func (p *Policy) Node(name string) (*Node, bool) {
	n, ok := p.nodes[name]
	return n, ok
}

// Selects reports whether the node named node may answer for pool's
// addresses: every node may when the pool has no nodeSelector; otherwise
// only a node the cluster knows, whose labels the selector matches.
func (p *Policy) Selects(pool *Pool, node string) bool {
	if pool.NodeSelector == nil {
		return true
	}
	n, ok := p.nodes[node]
	return ok && pool.SelectsNode(n)
}

// ServesUnclassed reports whether Porter serves LoadBalancer Services
// that name no class and carry no Porter annotation: a layer2 default pool
// asks for it.
func (p *Policy) ServesUnclassed() bool { return p.unclassed }

// Serves reports whether svc is Porter's (lbservice.Serves), with this
// policy's pools: the allocator, the speakers, the announcer annotation
// and status all ask here.
func (p *Policy) Serves(svc *corev1.Service) bool {
	return lbservice.Serves(svc, p.ServesUnclassed(), p.ours)
}

// ServesSummary is Serves for the Service s was made from.
func (p *Policy) ServesSummary(s *lbservice.Summary) bool {
	return s.Serves(p.ServesUnclassed(), p.ours)
}

// ours reports whether ip is in one of Porter's layer2 pools.
func (p *Policy) ours(ip netip.Addr) bool {
	pl, ok := p.PoolOf(ip)
	return ok && pl.Layer2()
}

// PoolOf is the pool that holds ip: of the pools whose range contains it,
// the oldest. Disabled pools and pools of other protocols hold their
// addresses too, so that disabling or adding a pool never moves another's.
func (p *Policy) PoolOf(ip netip.Addr) (*Pool, bool) {
	ip = ip.Unmap()
	for i := range p.pools {
		if p.pools[i].Err == nil && p.pools[i].Range.Contains(ip) {
			return &p.pools[i], true
		}
	}
	return nil, false
}

// Reserved says why ip may never be handed out or answered for, whatever
// pool holds it.
func (p *Policy) Reserved(ip netip.Addr) (Reason, bool) {
	ip = ip.Unmap()
	if r, ok := p.single[ip]; ok {
		return r, true
	}
	for _, rr := range p.ranges {
		if rr.Range.Contains(ip) {
			return rr.Reason, true
		}
	}
	if r, ok := p.edges[ip]; ok {
		if pool, held := p.PoolOf(ip); !held || !pool.UsingKnownIPs {
			return r, true
		}
	}
	return Reason{}, false
}

// Verdict is the answer to whether a Service may hold an address.
type Verdict struct {
	// Pool holds the address, when one does.
	Pool *Pool
	// Refused is set, with Reason, when the Service may not hold it.
	Refused bool
	Reason  Reason
}

// Check decides whether a Service that names the pool named (or "") may
// hold ip. It does not look at who else holds ip: that is the allocator's
// bookkeeping.
func (p *Policy) Check(ip netip.Addr, named string) Verdict {
	ip = ip.Unmap()
	if r, bad := p.Reserved(ip); bad {
		v := Verdict{Refused: true, Reason: r}
		v.Pool, _ = p.PoolOf(ip)
		return v
	}
	pool, ok := p.PoolOf(ip)
	if !ok {
		return Verdict{Refused: true, Reason: Reason{Text: "is in no pool"}}
	}
	if named != "" && pool.Name != named {
		if n, ok := p.Pool(named); ok && n.Err == nil && n.Range.Contains(ip) {
			return Verdict{Pool: pool, Refused: true, Reason: Reason{ClassPool, fmt.Sprintf("is held by Eip %s, which is older than Eip %s", pool.Name, named)}}
		}
		return Verdict{Pool: pool, Refused: true, Reason: Reason{Text: fmt.Sprintf("is not in Eip %s, which the Service names", named)}}
	}
	if !pool.Layer2() {
		return Verdict{Pool: pool, Refused: true, Reason: Reason{Text: fmt.Sprintf("is in Eip %s, which is not a layer2 pool", pool.Name)}}
	}
	return Verdict{Pool: pool}
}

// Refusals lists, for a pool, every address of its range it may not give:
// the reserved ones and those an older pool holds, folded into runs of one
// reason, in address order. The pool need not be in the snapshot: a pool
// about to be created is checked as younger than every other, and one of
// the same name is taken for the pool itself.
func (p *Policy) Refusals(pool *Pool) []Reserved {
	if pool.Err != nil {
		return nil
	}
	r := pool.Range
	var out []Reserved
	for ip, why := range p.single {
		if r.Contains(ip) {
			out = append(out, Reserved{addr.Range{First: ip, Last: ip}, why})
		}
	}
	for _, rr := range p.ranges {
		if in, ok := r.Intersect(rr.Range); ok {
			out = append(out, Reserved{in, rr.Reason})
		}
	}
	if !pool.UsingKnownIPs {
		for ip, why := range p.edges {
			if r.Contains(ip) {
				out = append(out, Reserved{addr.Range{First: ip, Last: ip}, why})
			}
		}
	}
	_, known := p.byName[pool.Name]
	for i := range p.pools {
		o := &p.pools[i]
		if known && o.Name == pool.Name {
			break // only older pools hold addresses against this one
		}
		if o.Err != nil || o.Name == pool.Name {
			continue
		}
		if in, ok := r.Intersect(o.Range); ok {
			out = append(out, Reserved{in, Reason{ClassPool, fmt.Sprintf("overlaps Eip %s (%s), which is older", o.Name, o.Range)}})
		}
	}
	return fold(out)
}

// fold sorts runs and merges those that touch or overlap and share a
// reason. Where runs of different reasons overlap, both are kept: each is
// true.
func fold(in []Reserved) []Reserved {
	sort.Slice(in, func(i, j int) bool {
		if in[i].Range.First != in[j].Range.First {
			return in[i].Range.First.Less(in[j].Range.First)
		}
		return in[i].Reason.Text < in[j].Reason.Text
	})
	var out []Reserved
	last := map[Reason]int{} // each reason's latest run in out
	for _, r := range in {
		if i, ok := last[r.Reason]; ok && !out[i].Range.Last.Less(r.Range.First.Prev()) {
			if out[i].Range.Last.Less(r.Range.Last) {
				out[i].Range.Last = r.Range.Last
			}
			continue
		}
		last[r.Reason] = len(out)
		out = append(out, r)
	}
	return out
}
