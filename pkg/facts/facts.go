// Package facts keeps, inside a speaker or the controller, the address
// policy of the cluster as its informer caches show it. The allocator and the announcer read the
// same Policy, built by pkg/addrpolicy, so they cannot disagree about which
// pool holds an address or which addresses are reserved.
//
// Each object is decoded once per version, and the policy is rebuilt only
// after a change that can alter it: at thousands of nodes, heartbeats and
// status writes are most of the events and alter nothing.
package facts

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apiclient"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/lbservice"
)

// Informers are the caches the policy is decided from. Eips, Nodes and
// NodeNICs hold typed objects, or under Lean the decoded model alone.
// ServiceCIDRs, ClusterInfo and KubeadmConfig may be nil where they cannot
// be read.
type Informers struct {
	Eips           cache.SharedIndexInformer
	Nodes          cache.SharedIndexInformer
	NodeNICs       cache.SharedIndexInformer
	EndpointSlices cache.SharedIndexInformer
	ServiceCIDRs   cache.SharedIndexInformer
	ClusterInfo    cache.SharedIndexInformer
	KubeadmConfig  cache.SharedIndexInformer
}

// Facts builds the policy from the caches.
type Facts struct {
	inf Informers

	mu      sync.Mutex
	subs    map[int]func()
	nextSub int
	gen     uint64 // bumped by every change that can alter the policy
	builtAt uint64
	policy  *addrpolicy.Policy
	pools   map[types.UID]memo[addrpolicy.Pool]
	nodes   map[types.UID]memo[addrpolicy.Node]
	reports map[types.UID]memo[addrpolicy.Report]
}

type memo[T any] struct {
	rv string
	v  T
}

// New watches the informers for changes; it must be called before they
// start, so that no change goes unseen.
func New(inf Informers) (*Facts, error) {
	f := &Facts{inf: inf, builtAt: ^uint64(0), subs: map[int]func(){}}
	// One handler per informer marks the policy stale, then tells every
	// subscriber, in that order: a Policy read in answer always sees the
	// change. (Each handler of an informer runs on its own goroutine, so
	// separate handlers could not promise that.)
	changed := func() {
		f.mu.Lock()
		f.gen++
		subs := make([]func(), 0, len(f.subs))
		for _, fn := range f.subs {
			subs = append(subs, fn)
		}
		f.mu.Unlock()
		for _, fn := range subs {
			fn()
		}
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { changed() },
		UpdateFunc: func(o, n any) {
			if Changes(o, n) {
				changed()
			}
		},
		DeleteFunc: func(any) { changed() },
	}
	for _, i := range f.all() {
		if _, err := i.AddEventHandler(h); err != nil {
			return nil, fmt.Errorf("watch: %w", err)
		}
	}
	return f, nil
}

func (f *Facts) all() []cache.SharedIndexInformer {
	var out []cache.SharedIndexInformer
	for _, i := range []cache.SharedIndexInformer{f.inf.Eips, f.inf.Nodes, f.inf.NodeNICs, f.inf.EndpointSlices, f.inf.ServiceCIDRs, f.inf.ClusterInfo, f.inf.KubeadmConfig} {
		if i != nil {
			out = append(out, i)
		}
	}
	return out
}

// HasSynced reports whether every cache has synced.
func (f *Facts) HasSynced() bool {
	for _, i := range f.all() {
		if !i.HasSynced() {
			return false
		}
	}
	return true
}

// Policy is the policy of the caches as they are now.
func (f *Facts) Policy() *addrpolicy.Policy {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.policy != nil && f.builtAt == f.gen {
		return f.policy
	}
	gen := f.gen
	f.policy = addrpolicy.New(f.snapshot())
	f.builtAt = gen
	return f.policy
}

// snapshot reads the caches, decoding only objects not seen at this
// version before. It is called with mu held.
func (f *Facts) snapshot() addrpolicy.Snapshot {
	var s addrpolicy.Snapshot
	s.Pools, f.pools = decodeAll(f.inf.Eips.GetStore(), f.pools, addrpolicy.PoolFromEip)
	s.Nodes, f.nodes = decodeAll(f.inf.Nodes.GetStore(), f.nodes, addrpolicy.NodeFromObject)
	s.Reports, f.reports = decodeAll(f.inf.NodeNICs.GetStore(), f.reports, addrpolicy.ReportFromNodeNICs)
	s.APIServer = APIServerAddrs(f.inf.EndpointSlices)
	if f.inf.ServiceCIDRs != nil {
		for _, o := range f.inf.ServiceCIDRs.GetStore().List() {
			if c, ok := o.(*networkingv1.ServiceCIDR); ok {
				for _, t := range c.Spec.CIDRs {
					if p, err := netip.ParsePrefix(t); err == nil {
						s.ServiceCIDRs = append(s.ServiceCIDRs, p)
					}
				}
			}
		}
	}
	if f.inf.ClusterInfo != nil {
		for _, o := range f.inf.ClusterInfo.GetStore().List() {
			if cm, ok := o.(*corev1.ConfigMap); ok && cm.Name == addrpolicy.ClusterInfoName {
				s.ControlPlane = append(s.ControlPlane, addrpolicy.ControlPlaneFromClusterInfo(cm.Data)...)
			}
		}
	}
	if f.inf.KubeadmConfig != nil {
		for _, o := range f.inf.KubeadmConfig.GetStore().List() {
			if cm, ok := o.(*corev1.ConfigMap); ok && cm.Name == addrpolicy.KubeadmConfigName {
				k := addrpolicy.FromKubeadmConfig(cm.Data)
				s.ControlPlane = append(s.ControlPlane, k.ControlPlane...)
				s.PodCIDRs = append(s.PodCIDRs, k.PodCIDRs...)
				// The ServiceCIDR objects, where the API has them, are
				// the truth; kubeadm's copy is a fallback and the same.
				s.ServiceCIDRs = append(s.ServiceCIDRs, k.ServiceCIDRs...)
			}
		}
	}
	return s
}

// object is what decodeAll needs of a cached object.
type object interface {
	GetUID() types.UID
	GetResourceVersion() string
}

// decoded is an object the cache holds already decoded (Lean's nodes,
// pools and reports): it is its own, and only, memo.
type decoded[T any] interface{ Decoded() T }

// decodeAll decodes every object of type O in store, reusing what was
// decoded from the same version before; it returns the values and the memo
// for the next call, which holds only the objects still there. A cache of
// decoded objects needs no memo, and gets none.
func decodeAll[O object, T any](store cache.Store, prev map[types.UID]memo[T], decode func(O) T) ([]T, map[types.UID]memo[T]) {
	items := store.List()
	out := make([]T, 0, len(items))
	var next map[types.UID]memo[T]
	for _, o := range items {
		if d, ok := o.(decoded[T]); ok {
			out = append(out, d.Decoded())
			continue
		}
		obj, ok := o.(O)
		if !ok {
			continue
		}
		if next == nil {
			next = make(map[types.UID]memo[T], len(items))
		}
		m, ok := prev[obj.GetUID()]
		if !ok || m.rv != obj.GetResourceVersion() {
			m = memo[T]{obj.GetResourceVersion(), decode(obj)}
		}
		next[obj.GetUID()] = m
		out = append(out, m.v)
	}
	return out, next
}

// Reports are the speakers' NIC reports, decoded.
func (f *Facts) Reports() []addrpolicy.Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []addrpolicy.Report
	out, f.reports = decodeAll(f.inf.NodeNICs.GetStore(), f.reports, addrpolicy.ReportFromNodeNICs)
	return out
}

// APIServerAddrs are the API server's endpoint addresses, from the
// EndpointSlices of default/kubernetes.
func APIServerAddrs(inf cache.SharedIndexInformer) []netip.Addr {
	var out []netip.Addr
	for _, o := range inf.GetStore().List() {
		s, ok := o.(*discoveryv1.EndpointSlice)
		if !ok || !isAPIServerSlice(s) {
			continue
		}
		for _, ep := range s.Endpoints {
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					out = append(out, ip.Unmap())
				}
			}
		}
	}
	return out
}

func isAPIServerSlice(s *discoveryv1.EndpointSlice) bool {
	return s.Namespace == metav1.NamespaceDefault && s.Labels[discoveryv1.LabelServiceName] == "kubernetes"
}

// Changes reports whether an update can change the policy, or which
// namespaces a pool admits. Node heartbeats, pool status writes, speaker
// status in NodeNICs and the endpoints of ordinary Services cannot, and at
// thousands of Services and nodes they are most of the events.
func Changes(o, n any) bool {
	switch nv := n.(type) {
	case *corev1.Node:
		ov, ok := o.(*corev1.Node)
		return !ok || !reflect.DeepEqual(addrpolicy.NodeFromObject(ov), addrpolicy.NodeFromObject(nv))
	case *addrpolicy.DecodedNode:
		ov, ok := o.(*addrpolicy.DecodedNode)
		return !ok || !reflect.DeepEqual(ov.Node, nv.Node)
	case *corev1.Namespace:
		ov, ok := o.(*corev1.Namespace)
		return !ok || !maps.Equal(ov.Labels, nv.Labels)
	case *discoveryv1.EndpointSlice:
		ov, ok := o.(*discoveryv1.EndpointSlice)
		return isAPIServerSlice(nv) && (!ok || !reflect.DeepEqual(ov.Endpoints, nv.Endpoints))
	// A typed pool or report changes the policy exactly when its decoded
	// form does: the rule is the decoded form's, whichever a cache holds.
	case *v1alpha2.Eip:
		ov, ok := o.(*v1alpha2.Eip)
		return !ok || !reflect.DeepEqual(addrpolicy.PoolFromEip(ov), addrpolicy.PoolFromEip(nv))
	case *addrpolicy.DecodedPool:
		ov, ok := o.(*addrpolicy.DecodedPool)
		return !ok || !reflect.DeepEqual(ov.Pool, nv.Pool)
	case *v1alpha1.NodeNICs:
		ov, ok := o.(*v1alpha1.NodeNICs)
		return !ok || !addrpolicy.DecodeReport(ov).SamePolicy(&addrpolicy.DecodeReport(nv).Report)
	case *addrpolicy.DecodedReport:
		ov, ok := o.(*addrpolicy.DecodedReport)
		return !ok || !ov.SamePolicy(&nv.Report)
	case *corev1.ConfigMap:
		ov, ok := o.(*corev1.ConfigMap)
		return !ok || !maps.Equal(ov.Data, nv.Data)
	}
	return true
}

// Transform is the controller's transform. It drops what neither program
// reads before an object enters a cache: managed fields are often the
// largest part of a Service, and a node's image list is larger still.
func Transform(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a[corev1.LastAppliedConfigAnnotation] != "" {
			delete(a, corev1.LastAppliedConfigAnnotation)
		}
	}
	if n, ok := obj.(*corev1.Node); ok {
		n.Status.Images = nil
	}
	return obj, nil
}

// Lean is the speaker's transform: it keeps of each object only what the
// data path reads, each kind by the rule of the package that reads it.
// The controller writes Services and pool status back and cannot use it.
// At 10,000 Services on 1,000 nodes, what it drops was most of a
// speaker's memory.
func Lean(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		return lbservice.Summarize(o), nil
	case *corev1.Node:
		return addrpolicy.DecodeNode(o), nil
	case *v1alpha2.Eip:
		return addrpolicy.DecodePool(o), nil
	case *v1alpha1.NodeNICs:
		return addrpolicy.DecodeReport(o), nil
	case *discoveryv1.EndpointSlice:
		return trimSlice(o), nil
	}
	return Transform(obj)
}

// LeanUnread names, as JSON paths, the fields of a kind that Lean drops
// without reading, so that the speaker need not decode them at all. Each
// is a list the size of the cluster's Services: a pool's status maps every
// used address to its Service, and a speaker's report lists every address
// it answers for. Decoding one of 10,000 took about 8 ms and 20,000 to
// 40,000 allocations, in every speaker, on each write; the controller
// rewrites pool status up to once a second while Services come and go.
func LeanUnread(k apiclient.Kind) []string {
	switch k.Name() {
	case apiclient.Eips.Name():
		return []string{"status"}
	case apiclient.NodeNICs.Name():
		return []string{"status.speaker.addresses"}
	}
	return nil
}

// trimSlice keeps which nodes have a ready endpoint, and the addresses of
// the API server's own slice, which the policy reserves.
func trimSlice(s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	out := &discoveryv1.EndpointSlice{
		TypeMeta: s.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion,
		},
		AddressType: s.AddressType,
	}
	if v, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
		out.Labels = map[string]string{discoveryv1.LabelServiceName: v}
	}
	apiServer := isAPIServerSlice(s)
	if len(s.Endpoints) > 0 {
		out.Endpoints = make([]discoveryv1.Endpoint, len(s.Endpoints))
		for i, ep := range s.Endpoints {
			e := discoveryv1.Endpoint{NodeName: ep.NodeName, Conditions: discoveryv1.EndpointConditions{Ready: ep.Conditions.Ready}}
			if apiServer {
				e.Addresses = ep.Addresses
			}
			out.Endpoints[i] = e
		}
	}
	return out
}

// OnChange calls fn after every change that can alter the policy, once
// the policy reflects it. fn must not block. remove ends the calls.
func (f *Facts) OnChange(fn func()) (remove func(), err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextSub
	f.nextSub++
	f.subs[id] = fn
	return func() {
		f.mu.Lock()
		delete(f.subs, id)
		f.mu.Unlock()
	}, nil
}

// Eips is the pool cache: *v1alpha2.Eip, or *addrpolicy.DecodedPool
// under Lean.
func (f *Facts) Eips() cache.SharedIndexInformer { return f.inf.Eips }

// Nodes is the node cache.
func (f *Facts) Nodes() cache.SharedIndexInformer { return f.inf.Nodes }

// NodeNICs is the cache of NIC reports: *v1alpha1.NodeNICs, or
// *addrpolicy.DecodedReport under Lean.
func (f *Facts) NodeNICs() cache.SharedIndexInformer { return f.inf.NodeNICs }
