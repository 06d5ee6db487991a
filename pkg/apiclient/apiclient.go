// Package apiclient is a lean client for the API groups Porter's daemons
// read: core, discovery and networking, and Porter's own kinds.
//
// client-go's clientset and informer factory link and register every API
// group Kubernetes has. That cost the speaker tens of megabytes of binary,
// and of memory touched at start, on every node, to read five kinds. This
// package registers those kinds alone, in a scheme of its own, and builds
// informers from plain list and watch calls.
package apiclient

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/jsonprune"
)

// NewScheme registers the kinds Porter's daemons read, and no others.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, discoveryv1.AddToScheme, networkingv1.AddToScheme,
		v1alpha2.AddToScheme, v1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("register API types: %w", err)
		}
	}
	// Group-less options (ListOptions and the rest) for every version.
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return s, nil
}

// Client holds one REST client per API group. Built-in groups speak
// protobuf, which decodes several times faster than JSON at thousands of
// objects; custom resources have no protobuf form and speak JSON.
type Client struct {
	Scheme *runtime.Scheme
	params runtime.ParameterCodec
	groups map[schema.GroupVersion]*rest.RESTClient
	base   *rest.RESTClient
	// jsonGroups speak JSON; their watches decode with decoder
	// (watchJSON).
	jsonGroups map[schema.GroupVersion]bool
	decoder    runtime.Decoder
}

// New connects to the API server that cfg names. qps and burst bound the
// client's own request rate.
func New(cfg *rest.Config) (*Client, error) {
	s, err := NewScheme()
	if err != nil {
		return nil, err
	}
	codecs := serializer.NewCodecFactory(s)
	c := &Client{Scheme: s, params: runtime.NewParameterCodec(s), groups: map[schema.GroupVersion]*rest.RESTClient{},
		jsonGroups: map[schema.GroupVersion]bool{}, decoder: codecs.UniversalDeserializer()}
	mk := func(gv schema.GroupVersion, protobuf bool) (*rest.RESTClient, error) {
		g := rest.CopyConfig(cfg)
		g.GroupVersion = &gv
		g.APIPath = "/apis"
		if gv.Group == "" {
			g.APIPath = "/api"
		}
		g.NegotiatedSerializer = codecs.WithoutConversion()
		if protobuf {
			g.ContentType = runtime.ContentTypeProtobuf
			g.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
		} else {
			g.ContentType = runtime.ContentTypeJSON
			g.AcceptContentTypes = runtime.ContentTypeJSON
		}
		if g.UserAgent == "" {
			g.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		rc, err := rest.RESTClientFor(g)
		if err != nil {
			return nil, fmt.Errorf("create client for %s: %w", gv, err)
		}
		return rc, nil
	}
	for _, g := range []struct {
		gv       schema.GroupVersion
		protobuf bool
	}{
		{corev1.SchemeGroupVersion, true},
		{discoveryv1.SchemeGroupVersion, true},
		{networkingv1.SchemeGroupVersion, true},
		{v1alpha2.GroupVersion, false},
		{v1alpha1.GroupVersion, false},
	} {
		if c.groups[g.gv], err = mk(g.gv, g.protobuf); err != nil {
			return nil, err
		}
		c.jsonGroups[g.gv] = !g.protobuf
	}
	c.base = c.groups[corev1.SchemeGroupVersion]
	return c, nil
}

// Resource is one kind of object, read through its group's client.
type Resource struct {
	c          *Client
	rc         *rest.RESTClient
	name       string
	namespaced bool
	json       bool
	obj        func() runtime.Object
	// unread are blanked in each object before it is decoded.
	unread []jsonprune.Path
}

// Resources Porter reads.
var (
	Services       = Kind{corev1.SchemeGroupVersion, "services", true, func() runtime.Object { return &corev1.Service{} }}
	Nodes          = Kind{corev1.SchemeGroupVersion, "nodes", false, func() runtime.Object { return &corev1.Node{} }}
	Namespaces     = Kind{corev1.SchemeGroupVersion, "namespaces", false, func() runtime.Object { return &corev1.Namespace{} }}
	Pods           = Kind{corev1.SchemeGroupVersion, "pods", true, func() runtime.Object { return &corev1.Pod{} }}
	Secrets        = Kind{corev1.SchemeGroupVersion, "secrets", true, func() runtime.Object { return &corev1.Secret{} }}
	ConfigMaps     = Kind{corev1.SchemeGroupVersion, "configmaps", true, func() runtime.Object { return &corev1.ConfigMap{} }}
	EndpointSlices = Kind{discoveryv1.SchemeGroupVersion, "endpointslices", true, func() runtime.Object { return &discoveryv1.EndpointSlice{} }}
	ServiceCIDRs   = Kind{networkingv1.SchemeGroupVersion, "servicecidrs", false, func() runtime.Object { return &networkingv1.ServiceCIDR{} }}
	Eips           = Kind{v1alpha2.GroupVersion, "eips", false, func() runtime.Object { return &v1alpha2.Eip{} }}
	NodeNICs       = Kind{v1alpha1.GroupVersion, "nodenics", false, func() runtime.Object { return &v1alpha1.NodeNICs{} }}
)

// Kind names a resource and the Go type of its objects.
type Kind struct {
	gv         schema.GroupVersion
	name       string
	namespaced bool
	obj        func() runtime.Object
}

// Name is the kind's resource name, as in its API path ("nodenics").
func (k Kind) Name() string { return k.name }

// Resource is the resource k, read with c.
func (c *Client) Resource(k Kind) Resource {
	return Resource{c: c, rc: c.groups[k.gv], name: k.name, namespaced: k.namespaced, json: c.jsonGroups[k.gv], obj: k.obj}
}

// Without is r read with the fields at paths (dotted JSON paths in the
// object, such as "status.speaker.addresses") never decoded: the objects
// its lists and watches yield have them zero. Only kinds read as JSON can
// leave fields undecoded.
func (r Resource) Without(paths ...string) (Resource, error) {
	if len(paths) > 0 && !r.json {
		return r, fmt.Errorf("read %s without %v: it is read as protobuf, which is decoded whole", r.name, paths)
	}
	r.unread = slices.Clone(r.unread)
	for _, p := range paths {
		r.unread = append(r.unread, jsonprune.ParsePath(p))
	}
	return r, nil
}

// prefixed is r's unread paths inside a document that holds the object
// at steps: "items.*" in a list, "object" in a watch event.
func (r Resource) prefixed(steps ...string) []jsonprune.Path {
	out := make([]jsonprune.Path, len(r.unread))
	for i, p := range r.unread {
		out[i] = p.Prefix(steps...)
	}
	return out
}

// ListWatch lists and watches the resource in ns ("" for all, or a
// cluster-scoped kind), narrowed by tweak when it is not nil.
func (r Resource) ListWatch(ns string, tweak func(*metav1.ListOptions)) *cache.ListWatch {
	scoped := r.namespaced && ns != ""
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			if tweak != nil {
				tweak(&o)
			}
			req := r.rc.Get().NamespaceIfScoped(ns, scoped).Resource(r.name).VersionedParams(&o, r.c.params)
			if len(r.unread) == 0 {
				return req.Do(ctx).Get()
			}
			return r.listWithout(ctx, req)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if tweak != nil {
				tweak(&o)
			}
			o.Watch = true
			req := r.rc.Get().NamespaceIfScoped(ns, scoped).Resource(r.name).VersionedParams(&o, r.c.params)
			if r.json {
				return watchJSON(ctx, req, r.c.decoder, r.prefixed("object"))
			}
			return req.Watch(ctx)
		},
	}
}

// listWithout lists with req, blanking r's unread fields in every item
// before the list is decoded.
func (r Resource) listWithout(ctx context.Context, req *rest.Request) (runtime.Object, error) {
	raw, err := req.Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	if raw, err = jsonprune.Null(raw, r.prefixed("items", "*")...); err != nil {
		return nil, fmt.Errorf("list %s: %w", r.name, err)
	}
	obj, _, err := r.c.decoder.Decode(raw, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decode the list of %s: %w", r.name, err)
	}
	return obj, nil
}

// Informer is a shared informer of the resource in ns, narrowed by tweak.
// It has no namespace index: nothing Porter runs lists by namespace, and
// at 10,000 Services the index held a second copy of every key.
func (r Resource) Informer(ns string, tweak func(*metav1.ListOptions)) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(r.ListWatch(ns, tweak), r.obj(), 0, cache.Indexers{})
}

// ServerVersion asks the API server its version.
func (c *Client) ServerVersion(ctx context.Context) (*version.Info, error) {
	body, err := c.base.Get().AbsPath("/version").SetHeader("Accept", runtime.ContentTypeJSON).Do(ctx).Raw()
	if err != nil {
		return nil, fmt.Errorf("read the API server's version: %w", err)
	}
	var v version.Info
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("read the API server's version: %w", err)
	}
	return &v, nil
}

// Serves reports whether the API server serves the resource k.
func (c *Client) Serves(ctx context.Context, k Kind) (bool, error) {
	path := "/apis/" + k.gv.String()
	if k.gv.Group == "" {
		path = "/api/" + k.gv.Version
	}
	body, err := c.base.Get().AbsPath(path).SetHeader("Accept", runtime.ContentTypeJSON).Do(ctx).Raw()
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discover %s: %w", k.gv, err)
	}
	var rl metav1.APIResourceList
	if err := json.Unmarshal(body, &rl); err != nil {
		return false, fmt.Errorf("discover %s: %w", k.gv, err)
	}
	for _, r := range rl.APIResources {
		if r.Name == k.name {
			return true, nil
		}
	}
	return false, nil
}

// Selects reports whether the API server can narrow lists and watches of
// k by the field selector sel. It lists at most one object with it: a
// server that has no such field answers BadRequest, and a watch that asked
// for it would be refused outright, so the caller must know before it
// builds one.
func (c *Client) Selects(ctx context.Context, k Kind, sel string) (bool, error) {
	o := metav1.ListOptions{FieldSelector: sel, Limit: 1}
	err := c.groups[k.gv].Get().Resource(k.name).VersionedParams(&o, c.params).Do(ctx).Error()
	if apierrors.IsBadRequest(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("list %s by %s: %w", k.name, sel, err)
	}
	return true, nil
}

// Apply applies obj, server-side, to the object name of the resource (a
// cluster-scoped one), or
// to its subresource when that is not "", as fieldManager, forcing
// ownership. The object the API server answers with is not decoded: a
// speaker's NIC report lists every address it announces, and it has no
// use for that list back.
func (r Resource) Apply(ctx context.Context, name, subresource string, obj runtime.Object, fieldManager string) error {
	if r.namespaced {
		return fmt.Errorf("apply %s %s: only cluster-scoped kinds are applied here", r.name, name)
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", r.name, name, err)
	}
	force := true
	req := r.rc.Patch(types.ApplyPatchType).Resource(r.name).Name(name).
		VersionedParams(&metav1.PatchOptions{FieldManager: fieldManager, Force: &force}, r.c.params).Body(body)
	if subresource != "" {
		req = req.SubResource(subresource)
	}
	return req.Do(ctx).Error()
}
