package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/guard"
	"github.com/porterlb/porter/pkg/kubeproxy"
	"github.com/porterlb/porter/plugin/setup"
	"github.com/porterlb/porter/plugin/steps"
)

type guardOptions struct {
	off     bool
	timeout time.Duration
	probes  []string
}

func addGuardFlags(cmd *cobra.Command, o *guardOptions) {
	cmd.Flags().BoolVar(&o.off, "no-guard", false, "Apply risky changes without the lockout guard")
	cmd.Flags().DurationVar(&o.timeout, "confirm-timeout", guard.DefaultTimeout, fmt.Sprintf("Roll risky changes back in the cluster if this command has not confirmed them within this time (at least %s)", guard.MinTimeout))
	cmd.Flags().StringArrayVar(&o.probes, "probe", nil, "A host:port that must still answer after a risky change, e.g. a node's SSH port (repeatable); if one does not, the change is rolled back")
}

// validate refuses settings the guard cannot work with, before anything
// is changed.
func (o guardOptions) validate() error {
	if o.off {
		return nil
	}
	return guard.CheckTimeout(o.timeout)
}

// lockoutGuard arms the guard before the first risky write of a command,
// keeps extending it while the command lives, and confirms or rolls back
// once the command is done. The plan is this command's own: concurrent
// commands each have theirs.
type lockoutGuard struct {
	cs       kubernetes.Interface
	dyn      dynamic.Interface
	opts     guardOptions
	progress func(string)

	mu sync.Mutex
	// armed is this command's plan as last written, nil until the first
	// risky change.
	armed *guard.Armed
	// verify re-reads each change once confirmed: it must still stand.
	verify []func(context.Context) error
	// taken is set once the allocator took the plan over to undo it.
	taken bool
	beat  context.CancelFunc
	beats sync.WaitGroup
}

// add arms the guard, or extends the armed plan, with the undo of one
// more change, and how to tell that the change still stands.
func (g *lockoutGuard) add(ctx context.Context, change string, undo func(*guard.Plan), verify func(context.Context) error) error {
	if g == nil || g.opts.off {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.taken {
		return fmt.Errorf("before %s: %w", change, guard.ErrRolledBack)
	}
	var p guard.Plan
	if g.armed != nil {
		p = g.armed.Plan
	}
	p.DisableEips = slices.Clone(p.DisableEips)
	p.Timeout = metav1.Duration{Duration: g.opts.timeout}
	if p.Change != "" {
		p.Change += "; "
	}
	p.Change += change
	undo(&p)
	if g.armed == nil {
		a, err := guard.Arm(ctx, g.cs, p)
		if err != nil {
			return err
		}
		g.armed = a
		g.progress(fmt.Sprintf("lockout guard armed: rolled back in the cluster unless confirmed within %s", g.opts.timeout))
		bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		g.beat = cancel
		g.beats.Go(func() { g.heartbeat(bctx) })
	} else if err := g.armed.Rewrite(ctx, g.cs, p); err != nil {
		if errors.Is(err, guard.ErrRolledBack) {
			g.taken = true
			return fmt.Errorf("before %s: %w", change, err)
		}
		return err
	}
	if verify != nil {
		g.verify = append(g.verify, verify)
	}
	return nil
}

// heartbeat extends the plan while this process lives: the guard fires
// only when the operator's side has gone quiet.
func (g *lockoutGuard) heartbeat(ctx context.Context) {
	every := g.opts.timeout / 3
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		g.mu.Lock()
		if g.taken {
			g.mu.Unlock()
			return
		}
		actx, cancel := context.WithTimeout(ctx, every)
		err := g.armed.Rewrite(actx, g.cs, g.armed.Plan)
		cancel()
		if errors.Is(err, guard.ErrRolledBack) {
			g.taken = true
		}
		g.mu.Unlock()
	}
}

// settle confirms an armed guard: the API server and every --probe target
// must answer. If one does not, the change is rolled back now, from here.
// If the API server itself does not answer, nothing can be done from here
// and the allocator rolls back once the timeout has passed. Once confirmed,
// each change is read back: if the allocator undid it meanwhile, settle
// says so and fails.
func (g *lockoutGuard) settle(ctx context.Context) error {
	if g == nil || g.armed == nil {
		return nil
	}
	g.beat()
	g.beats.Wait()
	if _, err := g.cs.Discovery().ServerVersion(); err != nil {
		return &steps.Hinted{
			Err:  fmt.Errorf("after %s the API server does not answer: %w; the change is rolled back in the cluster once it has stood unconfirmed for %s", g.armed.Plan.Change, err, g.opts.timeout),
			Hint: "wait that long and check access; 'kubectl porter status' shows the result",
		}
	}
	var dead []string
	for _, p := range g.opts.probes {
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err := d.DialContext(ctx, "tcp", p)
		if err != nil {
			dead = append(dead, fmt.Sprintf("%s (%v)", p, err))
			continue
		}
		_ = c.Close()
	}
	if len(dead) > 0 {
		g.progress("a probe target stopped answering: rolling back " + g.armed.Plan.Change)
		if err := guard.Execute(ctx, g.cs, g.dyn, g.armed.Plan); err != nil {
			return fmt.Errorf("probe failed and roll back failed: %w; the allocator retries once the plan has stood for %s", err, g.opts.timeout)
		}
		if err := g.armed.Drop(ctx, g.cs); err != nil {
			return err
		}
		return &steps.Hinted{
			Err:  fmt.Errorf("after %s, %s stopped answering; the change was rolled back", g.armed.Plan.Change, strings.Join(dead, ", ")),
			Hint: "check the targets, then run the command again (with --no-guard to skip this check)",
		}
	}
	rolledBack := &steps.Hinted{
		Err:  fmt.Errorf("%s: %w", g.armed.Plan.Change, guard.ErrRolledBack),
		Hint: "this command was held up longer than --confirm-timeout; check access, then run it again",
	}
	if g.taken {
		return rolledBack
	}
	if err := g.armed.Confirm(ctx, g.cs); err != nil {
		if errors.Is(err, guard.ErrRolledBack) {
			return rolledBack
		}
		return err
	}
	for _, v := range g.verify {
		if err := v(ctx); err != nil {
			return &steps.Hinted{
				Err:  fmt.Errorf("access confirmed, but %s no longer stands: %w", g.armed.Plan.Change, err),
				Hint: "it was rolled back in the cluster or changed by someone else; check with 'kubectl porter status', then run the command again",
			}
		}
	}
	g.progress("lockout guard: access confirmed, guard cleared")
	return nil
}

// guardedStep arms the guard before its inner step writes.
type guardedStep struct {
	steps.Step
	g      *lockoutGuard
	change string
	undo   func(ctx context.Context, p *guard.Plan) error
	// verify says whether the change still stands, once confirmed.
	verify func(ctx context.Context) error
}

func (s guardedStep) Apply(ctx context.Context, dry steps.DryRun) error {
	if dry == steps.Write {
		var undoErr error
		err := s.g.add(ctx, s.change, func(p *guard.Plan) { undoErr = s.undo(ctx, p) }, s.verify)
		if err == nil {
			err = undoErr
		}
		if err != nil {
			return err
		}
	}
	return s.Step.Apply(ctx, dry)
}

// Permissions are the inner step's, plus what arming the guard needs.
func (s guardedStep) Permissions() []setup.Permission {
	var out []setup.Permission
	if p, ok := s.Step.(interface{ Permissions() []setup.Permission }); ok {
		out = p.Permissions()
	}
	if s.g != nil && !s.g.opts.off {
		out = append(out,
			setup.Permission{Verb: "create", Resource: "namespaces"},
			setup.Permission{Verb: "create", Resource: "configmaps", Namespace: guard.Namespace},
			setup.Permission{Verb: "update", Resource: "configmaps", Namespace: guard.Namespace},
			setup.Permission{Verb: "delete", Resource: "configmaps", Namespace: guard.Namespace},
			// The admission policy on plans asks for this right.
			setup.Permission{Verb: guard.PermissionVerb, Group: guard.PermissionGroup, Resource: guard.PermissionResource, Namespace: guard.Namespace},
		)
	}
	return out
}

// Undo and the optional interfaces pass through.
func (s guardedStep) UndoPlan(ctx context.Context) (string, error) {
	if p, ok := s.Step.(steps.UndoPlanner); ok {
		return p.UndoPlan(ctx)
	}
	return "", nil
}

// strictARPUndo records the strictARP value before the change.
func strictARPUndo(cs kubernetes.Interface) func(ctx context.Context, p *guard.Plan) error {
	return func(ctx context.Context, p *guard.Plan) error {
		v, err := strictARPNow(ctx, cs)
		if err != nil {
			return fmt.Errorf("arm guard: %w", err)
		}
		p.StrictARP = &v
		return nil
	}
}

// strictARPNow reads strictARP from the kube-proxy ConfigMap.
func strictARPNow(ctx context.Context, cs kubernetes.Interface) (bool, error) {
	cm, err := cs.CoreV1().ConfigMaps(kubeproxy.Namespace).Get(ctx, kubeproxy.ConfigMap, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("read kube-proxy ConfigMap: %w", err)
	}
	cfg, err := kubeproxy.Parse(cm.Data[kubeproxy.ConfigKey])
	if err != nil {
		return false, err
	}
	return cfg.StrictARP, nil
}

// eipsUndo disables the pools being created.
func eipsUndo(names ...string) func(ctx context.Context, p *guard.Plan) error {
	return func(_ context.Context, p *guard.Plan) error {
		p.DisableEips = append(p.DisableEips, names...)
		return nil
	}
}

// strictARPStands says whether strictARP is still on.
func strictARPStands(cs kubernetes.Interface) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		on, err := strictARPNow(ctx, cs)
		if err != nil {
			return err
		}
		if !on {
			return errors.New("strictARP is off in the kube-proxy ConfigMap")
		}
		return nil
	}
}

// eipsStand says whether each pool exists and is enabled.
func eipsStand(dyn dynamic.Interface, names ...string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		for _, name := range names {
			u, err := dyn.Resource(v1alpha2.EipResource).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("read Eip %s: %w", name, err)
			}
			if off, _, _ := unstructured.NestedBool(u.Object, "spec", "disable"); off {
				return fmt.Errorf("the pool %s is disabled", name)
			}
		}
		return nil
	}
}
