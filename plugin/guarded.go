package plugin

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

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
	cmd.Flags().DurationVar(&o.timeout, "confirm-timeout", 2*time.Minute, "Roll risky changes back in the cluster if this command has not confirmed them within this time")
	cmd.Flags().StringArrayVar(&o.probes, "probe", nil, "A host:port that must still answer after a risky change, e.g. a node's SSH port (repeatable); if one does not, the change is rolled back")
}

// lockoutGuard arms the guard before the first risky write of a command,
// keeps pushing its deadline out while the command lives, and confirms or
// rolls back once the command is done.
type lockoutGuard struct {
	cs       kubernetes.Interface
	dyn      dynamic.Interface
	opts     guardOptions
	progress func(string)

	mu    sync.Mutex
	plan  *guard.Plan
	beat  context.CancelFunc
	beats sync.WaitGroup
}

// add arms the guard, or extends the armed plan, with the undo of one
// more change.
func (g *lockoutGuard) add(ctx context.Context, change string, undo func(*guard.Plan)) error {
	if g == nil || g.opts.off {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	first := g.plan == nil
	if first {
		g.plan = &guard.Plan{}
	}
	if g.plan.Change != "" {
		g.plan.Change += "; "
	}
	g.plan.Change += change
	undo(g.plan)
	g.plan.Deadline = time.Now().Add(g.opts.timeout)
	if err := guard.Arm(ctx, g.cs, *g.plan); err != nil {
		return err
	}
	if first {
		g.progress(fmt.Sprintf("lockout guard armed: rolled back in the cluster unless confirmed within %s", g.opts.timeout))
		bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		g.beat = cancel
		g.beats.Go(func() { g.heartbeat(bctx) })
	}
	return nil
}

// heartbeat pushes the deadline out while this process lives: the guard
// fires only when the operator's side has gone quiet.
func (g *lockoutGuard) heartbeat(ctx context.Context) {
	every := max(g.opts.timeout/3, 100*time.Millisecond)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		g.mu.Lock()
		p := *g.plan
		p.Deadline = time.Now().Add(g.opts.timeout)
		g.mu.Unlock()
		actx, cancel := context.WithTimeout(ctx, every)
		_ = guard.Arm(actx, g.cs, p)
		cancel()
	}
}

// settle confirms an armed guard: the API server and every --probe target
// must answer. If one does not, the change is rolled back now, from here.
// If the API server itself does not answer, nothing can be done from here
// and the speakers roll back at the deadline.
func (g *lockoutGuard) settle(ctx context.Context) error {
	if g == nil || g.plan == nil {
		return nil
	}
	g.beat()
	g.beats.Wait()
	if _, err := g.cs.Discovery().ServerVersion(); err != nil {
		return &steps.Hinted{
			Err:  fmt.Errorf("after %s the API server does not answer: %w; the speakers will roll the change back at %s", g.plan.Change, err, g.plan.Deadline.Format(time.RFC3339)),
			Hint: "wait until then and check access; 'kubectl porter status' shows the result",
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
		g.progress("a probe target stopped answering: rolling back " + g.plan.Change)
		if err := guard.Execute(ctx, g.cs, g.dyn, g.plan); err != nil {
			return fmt.Errorf("probe failed and roll back failed: %w; the speakers will retry at the deadline", err)
		}
		if err := guard.Clear(ctx, g.cs); err != nil {
			return err
		}
		return &steps.Hinted{
			Err:  fmt.Errorf("after %s, %s stopped answering; the change was rolled back", g.plan.Change, strings.Join(dead, ", ")),
			Hint: "check the targets, then run the command again (with --no-guard to skip this check)",
		}
	}
	if err := guard.Clear(ctx, g.cs); err != nil {
		return err
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
}

func (s guardedStep) Apply(ctx context.Context, dry steps.DryRun) error {
	if dry == steps.Write {
		var undoErr error
		err := s.g.add(ctx, s.change, func(p *guard.Plan) { undoErr = s.undo(ctx, p) })
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
		cm, err := cs.CoreV1().ConfigMaps(kubeproxy.Namespace).Get(ctx, kubeproxy.ConfigMap, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("arm guard: read kube-proxy ConfigMap: %w", err)
		}
		cfg, err := kubeproxy.Parse(cm.Data[kubeproxy.ConfigKey])
		if err != nil {
			return fmt.Errorf("arm guard: %w", err)
		}
		v := cfg.StrictARP
		p.StrictARP = &v
		return nil
	}
}

// eipsUndo disables the pools being created.
func eipsUndo(names ...string) func(ctx context.Context, p *guard.Plan) error {
	return func(_ context.Context, p *guard.Plan) error {
		p.DisableEips = append(p.DisableEips, names...)
		return nil
	}
}
