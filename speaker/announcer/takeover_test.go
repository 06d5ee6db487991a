package announcer

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/porterlb/porter/speaker/metrics"
)

// A round asks about a bounded number of addresses: all of a few, the
// first maxCheckRound of many, and a sample of a member held down.
func TestCheckRoundIsBounded(t *testing.T) {
	ips := func(n int) []netip.Addr {
		out := make([]netip.Addr, n)
		for i := range out {
			out[i] = netip.AddrFrom4([4]byte{198, 18, byte(64 + i/256), byte(i)})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		due      int
		heldDown bool
		want     int
	}{
		{"a few", 3, false, 3},
		{"exactly a round", maxCheckRound, false, maxCheckRound},
		{"10,000 after a restart", 10000, false, maxCheckRound},
		{"held down, many", 10000, true, heldDownSample},
		{"held down, fewer than the sample", 2, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			due := ips(tc.due)
			got := checkRound(due, tc.heldDown)
			if len(got) != tc.want {
				t.Fatalf("a round asks about %d of %d, want %d", len(got), tc.due, tc.want)
			}
			for i := range got {
				if got[i] != due[i] {
					t.Fatalf("address %d of the round is %s, want %s: a round takes the first that are due", i, got[i], due[i])
				}
			}
		})
	}
}

// A first decision made after the reclaim window has ended (the speaker
// waited up to joinWait for its peers) records what it started with and
// reclaims nothing; it used to write to the window's dropped map.
func TestFirstDecisionAfterTheReclaimWindow(t *testing.T) {
	a := New(Config{Node: "n1", Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)})
	a.reclaim = nil // as reconcile leaves it once reclaimFor has passed
	ip := netip.MustParseAddr("198.18.0.7")
	a.apply(context.Background(), Decision{Announce: map[netip.Addr]Target{}, Owners: map[netip.Addr]string{ip: "n2"}})
	if !a.decided || a.lastOwners[ip] != "n2" || a.reclaim != nil {
		t.Errorf("after the first decision: decided %v, last owner %q, reclaim %v", a.decided, a.lastOwners[ip], a.reclaim)
	}
}
