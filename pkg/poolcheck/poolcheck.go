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

	"github.com/porterlb/porter/pkg/addr"
	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
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

// Facts are what the cluster says about the addresses already in use.
type Facts struct {
	// Snapshot is what the address policy is decided from: pools, nodes,
	// the speakers' NIC reports, the API server and the address plans.
	Snapshot addrpolicy.Snapshot
	// ServiceCIDRsUnknown is set when the Service ClusterIP range could
	// not be read; ClusterIPs of existing Services are checked instead.
	ServiceCIDRsUnknown bool
	ClusterIPs          map[netip.Addr]string
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

// Check examines the pool eip against facts. The address policy decides
// which of its addresses are refused, as the speakers will; an existing
// Eip of the same name is the pool itself, so it can be re-checked.
func Check(eip *v1alpha2.Eip, facts Facts) Result {
	var res Result
	add := func(sev Severity, address, risk, format string, args ...any) {
		res.Findings = append(res.Findings, Finding{
			Severity: sev, Level: sev.String(), Address: address, Risk: risk,
			Message: fmt.Sprintf(format, args...),
		})
	}
	cand := addrpolicy.PoolFromEip(eip)
	if cand.Err != nil {
		add(Refused, "", "", "%v", cand.Err)
		return res
	}
	r := cand.Range
	res.Range = r

	if p := eip.Spec.Protocol; p != "" && p != v1alpha2.ProtocolLayer2 {
		add(Warning, "", "", "protocol %s: Porter announces layer2 pools only and will not announce this one", p)
	} else if p == "" {
		add(Warning, "", "", "no protocol: as in OpenELB this is a bgp pool, which Porter does not announce; set protocol: layer2")
	}

	policy := addrpolicy.New(facts.Snapshot)
	for _, ref := range policy.Refusals(&cand) {
		add(Refused, ref.Range.String(), "", "%s %s", ref.Range, ref.Reason.Text)
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

	if cand.Default {
		for _, other := range policy.Pools() {
			if other.Name != cand.Name && other.Default {
				add(Refused, "", "", "Eip %s is already the default pool; only one pool can be the default", other.Name)
			}
		}
	}

	checkSubnet(&cand, facts.Snapshot, add)
	return res
}

// checkSubnet checks the pool against the subnet of the NIC each node
// would announce it on, as the speakers' reports record them.
func checkSubnet(pool *addrpolicy.Pool, s addrpolicy.Snapshot, add func(Severity, string, string, string, ...any)) {
	primary := map[string][]netip.Addr{}
	for _, n := range s.Nodes {
		primary[n.Name] = n.Primaries()
	}
	desc := "each node's primary NIC"
	switch {
	case strings.HasPrefix(pool.Interface, v1alpha2.CanReachPrefix):
		desc = "the NIC that reaches " + strings.TrimPrefix(pool.Interface, v1alpha2.CanReachPrefix)
	case pool.Interface != "":
		desc = "NIC " + pool.Interface
	}
	r := pool.Range
	matched := 0
	seen := map[netip.Prefix]bool{}
	for _, rep := range s.Reports {
		nic, ok := rep.NICFor(pool.Interface, primary[rep.Node]...)
		if !ok {
			continue
		}
		for _, p := range nic.Prefixes {
			if p.Addr().Is4() != r.Is4() {
				continue
			}
			matched++
			if seen[p.Masked()] {
				continue
			}
			seen[p.Masked()] = true
			if in, ok := r.Intersect(addr.PrefixRange(p)); !ok || in != r {
				add(Forceable, r.String(), "if forced, LAN clients may never ARP for these addresses and the Services stay unreachable",
					"the pool %s is not inside %s, the subnet of %s on node %s", r, p.Masked(), nic.Name, rep.Node)
			}
		}
	}
	if matched == 0 {
		add(Warning, "", "", "cannot check that the pool lies in the subnet of %s: no node reports it in its NIC inventory (kubectl porter nics)", desc)
	}
}
