package setup

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/manifests"
	"github.com/porterlb/porter/pkg/addr"
	"github.com/porterlb/porter/plugin/steps"
)

// Permission is one verb a step needs.
type Permission struct {
	Verb, Group, Resource, Namespace, Name string
}

func (p Permission) String() string {
	what := p.Resource
	if p.Group != "" {
		what += "." + p.Group
	}
	if p.Name != "" {
		what += " '" + p.Name + "'"
	}
	where := "cluster-wide"
	if p.Namespace != "" {
		where = "in " + p.Namespace
	}
	return fmt.Sprintf("cannot %s %s %s", p.Verb, what, where)
}

// Permissioned is a step that can say which permissions it needs.
type Permissioned interface {
	Permissions() []Permission
}

func (s *StrictARP) Permissions() []Permission {
	return []Permission{
		{Verb: "get", Resource: "configmaps", Namespace: "kube-system", Name: "kube-proxy"},
		{Verb: "update", Resource: "configmaps", Namespace: "kube-system", Name: "kube-proxy"},
	}
}

func (r *RestartKubeProxy) Permissions() []Permission {
	return []Permission{
		{Verb: "get", Group: "apps", Resource: "daemonsets", Namespace: "kube-system", Name: "kube-proxy"},
		{Verb: "patch", Group: "apps", Resource: "daemonsets", Namespace: "kube-system", Name: "kube-proxy"},
		{Verb: "list", Resource: "pods", Namespace: "kube-system"},
	}
}

// Preflight checks, before anything is written, that the API server answers,
// that the user may do everything the later steps do, and that no other
// load balancer would answer ARP for the same addresses.
type Preflight struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Steps are the later steps, whose permissions are checked.
	Steps []steps.Step
	// Pools are the address pools init is asked to create.
	Pools []addr.Range
}

func (p *Preflight) Name() string { return "preflight" }

// Permissions are the reads preflight itself makes.
func (p *Preflight) Permissions() []Permission {
	return []Permission{
		{Verb: "list", Group: "apps", Resource: "daemonsets"},
		{Verb: "list", Group: "apps", Resource: "deployments"},
	}
}

func (p *Preflight) Check(ctx context.Context) (steps.State, error) {
	v, err := p.Client.Discovery().ServerVersion()
	if err != nil {
		return steps.State{}, &steps.Hinted{Err: fmt.Errorf("reach the API server: %w", err), Hint: "check --kubeconfig and --context, and that the cluster is up"}
	}
	if err := p.checkPermissions(ctx); err != nil {
		return steps.State{}, err
	}
	found, err := p.otherLoadBalancers(ctx)
	if err != nil {
		return steps.State{}, err
	}
	summary := "API server " + v.GitVersion + "; all permissions present"
	if len(found) > 0 {
		summary += "; also installed: " + strings.Join(found, ", ")
	}
	return steps.State{Done: true, Summary: summary}, nil
}

func (p *Preflight) Plan(context.Context) (steps.Plan, error)  { return steps.Plan{}, nil }
func (p *Preflight) Apply(context.Context, steps.DryRun) error { return nil }
func (p *Preflight) Verify(context.Context) error              { return nil }
func (p *Preflight) Undo(context.Context, steps.DryRun) error  { return nil }

// checkPermissions asks the API server about every permission at once and
// reports all that are missing.
func (p *Preflight) checkPermissions(ctx context.Context) error {
	var missing []string
	seen := map[Permission]bool{}
	for _, s := range append([]steps.Step{p}, p.Steps...) {
		ps, ok := s.(Permissioned)
		if !ok {
			continue
		}
		for _, perm := range ps.Permissions() {
			if seen[perm] {
				continue
			}
			seen[perm] = true
			review := &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authv1.ResourceAttributes{
					Verb: perm.Verb, Group: perm.Group, Resource: perm.Resource, Namespace: perm.Namespace, Name: perm.Name,
				},
			}}
			res, err := p.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("check permissions: %w", err)
			}
			if !res.Status.Allowed {
				missing = append(missing, perm.String())
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &steps.Hinted{
		Err:  fmt.Errorf("missing %d permission(s); nothing was changed:\n  - %s", len(missing), strings.Join(missing, "\n  - ")),
		Hint: "run init as a cluster admin, or have one grant these",
	}
}

var (
	metallbPools = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "ipaddresspools"}
	ciliumL2     = schema.GroupVersionResource{Group: "cilium.io", Version: "v2alpha1", Resource: "ciliuml2announcementpolicies"}
)

// otherLoadBalancers names the load balancers already in the cluster, and
// refuses when one would answer ARP for the same addresses as Porter.
func (p *Preflight) otherLoadBalancers(ctx context.Context) ([]string, error) {
	// Five reads that depend on none another: they go at once.
	var (
		wg                  sync.WaitGroup
		nsErr, poolsErr     error
		pools, cilium       *unstructured.UnstructuredList
		ciliumErr, namesErr error
		names               []string
	)
	wg.Go(func() { _, nsErr = p.Client.CoreV1().Namespaces().Get(ctx, "metallb-system", metav1.GetOptions{}) })
	wg.Go(func() { pools, poolsErr = p.Dynamic.Resource(metallbPools).List(ctx, metav1.ListOptions{}) })
	wg.Go(func() { cilium, ciliumErr = p.Dynamic.Resource(ciliumL2).List(ctx, metav1.ListOptions{}) })
	names, namesErr = p.workloadNames(ctx)
	wg.Wait()

	var found, conflicts []string
	if nsErr == nil {
		found = append(found, "MetalLB (namespace metallb-system)")
	}
	if poolsErr == nil {
		if len(found) == 0 {
			found = append(found, "MetalLB (IPAddressPool CRD)")
		}
		for _, item := range pools.Items {
			addrs, _, _ := unstructured.NestedStringSlice(item.Object, "spec", "addresses")
			for _, a := range addrs {
				r, ok := metallbRange(a)
				if !ok {
					continue
				}
				for _, pool := range p.Pools {
					if in, ok := r.Intersect(pool); ok {
						conflicts = append(conflicts, fmt.Sprintf("MetalLB IPAddressPool %s also holds %s", item.GetName(), in))
					}
				}
			}
		}
	} else if !apierrors.IsNotFound(poolsErr) && !apierrors.IsForbidden(poolsErr) {
		return nil, fmt.Errorf("look for MetalLB: %w", poolsErr)
	}

	if namesErr != nil {
		return nil, namesErr
	}
	for _, n := range names {
		ns, name, _ := strings.Cut(n, "/")
		switch {
		case ns == manifests.Namespace:
			// Porter's own speaker.
		case strings.Contains(name, "openelb") || strings.Contains(name, "porter-manager") || strings.Contains(name, "porter-speaker"):
			found = append(found, "OpenELB ("+n+")")
			conflicts = append(conflicts, "OpenELB ("+n+") announces the same Eip pools Porter does")
		case strings.HasPrefix(name, "kube-vip"):
			found = append(found, "kube-vip ("+n+")")
		}
	}
	if ciliumErr == nil && len(cilium.Items) > 0 {
		found = append(found, fmt.Sprintf("Cilium L2 announcements (%d policies)", len(cilium.Items)))
	}
	sort.Strings(conflicts)
	if len(conflicts) > 0 {
		return found, &steps.Hinted{
			Err:  fmt.Errorf("another load balancer would answer ARP for the same addresses; nothing was changed:\n  - %s", strings.Join(conflicts, "\n  - ")),
			Hint: "remove the other load balancer, or give Porter addresses it does not use",
		}
	}
	return found, nil
}

// workloadNames lists "namespace/name" of every DaemonSet and Deployment,
// where other load balancers run.
func (p *Preflight) workloadNames(ctx context.Context) ([]string, error) {
	var (
		wg     sync.WaitGroup
		dss    *appsv1.DaemonSetList
		dssErr error
	)
	wg.Go(func() {
		dss, dssErr = p.Client.AppsV1().DaemonSets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	})
	deps, err := p.Client.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	wg.Wait()
	if dssErr != nil {
		return nil, fmt.Errorf("list DaemonSets: %w", dssErr)
	}
	if err != nil {
		return nil, fmt.Errorf("list Deployments: %w", err)
	}
	var out []string
	for _, d := range dss.Items {
		out = append(out, d.Namespace+"/"+d.Name)
	}
	for _, d := range deps.Items {
		out = append(out, d.Namespace+"/"+d.Name)
	}
	return out, nil
}

// metallbRange reads a MetalLB address entry: a CIDR or "a-b".
func metallbRange(s string) (addr.Range, bool) {
	s = strings.ReplaceAll(s, " ", "")
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return addr.Range{}, false
		}
		return addr.PrefixRange(p), true
	}
	r, err := addr.Parse(s)
	return r, err == nil
}

// OtherLoadBalancers names the load balancers other than Porter found in
// the cluster, for `status`.
func OtherLoadBalancers(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface) ([]string, error) {
	p := &Preflight{Client: cs, Dynamic: dyn}
	found, err := p.otherLoadBalancers(ctx)
	var h *steps.Hinted
	if errors.As(err, &h) {
		// A conflict is still a finding to report, not a failure to read.
		return found, nil
	}
	return found, err
}
