// Package clusterfacts reads from a cluster the facts the address policy
// is decided from, for the plugin: a handful of list calls, however many
// nodes there are. The speakers read the same facts from their caches.
package clusterfacts

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/pkg/poolcheck"
)

// Gather reads nodes, the API server's addresses, the Service CIDRs (or,
// where they cannot be read, the ClusterIPs in use), the Eips and the NIC
// reports.
func Gather(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, ec *eips.Client) (poolcheck.Facts, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return poolcheck.Facts{}, fmt.Errorf("list nodes: %w", err)
	}
	list, err := ec.List(ctx)
	if err != nil {
		return poolcheck.Facts{}, err
	}
	// Without speakers there is no inventory yet; the check says so.
	var inv v1alpha1.NodeNICsList
	u, err := dyn.Resource(v1alpha1.NodeNICsResource).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
		return poolcheck.Facts{}, fmt.Errorf("list NIC inventories: %w", err)
	}
	if err == nil {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), &inv); err != nil {
			return poolcheck.Facts{}, fmt.Errorf("decode NIC inventories: %w", err)
		}
	}
	return Complete(ctx, cs, nodes.Items, list.Items, inv.Items)
}

// Complete builds the facts from nodes, pools and NIC reports the caller
// has listed already, and reads the rest: the API server's addresses and
// the cluster's address plans.
func Complete(ctx context.Context, cs kubernetes.Interface, nodes []corev1.Node, pools []v1alpha2.Eip, inv []v1alpha1.NodeNICs) (poolcheck.Facts, error) {
	var f poolcheck.Facts
	s := &f.Snapshot
	for i := range nodes {
		s.Nodes = append(s.Nodes, addrpolicy.NodeFromObject(&nodes[i]))
	}
	for i := range pools {
		s.Pools = append(s.Pools, addrpolicy.PoolFromEip(&pools[i]))
	}
	for i := range inv {
		s.Reports = append(s.Reports, addrpolicy.ReportFromNodeNICs(&inv[i]))
	}
	slices, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kubernetes"})
	if err != nil {
		return f, fmt.Errorf("list endpoints of service default/kubernetes: %w", err)
	}
	for _, sl := range slices.Items {
		for _, ep := range sl.Endpoints {
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					s.APIServer = append(s.APIServer, ip.Unmap())
				}
			}
		}
	}

	cidrs, err := cs.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	if err == nil && len(cidrs.Items) > 0 {
		for _, c := range cidrs.Items {
			for _, c := range c.Spec.CIDRs {
				if p, err := netip.ParsePrefix(c); err == nil {
					s.ServiceCIDRs = append(s.ServiceCIDRs, p)
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

	// The API server's address as the cluster's own configuration gives
	// it; a cluster not made by kubeadm has neither ConfigMap.
	ci, err := configMap(ctx, cs, addrpolicy.ClusterInfoNamespace, addrpolicy.ClusterInfoName)
	if err != nil {
		return f, err
	}
	s.ControlPlane = append(s.ControlPlane, addrpolicy.ControlPlaneFromClusterInfo(ci)...)
	kc, err := configMap(ctx, cs, addrpolicy.KubeadmConfigNamespace, addrpolicy.KubeadmConfigName)
	if err != nil {
		return f, err
	}
	k := addrpolicy.FromKubeadmConfig(kc)
	s.ControlPlane = append(s.ControlPlane, k.ControlPlane...)
	s.PodCIDRs = append(s.PodCIDRs, k.PodCIDRs...)
	s.ServiceCIDRs = append(s.ServiceCIDRs, k.ServiceCIDRs...)

	return f, nil
}

// configMap returns the data of one ConfigMap, or nil where it does not
// exist or may not be read.
func configMap(ctx context.Context, cs kubernetes.Interface, ns, name string) (map[string]string, error) {
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) || apierrors.IsForbidden(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get ConfigMap %s/%s: %w", ns, name, err)
	}
	return cm.Data, nil
}
