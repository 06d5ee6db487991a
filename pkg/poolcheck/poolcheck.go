// Package poolcheck decides whether an address pool is safe to announce.
// In layer 2, announcing an address that belongs to a node takes that node
// off the network; so does announcing the API server's, and overlapping
// other address plans breaks the cluster's own traffic. Check refuses such
// pools before anything is written, naming the object that holds the
// address.
package poolcheck

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/porterlb/porter/pkg/addr"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

// Severity grades a finding.
type Severity int

const (
	// Warning is reported; the pool is still created.
	Warning Severity = iota
	// Forceable refuses the pool unless the user forces it; the finding
	// says what forcing risks.
	Forceable
	// Refused can never be forced.
	Refused
)

func (s Severity) String() string {
	switch s {
	case Warning:
		return "warning"
	case Forceable:
		return "refused unless forced"
	default:
		return "refused"
	}
}

// Finding is one problem with a pool.
type Finding struct {
	Severity Severity `json:"-"`
	// Level is Severity in words, for JSON output.
	Level string `json:"level"`
	// Address is the offending address or range, when there is one.
	Address string `json:"address,omitempty"`
	// Message names the conflict and the object behind it.
	Message string `json:"message"`
	// Risk says what forcing a Forceable finding would risk.
	Risk string `json:"risk,omitempty"`
}

func (f Finding) String() string {
	if f.Risk != "" {
		return f.Message + " (" + f.Risk + ")"
	}
	return f.Message
}

// NIC is one network interface of one node, from the NIC inventory.
type NIC struct {
	Node    string
	Name    string
	Address netip.Prefix
}

// Facts are what the cluster says about the addresses already in use.
type Facts struct {
	Nodes []corev1.Node
	// APIServer are the addresses of the default/kubernetes endpoints.
	APIServer []netip.Addr
	// ServiceCIDRs are the Service ClusterIP ranges. When they cannot be
	// read, ServiceCIDRsUnknown is set and ClusterIPs of existing Services
	// are checked instead.
	ServiceCIDRs        []netip.Prefix
	ServiceCIDRsUnknown bool
	ClusterIPs          map[netip.Addr]string
	// Eips are the existing pools.
	Eips []v1alpha2.Eip
	// NICs is the NIC inventory the speakers publish; empty when none is
	// known yet.
	NICs []NIC
}

// Result is the verdict on one pool.
type Result struct {
	Range    addr.Range
	Findings []Finding
}

// Refused reports whether the pool must not be created. force overrides
// Forceable findings only.
func (r Result) Refused(force bool) bool {
	for _, f := range r.Findings {
		if f.Severity == Refused || (f.Severity == Forceable && !force) {
			return true
		}
	}
	return false
}

// Check examines the pool eip against facts. The Eip named like eip in
// facts is ignored, so an existing pool can be re-checked.
func Check(eip *v1alpha2.Eip, facts Facts) Result {
	var res Result
	add := func(sev Severity, address, risk, format string, args ...any) {
		res.Findings = append(res.Findings, Finding{
			Severity: sev, Level: sev.String(), Address: address, Risk: risk,
			Message: fmt.Sprintf(format, args...),
		})
	}
	r, err := addr.Parse(eip.Spec.Address)
	if err != nil {
		add(Refused, "", "", "%v", err)
		return res
	}
	res.Range = r

	if p := eip.Spec.Protocol; p != "" && p != v1alpha2.ProtocolLayer2 {
		add(Warning, "", "", "protocol %s: Porter announces layer2 pools only and will not announce this one", p)
	} else if p == "" {
		add(Warning, "", "", "no protocol: as in OpenELB this is a bgp pool, which Porter does not announce; set protocol: layer2")
	}

	for _, n := range facts.Nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && r.Contains(ip) {
				add(Refused, ip.String(), "", "%s is the %s of node %s", ip, a.Type, n.Name)
			}
		}
		for _, key := range []string{v1alpha2.Layer2Annotation, v1alpha2.Layer2AnnotationOpenELB} {
			if v, ok := n.Annotations[key]; ok {
				if ip, err := netip.ParseAddr(strings.TrimSpace(v)); err == nil && r.Contains(ip) {
					add(Refused, ip.String(), "", "%s is the layer2 NIC address of node %s (annotation %s)", ip, n.Name, key)
				}
			}
		}
		for _, c := range n.Spec.PodCIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				if in, ok := r.Intersect(addr.PrefixRange(p)); ok {
					add(Refused, in.String(), "", "%s overlaps pod CIDR %s of node %s", in, p, n.Name)
				}
			}
		}
	}

	for _, ip := range facts.APIServer {
		if r.Contains(ip) {
			add(Refused, ip.String(), "", "%s is an address of the API server (endpoints of service default/kubernetes)", ip)
		}
	}

	for _, p := range facts.ServiceCIDRs {
		if in, ok := r.Intersect(addr.PrefixRange(p)); ok {
			add(Refused, in.String(), "", "%s overlaps the Service ClusterIP range %s", in, p)
		}
	}
	if facts.ServiceCIDRsUnknown {
		add(Warning, "", "", "the Service ClusterIP range could not be read; only the ClusterIPs in use were checked")
		ips := make([]netip.Addr, 0, len(facts.ClusterIPs))
		for ip := range facts.ClusterIPs {
			ips = append(ips, ip)
		}
		sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
		for _, ip := range ips {
			if r.Contains(ip) {
				add(Refused, ip.String(), "", "%s is the ClusterIP of service %s", ip, facts.ClusterIPs[ip])
			}
		}
	}

	for _, other := range facts.Eips {
		if other.Name == eip.Name {
			continue
		}
		or, err := addr.Parse(other.Spec.Address)
		if err != nil {
			continue
		}
		if in, ok := r.Intersect(or); ok {
			add(Refused, in.String(), "", "%s overlaps Eip %s (%s)", in, other.Name, other.Spec.Address)
		}
		if eip.IsDefault() && other.IsDefault() {
			add(Refused, "", "", "Eip %s is already the default pool; only one pool can be the default", other.Name)
		}
	}

	checkSubnet(eip, r, facts.Nodes, facts.NICs, add)
	return res
}

// checkSubnet checks the pool against the subnet of the NICs it would be
// announced on, as the NIC inventory records them.
func checkSubnet(eip *v1alpha2.Eip, r addr.Range, nodes []corev1.Node, nics []NIC, add func(Severity, string, string, string, ...any)) {
	target, desc := nicFilter(eip.Spec.Interface, primaryIPs(nodes))
	var matched []NIC
	for _, n := range nics {
		if n.Address.Addr().Is4() == r.Is4() && target(n) {
			matched = append(matched, n)
		}
	}
	if len(matched) == 0 {
		add(Warning, "", "", "cannot check that the pool lies in the subnet of %s: no node reports it in its NIC inventory (kubectl porter nics)", desc)
		return
	}
	seen := map[netip.Prefix]bool{}
	for _, n := range matched {
		p := n.Address.Masked()
		if seen[p] {
			continue
		}
		seen[p] = true
		subnet := addr.PrefixRange(p)
		if in, ok := r.Intersect(subnet); !ok || in != r {
			add(Forceable, r.String(), "if forced, LAN clients may never ARP for these addresses and the Services stay unreachable",
				"the pool %s is not inside %s, the subnet of %s on node %s", r, p, n.Name, n.Node)
			continue
		}
		if eip.Spec.UsingKnownIPs || !p.Addr().Is4() || p.Bits() >= 31 {
			continue
		}
		if r.Contains(subnet.First) {
			add(Refused, subnet.First.String(), "", "%s is the network address of %s (set usingKnownIPs if it really is free)", subnet.First, p)
		}
		if r.Contains(subnet.Last) {
			add(Refused, subnet.Last.String(), "", "%s is the broadcast address of %s (set usingKnownIPs if it really is free)", subnet.Last, p)
		}
	}
}

// primaryIPs maps each node to the address its speaker announces from by
// default: the layer2 annotation's, else the InternalIP.
func primaryIPs(nodes []corev1.Node) map[string]netip.Addr {
	out := map[string]netip.Addr{}
	for _, n := range nodes {
		for _, key := range []string{v1alpha2.Layer2Annotation, v1alpha2.Layer2AnnotationOpenELB} {
			if ip, err := netip.ParseAddr(strings.TrimSpace(n.Annotations[key])); err == nil {
				out[n.Name] = ip
				break
			}
		}
		if _, ok := out[n.Name]; ok {
			continue
		}
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP {
				out[n.Name] = ip
				break
			}
		}
	}
	return out
}

// nicFilter turns spec.interface into a NIC predicate and a description.
func nicFilter(iface string, primary map[string]netip.Addr) (func(NIC) bool, string) {
	if ipText, ok := strings.CutPrefix(iface, v1alpha2.CanReachPrefix); ok {
		ip, err := netip.ParseAddr(ipText)
		if err != nil {
			return func(NIC) bool { return false }, "interface " + iface
		}
		return func(n NIC) bool { return n.Address.Masked().Contains(ip) }, "the NIC that reaches " + ip.String()
	}
	if iface == "" {
		return func(n NIC) bool { return n.Address.Addr() == primary[n.Node] }, "each node's primary NIC"
	}
	return func(n NIC) bool { return n.Name == iface }, "NIC " + iface
}

// NICsOf flattens NodeNICs inventories.
func NICsOf(inventories []v1alpha1.NodeNICs) []NIC {
	var out []NIC
	for _, inv := range inventories {
		for _, nic := range inv.Status.NICs {
			for _, a := range nic.Addresses {
				if p, err := netip.ParsePrefix(a); err == nil {
					out = append(out, NIC{Node: inv.Name, Name: nic.Name, Address: p})
				}
			}
		}
	}
	return out
}
