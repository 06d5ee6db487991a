package lbservice

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Sharing annotations: Services with the same value may share one
// address. MetalLB's spelling is read too, so that Services moved from
// MetalLB keep sharing; Porter's wins when both are set.
const (
	SharedIPAnnotation        = "eip.porter.kubesphere.io/allow-shared-ip"
	SharedIPAnnotationMetalLB = "metallb.universe.tf/allow-shared-ip"
)

// Sharing is what decides whether a Service may share an address.
type Sharing struct {
	// Key is the sharing annotation's value; "" shares with no one.
	Key string
	// Ports are the Service's "PROTOCOL/port" pairs.
	Ports []string
	// Local is externalTrafficPolicy: Local.
	Local bool
	// Selector is the Service's pod selector.
	Selector map[string]string
}

// SharingOf reads svc.
func SharingOf(svc *corev1.Service) Sharing {
	s := Sharing{
		Key:   strings.TrimSpace(svc.Annotations[SharedIPAnnotation]),
		Local: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
	}
	if s.Key == "" {
		s.Key = strings.TrimSpace(svc.Annotations[SharedIPAnnotationMetalLB])
	}
	// Without a key it shares with no one, and its ports and selector
	// never matter: a speaker keeps this for every Service, and most
	// share nothing.
	if s.Key == "" {
		return s
	}
	s.Selector = svc.Spec.Selector
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		s.Ports = append(s.Ports, fmt.Sprintf("%s/%d", proto, p.Port))
	}
	slices.Sort(s.Ports)
	return s
}

// CanShareWith says why a may not share an address with b, or nil when
// it may: both carry the same sharing key, no protocol and port is used
// by both, and, since one node answers for the address and must serve
// them all, Services with externalTrafficPolicy: Local share only with
// Services that are Local too and select the same pods.
func (a Sharing) CanShareWith(b Sharing) error {
	switch {
	case a.Key == "" || b.Key == "":
		return fmt.Errorf("sharing needs the annotation %s on both Services", SharedIPAnnotation)
	case a.Key != b.Key:
		return fmt.Errorf("their sharing keys differ (%q, %q)", a.Key, b.Key)
	}
	for _, p := range a.Ports {
		if slices.Contains(b.Ports, p) {
			return fmt.Errorf("both use %s", p)
		}
	}
	if a.Local || b.Local {
		if !a.Local || !b.Local {
			return fmt.Errorf("one has externalTrafficPolicy Local and the other not, so no one node can serve both")
		}
		if len(a.Selector) == 0 || !maps.Equal(a.Selector, b.Selector) {
			return fmt.Errorf("with externalTrafficPolicy Local they must select the same pods, so that one node serves both")
		}
	}
	return nil
}

// Equal reports whether a and b are the same.
func (a Sharing) Equal(b Sharing) bool {
	return a.Key == b.Key && a.Local == b.Local && slices.Equal(a.Ports, b.Ports) && maps.Equal(a.Selector, b.Selector)
}
