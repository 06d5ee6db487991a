package setup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/clusterfacts"
	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/pkg/poolcheck"
	"github.com/porterlb/porter/plugin/steps"
)

// Eips creates address pools through the same checks as
// `kubectl porter eip create`.
type Eips struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	Eips    *eips.Client
	Pools   []*v1alpha2.Eip
	// Force overrides forceable refusals, as eip create --force does.
	Force bool
	// Warnings receives the checks' warnings.
	Warnings io.Writer
	// ServeUnclassed makes the first pool the default one, serving
	// LoadBalancer Services that name no class, when no pool is the
	// default yet and no other load balancer is found.
	ServeUnclassed bool
}

// defaultFor decides whether the first new pool becomes the default pool
// that serves Services without a class, and why not when it does not.
func defaultFor(serve bool, existing []v1alpha2.Eip, others []string) (bool, string) {
	if !serve {
		return false, "Services that name no class are left alone (--serve-services-without-class=false)"
	}
	if len(others) > 0 {
		return false, "Services that name no class are left to " + strings.Join(others, "; ")
	}
	for i := range existing {
		if existing[i].IsDefault() {
			return false, "Eip " + existing[i].Name + " stays the default pool"
		}
	}
	return true, ""
}

// markDefault decides for the pools about to be created, and marks the
// first when it is to be the default.
func (e *Eips) markDefault(ctx context.Context, todo []*v1alpha2.Eip) (string, error) {
	if len(todo) == 0 {
		return "", nil
	}
	list, err := e.Eips.List(ctx)
	var existing []v1alpha2.Eip
	switch {
	case err == nil:
		existing = list.Items
	case !apierrors.IsNotFound(err):
		return "", fmt.Errorf("list Eips: %w", err)
	}
	var others []string
	if e.ServeUnclassed {
		if others, err = OtherLoadBalancers(ctx, e.Client, e.Dynamic); err != nil {
			return "", err
		}
	}
	mark, why := defaultFor(e.ServeUnclassed, existing, others)
	if !mark {
		return why, nil
	}
	p := todo[0].DeepCopy()
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[v1alpha2.DefaultEipAnnotation] = "true"
	p.Annotations[v1alpha2.ServeUnclassedAnnotation] = "true"
	todo[0] = p
	return p.Name + " is the default pool, and serves LoadBalancer Services that name no class", nil
}

// CheckPool checks eip against the cluster, prints warnings to w, and
// returns an error naming every reason the pool is refused. It is the one
// path by which both `eip create` and `init --eip` vet a pool.
func CheckPool(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, ec *eips.Client, eip *v1alpha2.Eip, force bool, w io.Writer) error {
	facts, err := clusterfacts.Gather(ctx, kube, dyn, ec)
	if err != nil {
		return fmt.Errorf("check pool %s: %w", eip.Spec.Address, err)
	}
	return reportFindings(w, eip.Name, poolcheck.Check(eip, facts), force)
}

// reportFindings prints warnings and returns an error listing every reason
// the pool is refused, so the user can fix them all at once.
func reportFindings(w io.Writer, name string, res poolcheck.Result, force bool) error {
	var refused, forceable []string
	for _, f := range res.Findings {
		switch {
		case f.Severity == poolcheck.Refused:
			refused = append(refused, f.Message)
		case f.Severity == poolcheck.Forceable && !force:
			forceable = append(forceable, f.Message+"; --force creates it anyway, but "+f.Risk)
		case f.Severity == poolcheck.Forceable:
			fmt.Fprintf(w, "Warning: forced: %s (%s)\n", f.Message, f.Risk)
		default:
			fmt.Fprintf(w, "Warning: %s\n", f.Message)
		}
	}
	if len(refused)+len(forceable) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "refusing Eip %q (%s); nothing was changed:", name, res.Range)
	for _, m := range append(refused, forceable...) {
		b.WriteString("\n  - " + m)
	}
	return errors.New(b.String())
}

func (e *Eips) Name() string { return "address pools" }

// missing returns the pools still to create; a pool that exists with
// another address is an error, never overwritten.
func (e *Eips) missing(ctx context.Context) ([]*v1alpha2.Eip, error) {
	var todo []*v1alpha2.Eip
	for _, p := range e.Pools {
		cur, err := e.Eips.Get(ctx, p.Name)
		switch {
		case err == nil && cur.Spec.Address == p.Spec.Address:
		case err == nil:
			return nil, &steps.Hinted{
				Err:  fmt.Errorf("pool %s exists with address %s, not %s; it was left as it is", p.Name, cur.Spec.Address, p.Spec.Address),
				Hint: "choose another name, or change the pool with kubectl edit eip " + p.Name,
			}
		case apierrors.IsNotFound(err):
			todo = append(todo, p)
		default:
			return nil, err
		}
	}
	return todo, nil
}

func (e *Eips) Check(ctx context.Context) (steps.State, error) {
	if len(e.Pools) == 0 {
		return steps.State{Skip: true, Summary: "no --eip given"}, nil
	}
	todo, err := e.missing(ctx)
	if err != nil {
		return steps.State{}, err
	}
	if len(todo) == 0 {
		return steps.State{Done: true, Summary: fmt.Sprintf("%d pool(s) exist", len(e.Pools))}, nil
	}
	return steps.State{Summary: fmt.Sprintf("%d pool(s) to create", len(todo))}, nil
}

func (e *Eips) Plan(ctx context.Context) (steps.Plan, error) {
	todo, err := e.missing(ctx)
	if err != nil {
		return steps.Plan{}, err
	}
	var parts []string
	for _, p := range todo {
		parts = append(parts, p.Name+" ("+p.Spec.Address+")")
	}
	sum := "create Eip " + strings.Join(parts, ", ")
	why, err := e.markDefault(ctx, todo)
	if err != nil {
		return steps.Plan{}, err
	}
	if why != "" {
		sum += "; " + why
	}
	return steps.Plan{Summary: sum}, nil
}

func (e *Eips) Apply(ctx context.Context, dry steps.DryRun) error {
	todo, err := e.missing(ctx)
	if err != nil {
		return err
	}
	if len(todo) == 0 {
		return nil
	}
	if _, err := e.markDefault(ctx, todo); err != nil {
		return err
	}
	// One look at the cluster serves every pool; each pool created is
	// added to it, so the next is checked against it too.
	facts, err := clusterfacts.Gather(ctx, e.Client, e.Dynamic, e.Eips)
	if apierrors.IsNotFound(err) && dry != steps.Write {
		// A server dry run of a first init: the Eip CRD was not really
		// created, so there is nothing to validate the pools against.
		return nil
	}
	if err != nil {
		return fmt.Errorf("check pools: %w", err)
	}
	for _, p := range todo {
		if err := reportFindings(e.Warnings, p.Name, poolcheck.Check(p, facts), e.Force); err != nil {
			return err
		}
		created, err := e.Eips.Create(ctx, p, dry == steps.Server)
		if err != nil {
			return err
		}
		pool := addrpolicy.PoolFromEip(created)
		if pool.Created.IsZero() {
			pool.Created = time.Now() // younger than every pool before it
		}
		facts.Snapshot.Pools = append(facts.Snapshot.Pools, pool)
	}
	return nil
}

func (e *Eips) Verify(ctx context.Context) error {
	todo, err := e.missing(ctx)
	if err != nil {
		return err
	}
	if len(todo) > 0 {
		return fmt.Errorf("pool %s was not created", todo[0].Name)
	}
	return nil
}

// Undo leaves pools alone: they are the user's data, removed by uninstall
// only when asked.
func (e *Eips) Undo(context.Context, steps.DryRun) error { return nil }

func (e *Eips) Permissions() []Permission {
	if len(e.Pools) == 0 {
		return nil
	}
	return []Permission{
		{Verb: "list", Group: "network.kubesphere.io", Resource: "eips"},
		{Verb: "create", Group: "network.kubesphere.io", Resource: "eips"},
		{Verb: "list", Resource: "nodes"},
		{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices", Namespace: "default"},
	}
}
