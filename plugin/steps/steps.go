// Package steps runs Porter's setup as an ordered list of Steps, each of
// which can say where it stands (Check), what it would change (Plan), do it
// (Apply), confirm it worked (Verify) and take it back (Undo). `init` runs
// them forward, `status` only checks, and `uninstall` undoes them in
// reverse, so all three agree on what each step means.
package steps

import (
	"context"
	"errors"
	"fmt"
)

// DryRun says whether writes happen.
type DryRun int

const (
	// Write applies changes.
	Write DryRun = iota
	// Client computes and shows changes without sending them.
	Client
	// Server sends every write with server-side dry run.
	Server
)

// String is the --dry-run value that selects d.
func (d DryRun) String() string {
	switch d {
	case Client:
		return "client"
	case Server:
		return "server"
	}
	return "none"
}

// ParseDryRun reads a --dry-run value.
func ParseDryRun(s string) (DryRun, error) {
	switch s {
	case "", "none":
		return Write, nil
	case "client":
		return Client, nil
	case "server":
		return Server, nil
	}
	return Write, fmt.Errorf("invalid --dry-run %q: choose none, client or server", s)
}

// State is what Check found.
type State struct {
	// Done means there is nothing to do.
	Done bool
	// Skip means the step does not apply to this cluster.
	Skip bool
	// Summary is one line for the checklist.
	Summary string
}

// Plan is what Apply would change.
type Plan struct {
	// Summary is one line, e.g. "set ipvs.strictARP: true".
	Summary string
	// Diff shows the change, when it is an edit of text.
	Diff string
}

// Step is one stage of the setup.
type Step interface {
	Name() string
	Check(ctx context.Context) (State, error)
	Plan(ctx context.Context) (Plan, error)
	Apply(ctx context.Context, dry DryRun) error
	Verify(ctx context.Context) error
	Undo(ctx context.Context, dry DryRun) error
}

// Outcomes of a step, as reported.
const (
	OutcomeDone     = "done"
	OutcomeAlready  = "already"
	OutcomeSkipped  = "skipped"
	OutcomePlanned  = "planned"
	OutcomeFailed   = "failed"
	OutcomeDeclined = "declined"
)

// Result is the report of one step. Its JSON form is part of `-o json`.
type Result struct {
	Step    string `json:"step"`
	Outcome string `json:"outcome"`
	Message string `json:"message"`
	Diff    string `json:"diff,omitempty"`
	// Hint says what to run next after a failure.
	Hint string `json:"hint,omitempty"`
}

// Hinted is an error that knows what the user should do about it.
type Hinted struct {
	Err  error
	Hint string
}

func (h *Hinted) Error() string { return h.Err.Error() }
func (h *Hinted) Unwrap() error { return h.Err }

// ErrDeclined is returned when the user answers no.
var ErrDeclined = errors.New("declined")

// Runner runs steps.
type Runner struct {
	DryRun DryRun
	// Confirm is asked before each Apply that writes; nil means yes.
	Confirm func(step string, p Plan) (bool, error)
	// Report receives each result as its step ends; nil drops them.
	Report func(Result)
	// Progress receives what a step is doing now; nil drops it.
	Progress func(step, msg string)
}

func (r Runner) report(res Result) Result {
	if r.Report != nil {
		r.Report(res)
	}
	return res
}

func failed(step string, err error) Result {
	res := Result{Step: step, Outcome: OutcomeFailed, Message: err.Error()}
	var h *Hinted
	if errors.As(err, &h) {
		res.Hint = h.Hint
	}
	return res
}

// Init runs Check, Plan, Apply and Verify for each step in order, and stops
// at the first failure: later steps build on earlier ones. Steps already
// done are left alone, which makes a rerun resume where a run stopped.
func (r Runner) Init(ctx context.Context, steps []Step) ([]Result, error) {
	var results []Result
	for _, s := range steps {
		res, err := r.initOne(ctx, s)
		results = append(results, r.report(res))
		if err != nil {
			return results, fmt.Errorf("%s: %w", s.Name(), err)
		}
	}
	return results, nil
}

func (r Runner) initOne(ctx context.Context, s Step) (Result, error) {
	name := s.Name()
	st, err := s.Check(ctx)
	if err != nil {
		return failed(name, err), err
	}
	switch {
	case st.Skip:
		return Result{Step: name, Outcome: OutcomeSkipped, Message: st.Summary}, nil
	case st.Done:
		return Result{Step: name, Outcome: OutcomeAlready, Message: st.Summary}, nil
	}
	plan, err := s.Plan(ctx)
	if err != nil {
		return failed(name, err), err
	}
	if r.DryRun == Client {
		return Result{Step: name, Outcome: OutcomePlanned, Message: plan.Summary, Diff: plan.Diff}, nil
	}
	if r.DryRun == Write && r.Confirm != nil {
		ok, err := r.Confirm(name, plan)
		if err != nil {
			return failed(name, err), err
		}
		if !ok {
			return Result{Step: name, Outcome: OutcomeDeclined, Message: plan.Summary}, ErrDeclined
		}
	}
	if err := s.Apply(ctx, r.DryRun); err != nil {
		return failed(name, err), err
	}
	if r.DryRun == Server {
		return Result{Step: name, Outcome: OutcomePlanned, Message: plan.Summary + " (server dry run)", Diff: plan.Diff}, nil
	}
	if err := s.Verify(ctx); err != nil {
		return failed(name, err), err
	}
	return Result{Step: name, Outcome: OutcomeDone, Message: plan.Summary, Diff: plan.Diff}, nil
}

// Status runs Check for every step; a failing check does not stop the
// others.
func (r Runner) Status(ctx context.Context, steps []Step) []Result {
	var results []Result
	for _, s := range steps {
		st, err := s.Check(ctx)
		var res Result
		switch {
		case err != nil:
			res = failed(s.Name(), err)
		case st.Skip:
			res = Result{Step: s.Name(), Outcome: OutcomeSkipped, Message: st.Summary}
		case st.Done:
			res = Result{Step: s.Name(), Outcome: OutcomeAlready, Message: st.Summary}
		default:
			res = Result{Step: s.Name(), Outcome: OutcomePlanned, Message: st.Summary}
		}
		results = append(results, r.report(res))
	}
	return results
}

// UndoPlanner is a Step that can say what its Undo would change, for a
// client-side dry run of uninstall. An empty summary means nothing.
type UndoPlanner interface {
	UndoPlan(ctx context.Context) (string, error)
}

// Undo runs each step's Undo in reverse order, and goes on past failures
// so that as much as possible is taken back; it returns them all. A client
// dry run only asks each step what it would undo.
func (r Runner) Undo(ctx context.Context, steps []Step) ([]Result, error) {
	var results []Result
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		if r.DryRun == Client {
			p, ok := s.(UndoPlanner)
			if !ok {
				continue
			}
			sum, err := p.UndoPlan(ctx)
			switch {
			case err != nil:
				results = append(results, r.report(failed(s.Name(), err)))
				errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
			case sum == "":
				results = append(results, r.report(Result{Step: s.Name(), Outcome: OutcomeAlready, Message: "nothing to undo"}))
			default:
				results = append(results, r.report(Result{Step: s.Name(), Outcome: OutcomePlanned, Message: sum}))
			}
			continue
		}
		if err := s.Undo(ctx, r.DryRun); err != nil {
			results = append(results, r.report(failed(s.Name(), err)))
			errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
			continue
		}
		msg := "undone"
		if r.DryRun == Server {
			msg = "undone (server dry run)"
		}
		results = append(results, r.report(Result{Step: s.Name(), Outcome: OutcomeDone, Message: msg}))
	}
	return results, errors.Join(errs...)
}
