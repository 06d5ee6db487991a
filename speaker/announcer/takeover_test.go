package announcer

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

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

// logged keeps the messages of the records it is handed.
type logged struct {
	slog.Handler
	msgs *[]string
}

func (logged) Enabled(context.Context, slog.Level) bool { return true }

func (l logged) Handle(_ context.Context, r slog.Record) error {
	*l.msgs = append(*l.msgs, r.Message)
	return nil
}

// An address whose probe another speaker answered is probed again only
// after handoverAgain, and said so once: the decision the answer calls for
// finds it due again at once, and the peer answers as fast as it is
// asked, which made a loop of thousands of probes a second.
func TestAddressAPeerAnswersIsNotProbedAgainAtOnce(t *testing.T) {
	var msgs []string
	a := New(Config{Node: "n1", Metrics: metrics.New(), Log: slog.New(logged{slog.DiscardHandler, &msgs})})
	a.links = &links{byName: map[string]*link{}}
	ip := netip.MustParseAddr("198.18.0.7")
	peer := net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	a.peerMACs = map[string]string{peer.String(): "n2"}
	a.owners = map[netip.Addr]string{ip: "n1"}
	for range 3 {
		a.probing[ip] = true
		a.probed(probeResult{ip: ip, iface: "porter-none", mac: peer})
		// A probe started here would open a responder on porter-none,
		// which no node has, and say so.
		a.startProbe(context.Background(), ip, Target{Iface: "porter-none"})
	}
	if a.probing[ip] || slices.Contains(msgs, "open ARP responder") {
		t.Errorf("probed again at once: %q", msgs)
	}
	if n := slices.Index(msgs, "address held by another speaker; not taking it"); n < 0 || len(msgs) != 1 {
		t.Errorf("logged %q, want the peer's answer once", msgs)
	}
	if wait := time.Until(a.peerHeld[ip]); wait <= 0 || wait > handoverAgain {
		t.Errorf("probed again in %s, want within %s", wait, handoverAgain)
	}
}

// An address is handed over, not probed, when it comes from the member
// that answered for it: named so by the last decision, or, where the last
// decisions already gave it to this node, waited for by the takeover gate.
func TestHandedOver(t *testing.T) {
	ip := netip.MustParseAddr("198.18.0.7")
	for _, tc := range []struct {
		name       string
		last, from string
		want       bool
	}{
		{"never seen held", "", "", false},
		{"held by another member", "n2", "", true},
		{"allocated before this speaker started", startedWith, "", true},
		{"held here", "n1", "", false},
		{"given here while the gate waited for another member", "n1", "n2", true},
		{"given here while the gate waited on what it started with", "n1", startedWith, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := New(Config{Node: "n1", Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)})
			if tc.last != "" {
				a.lastOwners[ip] = tc.last
			}
			if tc.from != "" {
				a.pendingFrom[ip] = tc.from
			}
			if got := a.handedOver(ip); got != tc.want {
				t.Errorf("handedOver = %v, want %v", got, tc.want)
			}
		})
	}
}
