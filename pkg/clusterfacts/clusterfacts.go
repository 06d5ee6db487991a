// Package clusterfacts reads from a cluster the facts poolcheck needs: a
// handful of list calls, however many nodes there are.
package clusterfacts

import (
	"context"
	"fmt"
	"net/netip"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/pkg/poolcheck"
)

// Gather reads nodes, the API server's endpoints, the Service CIDRs (or,
// where they cannot be read, the ClusterIPs in use) and the Eips.
func Gather(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, ec *eips.Client) (poolcheck.Facts, error) {
	var f poolcheck.Facts
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return f, fmt.Errorf("list nodes: %w", err)
	}
	f.Nodes = nodes.Items

	slices, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kubernetes"})
	if err != nil {
		return f, fmt.Errorf("list endpoints of service default/kubernetes: %w", err)
	}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					f.APIServer = append(f.APIServer, ip)
				}
			}
		}
	}

	cidrs, err := cs.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	if err == nil && len(cidrs.Items) > 0 {
		for _, c := range cidrs.Items {
			for _, s := range c.Spec.CIDRs {
				if p, err := netip.ParsePrefix(s); err == nil {
					f.ServiceCIDRs = append(f.ServiceCIDRs, p)
				}
			}
		}
	} else {
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
			return f, fmt.Errorf("list Service CIDRs: %w", err)
		}
		f.ServiceCIDRsUnknown = true
		svcs, err := cs.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			return f, fmt.Errorf("list Services: %w", err)
		}
		f.ClusterIPs = map[netip.Addr]string{}
		for _, s := range svcs.Items {
			for _, c := range s.Spec.ClusterIPs {
				if ip, err := netip.ParseAddr(c); err == nil {
					f.ClusterIPs[ip] = s.Namespace + "/" + s.Name
				}
			}
		}
	}

	list, err := ec.List(ctx)
	if err != nil {
		return f, err
	}
	f.Eips = list.Items

	// Without speakers there is no inventory yet; the check says so.
	u, err := dyn.Resource(v1alpha1.NodeNICsResource).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
		return f, fmt.Errorf("list NIC inventories: %w", err)
	}
	if err == nil {
		var inv v1alpha1.NodeNICsList
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), &inv); err != nil {
			return f, fmt.Errorf("decode NIC inventories: %w", err)
		}
		f.NICs = poolcheck.NICsOf(inv.Items)
	}
	return f, nil
}
