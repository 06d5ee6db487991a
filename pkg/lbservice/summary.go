package lbservice

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Summary is what the data path reads of a Service, read once as the
// Service enters a speaker's cache. A speaker keeps a Summary instead of
// the Service: at 10,000 Services, even a trimmed corev1.Service is most
// of its memory, and every decision would read each one again.
//
// Each field answers as the function of this package named in its
// comment does for the Service it was made from.
type Summary struct {
	// Key is Key(svc); Namespace and Name share its bytes.
	Key             string
	Namespace, Name string
	UID             types.UID
	ResourceVersion string
	// Porter is IsPorter; Unclassed is Unclassed.
	Porter, Unclassed bool
	// Pool is Pool.
	Pool string
	// Local is externalTrafficPolicy: Local.
	Local bool
	// Ingress is IngressIPs; BadIngress is set when some ingress entry's
	// IP does not parse, which Serves counts against an unclassed
	// Service.
	Ingress    []netip.Addr
	BadIngress bool
	// Share is SharingOf.
	Share Sharing
}

// Summarize reads svc. Of a Service that is not a LoadBalancer it keeps
// only its identity: most Services of a cluster are not, and no reader
// needs more to pass one over.
func Summarize(svc *corev1.Service) *Summary {
	key := Key(svc)
	s := &Summary{
		Key: key, Namespace: key[:len(svc.Namespace)], Name: key[len(svc.Namespace)+1:],
		UID: svc.UID, ResourceVersion: svc.ResourceVersion,
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return s
	}
	s.Porter, s.Unclassed = IsPorter(svc), Unclassed(svc)
	s.Pool = Pool(svc)
	s.Local = svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	s.Share = SharingOf(svc)
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			s.Ingress = append(s.Ingress, ip.Unmap())
		} else {
			s.BadIngress = true
		}
	}
	return s
}

// Serves is Serves for the Service s was made from.
func (s *Summary) Serves(unclassed bool, ours func(netip.Addr) bool) bool {
	return serves(s.Porter, s.Unclassed, unclassed, func() bool {
		return !s.BadIngress && !slices.ContainsFunc(s.Ingress, func(ip netip.Addr) bool { return !ours(ip) })
	})
}

// Equal reports whether a and b read the same, whatever their resource
// versions: an update that changes nothing here (a status condition, an
// annotation of another program) calls for no decision.
func (s *Summary) Equal(o *Summary) bool {
	return s.Key == o.Key && s.UID == o.UID && s.Porter == o.Porter && s.Unclassed == o.Unclassed &&
		s.Pool == o.Pool && s.Local == o.Local && slices.Equal(s.Ingress, o.Ingress) &&
		s.BadIngress == o.BadIngress && s.Share.Equal(o.Share)
}

// GetObjectMeta names s to the informer that caches it: its store keys
// and indexes objects by namespace and name.
func (s *Summary) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, UID: s.UID, ResourceVersion: s.ResourceVersion}
}

// Reference is the Service, for an Event about it.
func (s *Summary) Reference() corev1.ObjectReference {
	return corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: s.Namespace, Name: s.Name,
		UID: s.UID, ResourceVersion: s.ResourceVersion}
}

// serves is the rule of Serves, for either form of a Service: one that
// asks for Porter is served; an unclassed one is served where the
// cluster makes Porter the default and every address it holds (as
// ingressOurs says) is in Porter's pools.
func serves(porter, unclassedSvc, unclassedDefault bool, ingressOurs func() bool) bool {
	if porter {
		return true
	}
	if !unclassedDefault || !unclassedSvc {
		return false
	}
	return ingressOurs()
}
