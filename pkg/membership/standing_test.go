package membership

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func set(names string) map[string]bool {
	out := map[string]bool{}
	for n := range strings.FieldsSeq(names) {
		out[n] = true
	}
	return out
}

func TestQuorumOf(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		expected, visible, gone string
		ok                      bool
		have, need              int
		missing                 string
	}{
		{"one node alone", "a", "a", "", true, 1, 1, ""},
		{"one node before its pod is ready", "", "a", "", true, 1, 1, ""},
		{"all three", "a b c", "a b c", "", true, 3, 2, ""},
		{"two of three", "a b c", "a b", "", true, 2, 2, "c"},
		{"cut off from two", "a b c", "a", "", false, 1, 2, "b c"},
		{"two nodes, peer cut off", "a b", "a", "", false, 1, 2, "b"},
		{"two nodes, peer dead on the wire", "a b", "a", "b", true, 1, 1, ""},
		{"gone yet visible still counts", "a b", "a b", "b", true, 2, 2, ""},
		{"four nodes split in halves", "a b c d", "a b", "", false, 2, 3, "c d"},
		{"four nodes, the other half dead", "a b c d", "a b", "c d", true, 2, 2, ""},
		{"four nodes, one of the other half dead", "a b c d", "a b", "d", true, 2, 2, "c"},
		{"five nodes, minority of two", "a b c d e", "a b", "", false, 2, 3, "c d e"},
		{"a visible member the API does not list yet", "a b", "a b c", "", true, 3, 2, ""},
		{"self not yet ready in the API", "b c", "a", "", false, 1, 2, "b c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := QuorumOf("a", set(tc.expected), set(tc.visible), set(tc.gone))
			if q.OK != tc.ok || q.Have != tc.have || q.Need != tc.need || !slices.Equal(q.Missing, strings.Fields(tc.missing)) {
				t.Errorf("QuorumOf = %+v, want ok=%v have=%d need=%d missing=%q", q, tc.ok, tc.have, tc.need, tc.missing)
			}
		})
	}
}

func TestDampingUntil(t *testing.T) {
	d := Damping{Base: 5 * time.Second, Max: time.Minute, Forget: 10 * time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name     string
		damping  Damping
		failures []time.Time
		returned time.Time
		want     time.Duration // after returned; 0 means not held
	}{
		{"never failed", d, nil, at(100), 0},
		{"not yet returned", d, []time.Time{at(10)}, time.Time{}, 0},
		{"first failure", d, []time.Time{at(90)}, at(100), 5 * time.Second},
		{"second failure doubles", d, []time.Time{at(50), at(90)}, at(100), 10 * time.Second},
		{"third failure doubles again", d, []time.Time{at(30), at(50), at(90)}, at(100), 20 * time.Second},
		{"capped", d, []time.Time{at(1), at(2), at(3), at(4), at(5), at(6), at(7), at(8)}, at(100), time.Minute},
		{"old failures are forgotten", d, []time.Time{at(-1000), at(90)}, at(100), 5 * time.Second},
		{"all failures forgotten", d, []time.Time{at(-1000)}, at(100), 0},
		{"a failure after the return is not counted", d, []time.Time{at(90), at(200)}, at(100), 5 * time.Second},
		{"off", Damping{}, []time.Time{at(90)}, at(100), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.damping.Until(tc.failures, tc.returned)
			var hold time.Duration
			if !got.IsZero() {
				hold = got.Sub(tc.returned)
			}
			if hold != tc.want {
				t.Errorf("hold-down %v, want %v", hold, tc.want)
			}
		})
	}
}
