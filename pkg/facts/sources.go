package facts

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apiclient"
	"github.com/porterlb/porter/pkg/lbservice"
)

// Sources are the informers both programs read: those the address policy
// is decided from, and Services. Every object passes through the
// transform given to NewSources before it is cached. (Namespaces matter to
// the allocator alone, which makes its own with Scoped.)
type Sources struct {
	Informers
	Services cache.SharedIndexInformer
	// NoServiceCIDRs is true when the API server has no ServiceCIDR API;
	// the Service range then comes from kubeadm-config where there is one.
	NoServiceCIDRs bool

	// allServices is set when LoadBalancersOnly was asked for and the API
	// server cannot select Services by type, so every one is watched.
	allServices atomic.Bool
	onAll       func(error)
	api         *apiclient.Client
	transform   cache.TransformFunc
	unread      func(apiclient.Kind) []string
	mu          sync.Mutex
	all         []cache.SharedIndexInformer
	started     int
	wg          sync.WaitGroup
}

// SourceOptions say how each program reads what it watches.
type SourceOptions struct {
	// Transform trims each object before it is cached: Transform keeps
	// what the controller writes back, Lean only what the data path reads.
	Transform cache.TransformFunc
	// Unread, when not nil, names the fields of a kind that are never
	// decoded at all (LeanUnread, beside Lean).
	Unread func(apiclient.Kind) []string
	// LoadBalancersOnly watches only LoadBalancer Services where the API
	// server can select them by type (lbservice.LoadBalancersOnly), and
	// every Service where it cannot. Most of a cluster's Services are
	// not LoadBalancers; each would cost a summary and every change to it
	// an event. The controller watches them all: it must still see a
	// Service that stops being a LoadBalancer, to take the address out
	// of its status.
	LoadBalancersOnly bool
	// OnAllServices, when not nil, is told why the Services watch stopped
	// selecting by type while it ran.
	OnAllServices func(error)
}

// NewSources builds the informers; nothing is watched until Start.
func NewSources(ctx context.Context, api *apiclient.Client, opts SourceOptions) (*Sources, error) {
	s := &Sources{api: api, transform: opts.Transform, unread: opts.Unread, onAll: opts.OnAllServices}
	// The two ConfigMaps that name the API server's address, each alone:
	// neither program may read any other there.
	var err error
	oneConfigMap := func(ns, name string) cache.SharedIndexInformer {
		i, e := s.Scoped(apiclient.ConfigMaps, ns, ByName(name))
		if e != nil {
			err = e
		}
		return i
	}
	cluster := func(k apiclient.Kind) cache.SharedIndexInformer {
		i, e := s.Scoped(k, "", nil)
		if e != nil {
			err = e
		}
		return i
	}
	s.Informers = Informers{
		Eips:     cluster(apiclient.Eips),
		Nodes:    cluster(apiclient.Nodes),
		NodeNICs: cluster(apiclient.NodeNICs),
		// Only the API server's own: the policy reads no other endpoints.
		EndpointSlices: func() cache.SharedIndexInformer {
			i, e := s.Scoped(apiclient.EndpointSlices, metav1.NamespaceDefault, func(o *metav1.ListOptions) {
				o.LabelSelector = discoveryv1.LabelServiceName + "=kubernetes"
			})
			if e != nil {
				err = e
			}
			return i
		}(),
		ClusterInfo:   oneConfigMap(addrpolicy.ClusterInfoNamespace, addrpolicy.ClusterInfoName),
		KubeadmConfig: oneConfigMap(addrpolicy.KubeadmConfigNamespace, addrpolicy.KubeadmConfigName),
	}
	if err != nil {
		return nil, err
	}
	if s.Services, err = s.services(ctx, opts.LoadBalancersOnly); err != nil {
		return nil, err
	}
	ok, err := api.Serves(ctx, apiclient.ServiceCIDRs)
	if err != nil {
		return nil, err
	}
	if ok {
		s.ServiceCIDRs = cluster(apiclient.ServiceCIDRs)
	} else {
		s.NoServiceCIDRs = true
	}
	return s, err
}

// services is the Services informer: of LoadBalancers only when lbOnly
// and the API server can select them by type, of every Service otherwise.
func (s *Sources) services(ctx context.Context, lbOnly bool) (cache.SharedIndexInformer, error) {
	if !lbOnly {
		return s.Scoped(apiclient.Services, "", nil)
	}
	ok, err := s.api.Selects(ctx, apiclient.Services, lbservice.LoadBalancersOnly)
	if err != nil {
		return nil, err
	}
	s.allServices.Store(!ok)
	i, err := s.Scoped(apiclient.Services, "", func(o *metav1.ListOptions) {
		if !s.allServices.Load() {
			o.FieldSelector = lbservice.LoadBalancersOnly
		}
	})
	if err != nil {
		return nil, err
	}
	if err := i.SetWatchErrorHandlerWithContext(s.servicesRefused); err != nil {
		return nil, fmt.Errorf("watch Services: %w", err)
	}
	return i, nil
}

// AllServices reports whether every Service is watched although
// LoadBalancersOnly was asked for, because the API server cannot select
// them by type.
func (s *Sources) AllServices() bool { return s.allServices.Load() }

// servicesRefused sees each failed list or watch of Services. An API
// server that cannot select Services by type answers BadRequest; one of
// a cluster's API servers may be older than the one asked at start, as
// in an upgrade. The next list then asks for every Service, so the cache
// is never left without them; a BadRequest for some other cause costs
// the same, and no more.
func (s *Sources) servicesRefused(ctx context.Context, r *cache.Reflector, err error) {
	if apierrors.IsBadRequest(err) && !s.allServices.Swap(true) && s.onAll != nil {
		s.onAll(err)
	}
	cache.DefaultWatchErrorHandler(ctx, r, err)
}

// ByName narrows a list to one object.
func ByName(name string) func(*metav1.ListOptions) {
	return func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name }
}

// Scoped is an informer of k in namespace ns ("" for all), narrowed by
// tweak, trimmed like the others, and started by the next Start.
func (s *Sources) Scoped(k apiclient.Kind, ns string, tweak func(*metav1.ListOptions)) (cache.SharedIndexInformer, error) {
	r := s.api.Resource(k)
	if s.unread != nil {
		var err error
		if r, err = r.Without(s.unread(k)...); err != nil {
			return nil, err
		}
	}
	i := r.Informer(ns, tweak)
	if s.transform != nil {
		if err := i.SetTransform(s.transform); err != nil {
			return nil, fmt.Errorf("set informer transform: %w", err)
		}
	}
	s.mu.Lock()
	s.all = append(s.all, i)
	s.mu.Unlock()
	return i, nil
}

// Start starts every informer made since the last Start.
func (s *Sources) Start(stop <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range s.all[s.started:] {
		s.wg.Go(func() { i.Run(stop) })
	}
	s.started = len(s.all)
}

// Shutdown waits for every informer to stop; stop them first.
func (s *Sources) Shutdown() { s.wg.Wait() }
