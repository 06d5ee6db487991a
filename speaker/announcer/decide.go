package announcer

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

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

// AppendServices appends svc to dst: one entry for each address it holds
// (two for a dual-stack Service), none when it is not Porter's (as policy
// says) or has no address yet.
func AppendServices(dst []Service, svc *lbservice.Summary, policy *addrpolicy.Policy) []Service {
	if len(svc.Ingress) == 0 || !policy.ServesSummary(svc) {
		return dst
	}
	for _, ip := range svc.Ingress {
		dst = append(dst, Service{Key: svc.Key, IP: ip, Pool: svc.Pool, Local: svc.Local, Share: svc.Share})
	}
	return dst
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

	// byIP and first are DecideInto's own (firstClaims).
	byIP, first []int32
}

// firstClaims says, for each of svcs, which of them (by index) is the
// first to claim its address. It sorts indexes by address rather than
// keep a map of every address: at 10,000 addresses the map was a
// megabyte held between decisions.
func (d *Decision) firstClaims(svcs []Service) []int32 {
	d.byIP, d.first = d.byIP[:0], d.first[:0]
	for i := range svcs {
		d.byIP = append(d.byIP, int32(i))
		d.first = append(d.first, int32(i))
	}
	slices.SortFunc(d.byIP, func(a, b int32) int {
		if c := svcs[a].IP.Unmap().Compare(svcs[b].IP.Unmap()); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for k := 0; k < len(d.byIP); {
		head := d.byIP[k]
		ip := svcs[head].IP.Unmap()
		for k < len(d.byIP) && svcs[d.byIP[k]].IP.Unmap() == ip {
			d.first[d.byIP[k]] = head
			k++
		}
	}
	return d.first
}

// Decide computes which addresses this node answers for. It is a pure
// function: every speaker given the same input agrees on the owner of
// every address.
func Decide(in Input) Decision {
	var d Decision
	DecideInto(in, &d)
	return d
}

// DecideInto is Decide, written into d: the maps d already holds are
// cleared and filled again, so that a speaker deciding for 10,000
// addresses every few seconds does not make them anew each time.
func DecideInto(in Input, d *Decision) {
	if d.Announce == nil {
		d.Announce = map[netip.Addr]Target{}
	}
	if d.Owners == nil {
		d.Owners = make(map[netip.Addr]string, len(in.Services))
	}
	clear(d.Announce)
	clear(d.Owners)
	d.Refused = d.Refused[:0]
	// Two Services that claim one address and may not share it (a status
	// written by hand) would make two owners flap between them; the first
	// by key wins. Services that may share it are served as one: they
	// select the same pods when Local, so the first decides for all.
	svcs := in.Services
	if !slices.IsSortedFunc(svcs, byKey) {
		svcs = slices.Clone(svcs)
		slices.SortStableFunc(svcs, byKey)
	}
	first := d.firstClaims(svcs)
	for i := range svcs {
		s := &svcs[i]
		ip := s.IP.Unmap()
		if j := int(first[i]); j != i {
			other := &svcs[j]
			if err := s.Share.CanShareWith(other.Share); err != nil {
				d.Refused = append(d.Refused, Refusal{s.Key, ip, "also claimed by Service " + other.Key + ", which may not share it: " + err.Error()})
			}
			continue
		}
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

// byKey orders Services by key: the order a decision reads them in, in
// which the first to claim an address holds it.
func byKey(a, b Service) int { return strings.Compare(a.Key, b.Key) }
