package lbservice

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// readAnnotations are the only annotations this package reads.
var readAnnotations = []string{
	LBAnnotation, PoolAnnotation, PoolAnnotationOpenELB, IPAnnotation, IPAnnotationOpenELB,
	AnnouncerAnnotation, SharedIPAnnotation, SharedIPAnnotationMetalLB,
}

// Trim is svc with only what this package reads, for a cache that only
// reads it through this package: at 10,000 Services, the rest (cluster
// IPs, labels, foreign annotations, port names and node ports, status
// conditions) is most of a speaker's memory. For a LoadBalancer Service,
// every function here answers the same for Trim(svc) as for svc; of any
// other, Trim keeps only its identity and type, which is all a reader
// needs to pass it over, and most Services of a cluster are not
// LoadBalancers.
func Trim(svc *corev1.Service) *corev1.Service {
	out := &corev1.Service{
		TypeMeta: svc.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: svc.Name, Namespace: svc.Namespace, UID: svc.UID,
			ResourceVersion: svc.ResourceVersion, CreationTimestamp: svc.CreationTimestamp,
			DeletionTimestamp: svc.DeletionTimestamp,
		},
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		out.Spec.Type = svc.Spec.Type
		return out
	}
	out.Spec = corev1.ServiceSpec{
		Type:                  svc.Spec.Type,
		Selector:              svc.Spec.Selector,
		ExternalTrafficPolicy: svc.Spec.ExternalTrafficPolicy,
		IPFamilies:            svc.Spec.IPFamilies,
		IPFamilyPolicy:        svc.Spec.IPFamilyPolicy,
		LoadBalancerClass:     svc.Spec.LoadBalancerClass,
		LoadBalancerIP:        svc.Spec.LoadBalancerIP,
	}
	for _, k := range readAnnotations {
		if v, ok := svc.Annotations[k]; ok {
			if out.Annotations == nil {
				out.Annotations = make(map[string]string, 2)
			}
			out.Annotations[k] = v
		}
	}
	// Ports matter only for sharing, which reads protocol and port.
	if len(svc.Spec.Ports) > 0 {
		out.Spec.Ports = make([]corev1.ServicePort, len(svc.Spec.Ports))
		for i, p := range svc.Spec.Ports {
			out.Spec.Ports[i] = corev1.ServicePort{Protocol: p.Protocol, Port: p.Port}
		}
	}
	if in := svc.Status.LoadBalancer.Ingress; len(in) > 0 {
		out.Status.LoadBalancer.Ingress = make([]corev1.LoadBalancerIngress, len(in))
		for i, g := range in {
			out.Status.LoadBalancer.Ingress[i] = corev1.LoadBalancerIngress{IP: g.IP, Hostname: g.Hostname}
		}
	}
	return out
}
