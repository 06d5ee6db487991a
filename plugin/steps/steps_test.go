package steps

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// fake records what the runner asked of it.
type fake struct {
	name               string
	state              State
	checkErr, applyErr error
	verifyErr, undoErr error
	calls              *[]string
	applied            bool
}

func (f *fake) Name() string { return f.name }
func (f *fake) Check(context.Context) (State, error) {
	*f.calls = append(*f.calls, f.name+".check")
	if f.applied {
		return State{Done: true, Summary: "done"}, nil
	}
	return f.state, f.checkErr
}
func (f *fake) Plan(context.Context) (Plan, error) {
	*f.calls = append(*f.calls, f.name+".plan")
	return Plan{Summary: "change " + f.name, Diff: "-a\n+b"}, nil
}
func (f *fake) Apply(_ context.Context, d DryRun) error {
	*f.calls = append(*f.calls, f.name+".apply")
	if f.applyErr == nil && d == Write {
		f.applied = true
	}
	return f.applyErr
}
func (f *fake) Verify(context.Context) error {
	*f.calls = append(*f.calls, f.name+".verify")
	return f.verifyErr
}
func (f *fake) Undo(context.Context, DryRun) error {
	*f.calls = append(*f.calls, f.name+".undo")
	return f.undoErr
}

func three(calls *[]string) (*fake, *fake, *fake) {
	return &fake{name: "a", calls: calls}, &fake{name: "b", calls: calls, state: State{Done: true, Summary: "b is so"}},
		&fake{name: "c", calls: calls, state: State{Skip: true, Summary: "not here"}}
}

func outcomes(rs []Result) []string {
	var o []string
	for _, r := range rs {
		o = append(o, r.Step+":"+r.Outcome)
	}
	return o
}

func TestInitRunsPendingStepsAndResumes(t *testing.T) {
	var calls []string
	a, b, c := three(&calls)
	var reported []Result
	r := Runner{Report: func(res Result) { reported = append(reported, res) }}
	res, err := r.Init(context.Background(), []Step{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(res); !reflect.DeepEqual(got, []string{"a:done", "b:already", "c:skipped"}) {
		t.Fatalf("outcomes %v", got)
	}
	if !reflect.DeepEqual(reported, res) {
		t.Fatal("Report did not receive every result")
	}
	want := []string{"a.check", "a.plan", "a.apply", "a.verify", "b.check", "c.check"}
	if !reflect.DeepEqual(calls, want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	// A second run finds everything done and applies nothing.
	calls = nil
	res, err = r.Init(context.Background(), []Step{a, b, c})
	if err != nil || !reflect.DeepEqual(outcomes(res), []string{"a:already", "b:already", "c:skipped"}) {
		t.Fatalf("rerun: %v %v", outcomes(res), err)
	}
	if !reflect.DeepEqual(calls, []string{"a.check", "b.check", "c.check"}) {
		t.Fatalf("rerun calls %v", calls)
	}
}

func TestInitStopsAtFirstFailureWithHint(t *testing.T) {
	var calls []string
	a, b, _ := three(&calls)
	a.verifyErr = &Hinted{Err: errors.New("rollout stuck: pod x on node y"), Hint: "fix it, then run kubectl porter init again"}
	b.state = State{}
	res, err := Runner{}.Init(context.Background(), []Step{a, b})
	if err == nil || len(res) != 1 || res[0].Outcome != OutcomeFailed || res[0].Hint == "" {
		t.Fatalf("results %+v, err %v", res, err)
	}
	if err.Error() != "a: rollout stuck: pod x on node y" {
		t.Fatalf("error %q", err)
	}
	for _, c := range calls {
		if c[0] == 'b' {
			t.Fatalf("step b ran after a failed: %v", calls)
		}
	}
}

func TestDryRuns(t *testing.T) {
	var calls []string
	a := &fake{name: "a", calls: &calls}
	res, err := Runner{DryRun: Client}.Init(context.Background(), []Step{a})
	if err != nil || res[0].Outcome != OutcomePlanned || res[0].Diff == "" {
		t.Fatalf("client dry run: %+v %v", res, err)
	}
	if !reflect.DeepEqual(calls, []string{"a.check", "a.plan"}) {
		t.Fatalf("client dry run called %v", calls)
	}
	calls = nil
	res, err = Runner{DryRun: Server, Confirm: func(string, Plan) (bool, error) { t.Fatal("asked during a dry run"); return false, nil }}.Init(context.Background(), []Step{a})
	if err != nil || res[0].Outcome != OutcomePlanned || res[0].Message != "change a (server dry run)" {
		t.Fatalf("server dry run: %+v %v", res, err)
	}
	if !reflect.DeepEqual(calls, []string{"a.check", "a.plan", "a.apply"}) || a.applied {
		t.Fatalf("server dry run called %v, applied %v", calls, a.applied)
	}
}

func TestDeclineStops(t *testing.T) {
	var calls []string
	a, b, _ := three(&calls)
	res, err := Runner{Confirm: func(string, Plan) (bool, error) { return false, nil }}.Init(context.Background(), []Step{a, b})
	if !errors.Is(err, ErrDeclined) || len(res) != 1 || res[0].Outcome != OutcomeDeclined || a.applied {
		t.Fatalf("decline: %+v %v", res, err)
	}
}

func TestStatusChecksEverything(t *testing.T) {
	var calls []string
	a, b, c := three(&calls)
	a.checkErr = errors.New("cannot read")
	res := Runner{}.Status(context.Background(), []Step{a, b, c})
	if !reflect.DeepEqual(outcomes(res), []string{"a:failed", "b:already", "c:skipped"}) {
		t.Fatalf("status %v", outcomes(res))
	}
}

func TestUndoRunsInReverseAndContinues(t *testing.T) {
	var calls []string
	a, b, c := three(&calls)
	b.undoErr = errors.New("boom")
	res, err := Runner{}.Undo(context.Background(), []Step{a, b, c})
	if !reflect.DeepEqual(calls, []string{"c.undo", "b.undo", "a.undo"}) {
		t.Fatalf("undo order %v", calls)
	}
	if err == nil || !reflect.DeepEqual(outcomes(res), []string{"c:done", "b:failed", "a:done"}) {
		t.Fatalf("undo %v %v", outcomes(res), err)
	}
}

func TestParseDryRun(t *testing.T) {
	for in, want := range map[string]DryRun{"": Write, "none": Write, "client": Client, "server": Server} {
		if got, err := ParseDryRun(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParseDryRun("yes"); err == nil {
		t.Error("want an error")
	}
}
