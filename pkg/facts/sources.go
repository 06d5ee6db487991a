package facts

import (
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

// Clients are the speaker's and the controller's connections to the API
// server.
type Clients struct {
	// Kube speaks protobuf: at thousands of Services, decoding JSON was a
	// large part of the work. Custom resources have no protobuf form, so
	// Dyn keeps JSON.
	Kube kubernetes.Interface
	Dyn  dynamic.Interface
}

// NewClients connects with cfg.
func NewClients(cfg *rest.Config) (Clients, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 50, 100
	pcfg := rest.CopyConfig(cfg)
	pcfg.ContentType = runtime.ContentTypeProtobuf
	pcfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(pcfg)
	if err != nil {
		return Clients{}, fmt.Errorf("create Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return Clients{}, fmt.Errorf("create dynamic client: %w", err)
	}
	return Clients{Kube: cs, Dyn: dyn}, nil
}

// Sources are the informers both programs read: those the address policy
// is decided from, and Services and Namespaces. Every object is trimmed by
// Transform before it is cached.
type Sources struct {
	Informers
	Services   cache.SharedIndexInformer
	Namespaces cache.SharedIndexInformer
	// NoServiceCIDRs is true when the API server has no ServiceCIDR API;
	// the Service range then comes from kubeadm-config where there is one.
	NoServiceCIDRs bool

	c         Clients
	kf        informers.SharedInformerFactory
	df        dynamicinformer.DynamicSharedInformerFactory
	factories []informers.SharedInformerFactory
}

// NewSources builds the informers; nothing is watched until Start.
func NewSources(c Clients) (*Sources, error) {
	s := &Sources{
		c:  c,
		kf: informers.NewSharedInformerFactory(c.Kube, 0),
		df: dynamicinformer.NewDynamicSharedInformerFactory(c.Dyn, 0),
	}
	// The two ConfigMaps that name the API server's address, each alone:
	// neither program may read any other there.
	oneConfigMap := func(ns, name string) cache.SharedIndexInformer {
		return s.Scoped(ns, ByName(name)).Core().V1().ConfigMaps().Informer()
	}
	s.Informers = Informers{
		Eips:           s.df.ForResource(v1alpha2.EipResource).Informer(),
		Nodes:          s.kf.Core().V1().Nodes().Informer(),
		NodeNICs:       s.df.ForResource(v1alpha1.NodeNICsResource).Informer(),
		EndpointSlices: s.kf.Discovery().V1().EndpointSlices().Informer(),
		ClusterInfo:    oneConfigMap(addrpolicy.ClusterInfoNamespace, addrpolicy.ClusterInfoName),
		KubeadmConfig:  oneConfigMap(addrpolicy.KubeadmConfigNamespace, addrpolicy.KubeadmConfigName),
	}
	if serves(c.Kube, networkingv1.SchemeGroupVersion.String(), "servicecidrs") {
		s.ServiceCIDRs = s.kf.Networking().V1().ServiceCIDRs().Informer()
	} else {
		s.NoServiceCIDRs = true
	}
	s.Services = s.kf.Core().V1().Services().Informer()
	s.Namespaces = s.kf.Core().V1().Namespaces().Informer()
	for _, i := range []cache.SharedIndexInformer{s.Services, s.Namespaces, s.Nodes, s.EndpointSlices, s.Eips, s.NodeNICs, s.ClusterInfo, s.KubeadmConfig, s.ServiceCIDRs} {
		if i == nil {
			continue
		}
		if err := i.SetTransform(Transform); err != nil {
			return nil, fmt.Errorf("set informer transform: %w", err)
		}
	}
	return s, nil
}

// ByName narrows a list to one object.
func ByName(name string) func(*metav1.ListOptions) {
	return func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name }
}

// Scoped is a factory for one namespace and one selection, started and
// shut down with the others.
func (s *Sources) Scoped(ns string, tweak func(*metav1.ListOptions)) informers.SharedInformerFactory {
	f := informers.NewSharedInformerFactoryWithOptions(s.c.Kube, 0, informers.WithNamespace(ns), informers.WithTweakListOptions(tweak))
	s.factories = append(s.factories, f)
	return f
}

// Start starts every informer made so far.
func (s *Sources) Start(stop <-chan struct{}) {
	s.kf.Start(stop)
	s.df.Start(stop)
	for _, f := range s.factories {
		f.Start(stop)
	}
}

// Shutdown waits for every informer to stop; stop them first.
func (s *Sources) Shutdown() {
	s.kf.Shutdown()
	s.df.Shutdown()
	for _, f := range s.factories {
		f.Shutdown()
	}
}

// serves reports whether the API server serves resource in groupVersion.
func serves(cs kubernetes.Interface, groupVersion, resource string) bool {
	rl, err := cs.Discovery().ServerResourcesForGroupVersion(groupVersion)
	if err != nil {
		return false
	}
	for _, r := range rl.APIResources {
		if r.Name == resource {
			return true
		}
	}
	return false
}
