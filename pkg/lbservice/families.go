package lbservice

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
)

// Family is an IP family: 4 or 6, or 0 for either.
type Family int

// FamilyOf is ip's family.
func FamilyOf(ip netip.Addr) Family {
	if ip.Unmap().Is4() {
		return 4
	}
	return 6
}

// Stack says which addresses a Service asks for.
type Stack struct {
	// Families are the families to allocate, first first; one entry of 0
	// for a single-stack Service, which takes an address of any family,
	// as it always has.
	Families []Family
	// Required: every family must be allocated, or none is written.
	Required bool
}

// StackOf reads spec.ipFamilyPolicy and spec.ipFamilies. PreferDualStack
// and RequireDualStack ask for one address of each family in ipFamilies,
// in its order: the API server lists both where the cluster is dual-stack,
// and for PreferDualStack only the one it has elsewhere, so no address is
// given that kube-proxy would not route.
func StackOf(svc *corev1.Service) Stack {
	p := svc.Spec.IPFamilyPolicy
	if p == nil || *p == corev1.IPFamilyPolicySingleStack {
		return Stack{Families: []Family{0}}
	}
	var fams []Family
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			fams = append(fams, 4)
		case corev1.IPv6Protocol:
			fams = append(fams, 6)
		}
	}
	if len(fams) == 0 {
		fams = []Family{4, 6}
	}
	return Stack{Families: fams, Required: *p == corev1.IPFamilyPolicyRequireDualStack}
}

// IngressIPs are every IP in the Service's load balancer status, in order.
func IngressIPs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// IngressOf is the Service's load balancer address of family f (either
// family for 0), or the zero Addr.
func IngressOf(svc *corev1.Service, f Family) netip.Addr {
	for _, ip := range IngressIPs(svc) {
		if f == 0 || FamilyOf(ip) == f {
			return ip
		}
	}
	return netip.Addr{}
}
