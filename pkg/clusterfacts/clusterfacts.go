// Package clusterfacts reads from a cluster the facts the address policy
// is decided from, for the plugin: a handful of list calls, however many
// nodes there are. The speakers read the same facts from their caches.
package clusterfacts

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

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
// reports. The reads depend on none another, so they go at once.
func Gather(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, ec *eips.Client) (poolcheck.Facts, error) {
	var (
		wg                      sync.WaitGroup
		nodes                   *corev1.NodeList
		list                    *v1alpha2.EipList
		inv                     v1alpha1.NodeNICsList
		plans                   Plans
		nodeErr, eipErr, invErr error
		plansErr                error
	)
	wg.Go(func() { list, eipErr = ec.List(ctx) })
	wg.Go(func() { invErr = readInventories(ctx, dyn, &inv) })
	wg.Go(func() { plans, plansErr = ReadPlans(ctx, cs) })
	nodes, nodeErr = cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	wg.Wait()
	if nodeErr != nil {
		return poolcheck.Facts{}, fmt.Errorf("list nodes: %w", nodeErr)
	}
	if err := errors.Join(eipErr, invErr, plansErr); err != nil {
		return poolcheck.Facts{}, err
	}
	return plans.Complete(nodes.Items, list.Items, inv.Items), nil
}

// readInventories lists the NIC reports into inv. Without speakers there
// is no inventory yet, which the check says; that is no error.
func readInventories(ctx context.Context, dyn dynamic.Interface, inv *v1alpha1.NodeNICsList) error {
	u, err := dyn.Resource(v1alpha1.NodeNICsResource).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list NIC inventories: %w", err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), inv); err != nil {
		return fmt.Errorf("decode NIC inventories: %w", err)
	}
	return nil
}

// Plans are the facts that come from neither nodes, pools nor NIC
// reports: the API server's addresses and the cluster's address plans.
type Plans struct {
	facts poolcheck.Facts
}

// ReadPlans reads the API server's addresses and the cluster's address
// plans: four reads, made at once.
func ReadPlans(ctx context.Context, cs kubernetes.Interface) (Plans, error) {
	var (
		wg                    sync.WaitGroup
		apiServer             []netip.Addr
		cidrs                 []netip.Prefix
		cidrsUnknown          bool
		clusterIPs            map[netip.Addr]string
		ci, kc                map[string]string
		epErr, cidrErr        error
		clusterInfoErr, kcErr error
	)
	wg.Go(func() { apiServer, epErr = readAPIServer(ctx, cs) })
	wg.Go(func() { cidrs, cidrsUnknown, clusterIPs, cidrErr = readServiceRange(ctx, cs) })
	wg.Go(func() {
		ci, clusterInfoErr = configMap(ctx, cs, addrpolicy.ClusterInfoNamespace, addrpolicy.ClusterInfoName)
	})
	// The API server's address as the cluster's own configuration gives
	// it; a cluster not made by kubeadm has neither ConfigMap.
	kc, kcErr = configMap(ctx, cs, addrpolicy.KubeadmConfigNamespace, addrpolicy.KubeadmConfigName)
	wg.Wait()
	if err := errors.Join(epErr, cidrErr, clusterInfoErr, kcErr); err != nil {
		return Plans{}, err
	}
	var p Plans
	s := &p.facts.Snapshot
	s.APIServer = apiServer
	s.ServiceCIDRs = cidrs
	p.facts.ServiceCIDRsUnknown, p.facts.ClusterIPs = cidrsUnknown, clusterIPs
	s.ControlPlane = append(s.ControlPlane, addrpolicy.ControlPlaneFromClusterInfo(ci)...)
	k := addrpolicy.FromKubeadmConfig(kc)
	s.ControlPlane = append(s.ControlPlane, k.ControlPlane...)
	s.PodCIDRs = append(s.PodCIDRs, k.PodCIDRs...)
	s.ServiceCIDRs = append(s.ServiceCIDRs, k.ServiceCIDRs...)
	return p, nil
}

// Complete builds the facts from the plans and the nodes, pools and NIC
// reports the caller has listed.
func (p Plans) Complete(nodes []corev1.Node, pools []v1alpha2.Eip, inv []v1alpha1.NodeNICs) poolcheck.Facts {
	f := p.facts
	s := &f.Snapshot
	s.Nodes, s.Pools, s.Reports = nil, nil, nil
	for i := range nodes {
		s.Nodes = append(s.Nodes, addrpolicy.NodeFromObject(&nodes[i]))
	}
	for i := range pools {
		s.Pools = append(s.Pools, addrpolicy.PoolFromEip(&pools[i]))
	}
	for i := range inv {
		s.Reports = append(s.Reports, addrpolicy.ReportFromNodeNICs(&inv[i]))
	}
	return f
}

// readAPIServer reads the API server's addresses from the endpoints of
// Service default/kubernetes.
func readAPIServer(ctx context.Context, cs kubernetes.Interface) ([]netip.Addr, error) {
	slices, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kubernetes"})
	if err != nil {
		return nil, fmt.Errorf("list endpoints of service default/kubernetes: %w", err)
	}
	var out []netip.Addr
	for _, sl := range slices.Items {
		for _, ep := range sl.Endpoints {
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					out = append(out, ip.Unmap())
				}
			}
		}
	}
	return out, nil
}

// readServiceRange reads the Service CIDRs; where they cannot be read,
// unknown is set and clusterIPs are the ClusterIPs in use instead.
func readServiceRange(ctx context.Context, cs kubernetes.Interface) (cidrs []netip.Prefix, unknown bool, clusterIPs map[netip.Addr]string, err error) {
	list, err := cs.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	if err == nil && len(list.Items) > 0 {
		for _, c := range list.Items {
			for _, c := range c.Spec.CIDRs {
				if p, err := netip.ParsePrefix(c); err == nil {
					cidrs = append(cidrs, p)
				}
			}
		}
		return cidrs, false, nil, nil
	}
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
		return nil, false, nil, fmt.Errorf("list Service CIDRs: %w", err)
	}
	svcs, err := cs.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, false, nil, fmt.Errorf("list Services: %w", err)
	}
	clusterIPs = map[netip.Addr]string{}
	for _, s := range svcs.Items {
		for _, c := range s.Spec.ClusterIPs {
			if ip, err := netip.ParseAddr(c); err == nil {
				clusterIPs[ip] = s.Namespace + "/" + s.Name
			}
		}
	}
	return nil, true, clusterIPs, nil
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
