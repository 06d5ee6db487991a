package members

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func node(name string) *memberlist.Node {
	return &memberlist.Node{Name: name, Addr: net.ParseIP("198.18.0.11"), Port: 7947}
}

// A member's word that it leaves makes its departure a leave, whether it
// comes before gossip finds it gone or, within leaveLate, after: a peer
// that suspected it declares it dead in its own name, which memberlist
// passes on as a failure. Only a failure counts towards a hold-down.
func TestLeaveWordMakesADepartureALeave(t *testing.T) {
	for _, tc := range []struct {
		name      string
		wordFirst bool
		wordAfter time.Duration // since the departure, when the word comes after
		wantLeft  bool
	}{
		{"word before the departure", true, 0, true},
		{"word just after the departure", false, 0, true},
		{"word long after the departure", false, leaveLate + time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Members{log: slog.New(slog.DiscardHandler), name: "node2"}
			m.NotifyJoin(node("node1"))
			changed := m.Subscribe()
			if tc.wordFirst {
				m.NotifyMsg([]byte(leavingPrefix + "node1"))
			}
			m.NotifyLeave(node("node1"))
			<-changed
			if !tc.wordFirst {
				// As if the departure were that long ago.
				m.mu.Lock()
				d := m.departed["node1"]
				d.At = d.At.Add(-tc.wordAfter)
				m.departed["node1"] = d
				if f := m.failures["node1"]; len(f) > 0 {
					f[len(f)-1] = d.At
				}
				m.mu.Unlock()
				m.NotifyMsg([]byte(leavingPrefix + "node1"))
			}
			dep, ok := m.Departed("node1")
			if !ok {
				t.Fatal("node1 is not departed")
			}
			if dep.Left != tc.wantLeft {
				t.Errorf("left = %v, want %v", dep.Left, tc.wantLeft)
			}
			failures, _ := m.Flaps("node1")
			if want := map[bool]int{true: 0, false: 1}[tc.wantLeft]; len(failures) != want {
				t.Errorf("%d failures counted, want %d", len(failures), want)
			}
			if tc.wantLeft && !tc.wordFirst {
				select {
				case <-changed:
				default:
					t.Error("a departure made a leave told no subscriber")
				}
			}
		})
	}
}

// The word of a member that is live again changes nothing: it left and
// came back, or the word is stale.
func TestLeaveWordOfALiveMemberChangesNothing(t *testing.T) {
	m := &Members{log: slog.New(slog.DiscardHandler), name: "node2"}
	m.NotifyJoin(node("node1"))
	m.NotifyLeave(node("node1"))
	m.NotifyJoin(node("node1"))
	m.NotifyMsg([]byte(leavingPrefix + "node1"))
	if _, gone := m.Departed("node1"); gone {
		t.Error("node1 is live, yet departed")
	}
	if failures, _ := m.Flaps("node1"); len(failures) != 1 {
		t.Errorf("%d failures counted, want the 1 before it came back", len(failures))
	}
}
