// Package lbservice says which Services are Porter's and what they ask for,
// reading both the Porter and the OpenELB spellings of each annotation so
// that existing Services keep working.
package lbservice

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Annotations and the load balancer class Porter reads and writes.
const (
	// LBAnnotation marks a LoadBalancer Service as Porter's; its value is
	// "porter" or, for OpenELB Services, "openelb".
	LBAnnotation = "lb.kubesphere.io/v1alpha1"
	// Class is the spec.loadBalancerClass that makes a Service Porter's.
	Class = "porter.kubesphere.io/layer2"

	// PoolAnnotation names the Eip to allocate from.
	PoolAnnotation        = "eip.porter.kubesphere.io/v1alpha2"
	PoolAnnotationOpenELB = "eip.openelb.kubesphere.io/v1alpha2"

	// IPAnnotation asks for one address of the pool.
	IPAnnotation        = "eip.porter.kubesphere.io/v1alpha1"
	IPAnnotationOpenELB = "eip.openelb.kubesphere.io/v1alpha1"

	// AnnouncerAnnotation is written by the speaker that answers ARP for
	// the Service's address: "<ip> <node> <interface>". It is for people:
	// a tenant can write it too, so no component reads it back to decide
	// anything.
	AnnouncerAnnotation = "porter.kubesphere.io/announcer"
)

// LoadBalancersOnly is the field selector that narrows a list or watch of
// Services to the LoadBalancers, the only type IsPorter and Unclassed
// accept. A Service whose type changes away from LoadBalancer leaves such
// a watch as a deletion, as it should: Porter serves it no longer.
const LoadBalancersOnly = "spec.type=" + string(corev1.ServiceTypeLoadBalancer)

// IsPorter reports whether svc is a LoadBalancer Service Porter serves.
func IsPorter(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass != nil {
		return *svc.Spec.LoadBalancerClass == Class
	}
	switch svc.Annotations[LBAnnotation] {
	case "porter", "openelb":
		return true
	}
	return false
}

// Unclassed reports whether svc is a LoadBalancer Service that names no
// load balancer at all: no loadBalancerClass and no lb.kubesphere.io
// annotation. Whoever is the cluster's default load balancer serves it.
func Unclassed(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil &&
		strings.TrimSpace(svc.Annotations[LBAnnotation]) == ""
}

// Serves reports whether Porter serves svc: it asks for Porter (IsPorter),
// or it names no load balancer and unclassed says Porter is the
// cluster's default one. An unclassed Service that already holds an
// address outside Porter's pools (ours says which are) was given it by
// another load balancer, and is left to it: Porter never overwrites
// another's status.
func Serves(svc *corev1.Service, unclassed bool, ours func(netip.Addr) bool) bool {
	return serves(IsPorter(svc), Unclassed(svc), unclassed, func() bool {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ip, err := netip.ParseAddr(in.IP)
			if err != nil || !ours(ip.Unmap()) {
				return false
			}
		}
		return true
	})
}

// Key is the "namespace/name" a Service is known by in pool status.
func Key(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

// Pool is the Eip the Service names, or "".
func Pool(svc *corev1.Service) string {
	if p := strings.TrimSpace(svc.Annotations[PoolAnnotation]); p != "" {
		return p
	}
	return strings.TrimSpace(svc.Annotations[PoolAnnotationOpenELB])
}

// RequestedIP is the address the Service asks for, if any: the annotation
// first, then spec.loadBalancerIP.
func RequestedIP(svc *corev1.Service) (netip.Addr, error) {
	for _, s := range []struct{ from, v string }{
		{"annotation " + IPAnnotation, svc.Annotations[IPAnnotation]},
		{"annotation " + IPAnnotationOpenELB, svc.Annotations[IPAnnotationOpenELB]},
		{"spec.loadBalancerIP", svc.Spec.LoadBalancerIP},
	} {
		v := strings.TrimSpace(s.v)
		if v == "" {
			continue
		}
		ip, err := netip.ParseAddr(v)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("%s: %q is not an IP address", s.from, v)
		}
		return ip.Unmap(), nil
	}
	return netip.Addr{}, nil
}

// IngressIP is the first IP in the Service's load balancer status.
func IngressIP(svc *corev1.Service) netip.Addr {
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// Announcer is a parsed AnnouncerAnnotation.
type Announcer struct {
	IP        netip.Addr
	Node      string
	Interface string
}

func (a Announcer) String() string {
	return a.IP.String() + " " + a.Node + " " + a.Interface
}

// ParseAnnouncer reads svc's AnnouncerAnnotation; ok is false when there is
// none or it cannot be read.
func ParseAnnouncer(svc *corev1.Service) (a Announcer, ok bool) {
	f := strings.Fields(svc.Annotations[AnnouncerAnnotation])
	if len(f) != 3 {
		return Announcer{}, false
	}
	ip, err := netip.ParseAddr(f[0])
	if err != nil {
		return Announcer{}, false
	}
	return Announcer{IP: ip, Node: f[1], Interface: f[2]}, true
}
