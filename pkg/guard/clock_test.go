package guard

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func plan(name, rv string, timeout time.Duration, rollingBack bool) Armed {
	return Armed{Name: name, ResourceVersion: rv, Plan: Plan{Timeout: metav1.Duration{Duration: timeout}, RollingBack: rollingBack}}
}

func names(as []Armed) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Name)
	}
	return out
}

func TestClockTimesEachVersionFromItsFirstSighting(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type look struct {
		after time.Duration
		plans []Armed
		want  []string
	}
	for _, tc := range []struct {
		name  string
		looks []look
	}{
		{"a new plan is not due at once", []look{
			{0, []Armed{plan("a", "1", 30*time.Second, false)}, nil},
		}},
		{"due at its timeout, not before", []look{
			{0, []Armed{plan("a", "1", 30*time.Second, false)}, nil},
			{29 * time.Second, []Armed{plan("a", "1", 30*time.Second, false)}, nil},
			{30 * time.Second, []Armed{plan("a", "1", 30*time.Second, false)}, []string{"a"}},
		}},
		{"a new version starts afresh", []look{
			{0, []Armed{plan("a", "1", 30*time.Second, false)}, nil},
			{20 * time.Second, []Armed{plan("a", "2", 30*time.Second, false)}, nil},
			{40 * time.Second, []Armed{plan("a", "2", 30*time.Second, false)}, nil},
			{50 * time.Second, []Armed{plan("a", "2", 30*time.Second, false)}, []string{"a"}},
		}},
		{"a timeout under the minimum is the minimum", []look{
			{0, []Armed{plan("a", "1", time.Second, false)}, nil},
			{MinTimeout - time.Second, []Armed{plan("a", "1", time.Second, false)}, nil},
			{MinTimeout, []Armed{plan("a", "1", time.Second, false)}, []string{"a"}},
		}},
		{"no timeout is the default", []look{
			{0, []Armed{plan("a", "1", 0, false)}, nil},
			{DefaultTimeout - time.Second, []Armed{plan("a", "1", 0, false)}, nil},
			{DefaultTimeout, []Armed{plan("a", "1", 0, false)}, []string{"a"}},
		}},
		{"a plan taken over is finished at once", []look{
			{0, []Armed{plan("a", "1", 30*time.Second, true)}, []string{"a"}},
		}},
		{"plans are timed apart", []look{
			{0, []Armed{plan("a", "1", 30*time.Second, false)}, nil},
			{10 * time.Second, []Armed{plan("a", "1", 30*time.Second, false), plan("b", "5", 30*time.Second, false)}, nil},
			{30 * time.Second, []Armed{plan("a", "1", 30*time.Second, false), plan("b", "5", 30*time.Second, false)}, []string{"a"}},
			{40 * time.Second, []Armed{plan("a", "1", 30*time.Second, false), plan("b", "5", 30*time.Second, false)}, []string{"a", "b"}},
		}},
		{"a plan that comes back under its old name is new", []look{
			{0, []Armed{plan("a", "1", 30*time.Second, false)}, nil},
			{10 * time.Second, nil, nil},
			{35 * time.Second, []Armed{plan("a", "1", 30*time.Second, false)}, nil},
			{65 * time.Second, []Armed{plan("a", "1", 30*time.Second, false)}, []string{"a"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Clock
			for i, l := range tc.looks {
				if got := names(c.Due(l.plans, t0.Add(l.after))); !slices.Equal(got, l.want) {
					t.Errorf("look %d at +%s: due %v, want %v", i, l.after, got, l.want)
				}
			}
		})
	}
}

func TestCheckTimeout(t *testing.T) {
	for _, tc := range []struct {
		d  time.Duration
		ok bool
	}{
		{-time.Second, false},
		{0, false},
		{3 * time.Second, false},
		{MinTimeout - time.Millisecond, false},
		{MinTimeout, true},
		{2 * time.Minute, true},
	} {
		if err := CheckTimeout(tc.d); (err == nil) != tc.ok {
			t.Errorf("CheckTimeout(%s) = %v, want ok=%v", tc.d, err, tc.ok)
		}
	}
}
