package announcer

import (
	"net/netip"
	"sync"
	"testing"
)

// A run loop starved while claims flood in must still learn of every
// address withdrawn: the old queue of 64 dropped the rest, and the
// speaker then took them back as if nothing had claimed them.
func TestClaimQueueKeepsEveryAddressWhileNobodyTakes(t *testing.T) {
	q := newClaimQueue()
	const addrs, senders, rounds = 300, 8, 5
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}) }
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				for i := range addrs {
					q.add(claimed{ip: ip(i), iface: "eth0", yield: []string{"node1", "node2"}[s%2]})
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-q.ready:
	default:
		t.Fatal("no signal for the queued claims")
	}
	select {
	case <-q.ready:
		t.Fatal("a second signal: the run loop would reconcile once per claim")
	default:
	}
	got := q.take(nil)
	if len(got) != addrs {
		t.Fatalf("took %d claims, want one for each of %d addresses", len(got), addrs)
	}
	seen := map[netip.Addr]bool{}
	for _, c := range got {
		if seen[c.ip] {
			t.Fatalf("%s taken twice", c.ip)
		}
		seen[c.ip] = true
	}
	if again := q.take(got); len(again) != 0 {
		t.Fatalf("take after take returned %d claims, want none", len(again))
	}
}

// The first claim on an address is the one that withdrew it, and claims
// come out in the order they came.
func TestClaimQueueKeepsTheFirstClaimInOrder(t *testing.T) {
	q := newClaimQueue()
	a, b := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")
	q.add(claimed{ip: b, iface: "eth0", yield: "node2"})
	q.add(claimed{ip: a, iface: "eth0"})
	q.add(claimed{ip: b, iface: "eth0"}) // a later reader's view of the same claim
	got := q.take(nil)
	want := []claimed{{ip: b, iface: "eth0", yield: "node2"}, {ip: a, iface: "eth0"}}
	if len(got) != len(want) {
		t.Fatalf("took %v, want %v", got, want)
	}
	for i := range want {
		if got[i].ip != want[i].ip || got[i].yield != want[i].yield {
			t.Errorf("claim %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// Once taken, a new claim on the same address is queued and signalled.
	<-q.ready
	q.add(claimed{ip: b, iface: "eth0"})
	select {
	case <-q.ready:
	default:
		t.Fatal("no signal for a claim made after take")
	}
	if got := q.take(nil); len(got) != 1 || got[0].yield != "" {
		t.Fatalf("took %+v, want the new claim alone", got)
	}
}
