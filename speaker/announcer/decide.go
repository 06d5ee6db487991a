package announcer

import (
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/speaker/owner"
)

// Service is a Porter Service as the decision reads it.
type Service struct {
	Key string
	// IP is the address the allocator wrote to the Service's status.
	IP netip.Addr
	// Pool is the Eip the Service names, or "".
	Pool string
	// Local is externalTrafficPolicy: Local; Endpoints then lists the
	// nodes with a ready endpoint.
	Local     bool
	Endpoints []string
	// Share says with which Services it may share its address.
	Share lbservice.Sharing
}

// ServiceFrom reads a Service: one entry for each address it holds (two
// for a dual-stack Service), none when it is not Porter's (as policy
// says) or has no address yet.
func ServiceFrom(svc *corev1.Service, policy *addrpolicy.Policy) []Service {
	if !policy.Serves(svc) {
		return nil
	}
	var out []Service
	for _, ip := range lbservice.IngressIPs(svc) {
		out = append(out, Service{
			Key:   lbservice.Key(svc),
			IP:    ip,
			Pool:  lbservice.Pool(svc),
			Local: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
			Share: lbservice.SharingOf(svc),
		})
	}
	return out
}

// Input is everything one decision is made from.
type Input struct {
	// Node is this speaker's node.
	Node   string
	Policy *addrpolicy.Policy
	// Candidates are, for each pool, the live members that can serve it,
	// this node included when it can.
	Candidates map[string][]string
	Services   []Service
	// NICs are, for each pool, the NIC of this node to announce it on;
	// a pool this node cannot serve (no such NIC, or it is down) is
	// absent.
	NICs map[string]string
	// Local are the addresses of this node's own interfaces, with where.
	Local map[netip.Addr]string
	// Held are addresses this speaker found answered by another host and
	// waits out a backoff for: nobody answers for them meanwhile.
	Held map[netip.Addr]bool
	// Suspect are addresses some speaker found answered by another host
	// whose wait is over: their owner probes them before it answers.
	Suspect map[netip.Addr]bool
	// Damped are the members held down for flapping: no address goes to
	// one while another member can serve it.
	Damped map[string]bool
	// Minority is set while this node sees fewer than a quorum of the
	// speakers it expects: it gains no address.
	Minority bool
	// Announcing are the addresses this node answers for now, with the
	// NIC; Yielded those it gave up, while held down or in the minority,
	// to another speaker that answered for them.
	Announcing map[netip.Addr]string
	Yielded    map[netip.Addr]bool
	// Reclaim are addresses this speaker may take back though it is held
	// down: those that were allocated when it started. A speaker that
	// crashed and came straight back was found failed, and is held down,
	// but nobody took its addresses yet; it takes back those it would own
	// were it not held down, once the wire says nobody else answers for
	// them, so that a crash and restart moves nothing.
	Reclaim map[netip.Addr]bool
}

// Target is an address this node answers for.
type Target struct {
	Service string
	Iface   string
	// Probe is set for a suspect address: it is probed first, whoever
	// held it before.
	Probe bool
	// Kept is set for an address another member owns that this node
	// keeps answering for, because it is held down or in the minority
	// and the owner may not have taken it: it yields once the owner
	// answers.
	Kept bool
}

// Refusal is a Service address no node may answer for.
type Refusal struct {
	Service string
	IP      netip.Addr
	Reason  string
}

// Decision is what this node does.
type Decision struct {
	// Announce are the addresses to answer for, and on which NIC.
	Announce map[netip.Addr]Target
	// Owners are, for every address some member should answer for, that
	// member: this node's view of who announces what.
	Owners map[netip.Addr]string
	// Refused are the addresses nobody answers for, in Service order.
	Refused []Refusal
}

// Decide computes which addresses this node answers for. It is a pure
// function: every speaker given the same input agrees on the owner of
// every address.
func Decide(in Input) Decision {
	d := Decision{Announce: map[netip.Addr]Target{}, Owners: map[netip.Addr]string{}}
	// Two Services that claim one address and may not share it (a status
	// written by hand) would make two owners flap between them; the first
	// by key wins. Services that may share it are served as one: they
	// select the same pods when Local, so the first decides for all.
	svcs := append([]Service(nil), in.Services...)
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Key < svcs[j].Key })
	taken := map[netip.Addr]Service{}
	for _, s := range svcs {
		ip := s.IP.Unmap()
		if other, dup := taken[ip]; dup {
			if err := s.Share.CanShareWith(other.Share); err != nil {
				d.Refused = append(d.Refused, Refusal{s.Key, ip, "also claimed by Service " + other.Key + ", which may not share it: " + err.Error()})
			}
			continue
		}
		taken[ip] = s
		v := in.Policy.Check(ip, s.Pool)
		if v.Refused {
			d.Refused = append(d.Refused, Refusal{s.Key, ip, v.Reason.Text})
			continue
		}
		if why, mine := in.Local[ip]; mine {
			d.Refused = append(d.Refused, Refusal{s.Key, ip, why})
			continue
		}
		if !v.Pool.Announced() {
			continue // a disabled pool is silent
		}
		if in.Held[ip] {
			continue
		}
		cands := in.Candidates[v.Pool.Name]
		if s.Local {
			cands = intersect(cands, s.Endpoints)
		}
		// A member held down is no candidate where another that is not
		// held down can serve, and takes on nothing new there; where
		// every candidate is held down, they decide as if none were.
		mayGain := !in.Minority
		undamped := cands
		if steady := without(cands, in.Damped); len(steady) > 0 {
			cands = steady
			mayGain = mayGain && !in.Damped[in.Node]
		}
		o := owner.Pick(ip, cands)
		if o == "" {
			continue
		}
		d.Owners[ip] = o
		iface, ok := in.NICs[v.Pool.Name]
		if !ok {
			continue
		}
		_, announcing := in.Announcing[ip]
		switch {
		case o == in.Node && (announcing || mayGain):
			d.Announce[ip] = Target{Service: s.Key, Iface: iface, Probe: in.Suspect[ip]}
		case o != in.Node && announcing && !in.Yielded[ip] && (in.Minority || in.Damped[in.Node]):
			d.Announce[ip] = Target{Service: s.Key, Iface: iface, Kept: true}
		case o != in.Node && in.Reclaim[ip] && !in.Yielded[ip] && !in.Minority && in.Damped[in.Node] && owner.Pick(ip, undamped) == in.Node:
			d.Announce[ip] = Target{Service: s.Key, Iface: iface, Kept: true}
		}
	}
	return d
}

func without(cands []string, drop map[string]bool) []string {
	if len(drop) == 0 {
		return cands
	}
	out := make([]string, 0, len(cands))
	for _, c := range cands {
		if !drop[c] {
			out = append(out, c)
		}
	}
	return out
}

func intersect(cands, nodes []string) []string {
	ok := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		ok[n] = true
	}
	var out []string
	for _, c := range cands {
		if ok[c] {
			out = append(out, c)
		}
	}
	return out
}
