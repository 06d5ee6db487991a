package dataplane

import (
	"context"
	"net/netip"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/test/backend"
	"github.com/porterlb/porter/test/netlab"
)

// v6Pool is an IPv6 pool on the lab's IPv6 subnet; Services name it.
func v6Pool(t *testing.T) {
	t.Helper()
	createPool(t, "v6", "2001:db8:18::100-2001:db8:18::10f", func(e *v1alpha2.Eip) { e.Annotations = nil })
}

func notDefaultService(pool string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Annotations[lbservice.PoolAnnotation] = pool }
}

// An IPv6 address is answered by exactly one node, by NDP, and the
// client's kernel, resolving it by its own neighbour discovery, is served.
// When the owner's speaker is killed, another node takes the address;
// when the owner's cable is pulled, too.
func TestIPv6ServiceAnsweredByOneNodeAndFailsOver(t *testing.T) {
	v6Pool(t)
	sp := startSpeakersAtRest(t)
	createService(t, "v6", notDefaultService("v6"))
	ip := waitIP(t, "v6")
	if !ip.Is6() || !netlab.LAN1v6.Contains(ip) {
		t.Fatalf("got %s, want an address of the IPv6 pool", ip)
	}
	first := ownerOf(t, "v6", ip)
	t.Logf("%s is announced by %s", ip, first)

	p := backend.StartProber(env.Net.Client, ip, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	at := time.Now()
	sp[first].signal(t, syscall.SIGKILL)
	second := servedBy(t, ip, 15*time.Second, func(n string) bool { return n != first })
	took := time.Since(at)
	time.Sleep(300 * time.Millisecond)
	gap, failed := backend.Outage(p.Stop(), at)
	t.Logf("SIGKILL of the speaker on %s: %s served the client after %s; longest gap %s, %d failed", first, second, took.Round(time.Millisecond), gap.Round(time.Millisecond), failed)
	if macs := whoHas(t, ip, 300*time.Millisecond); len(macs) != 1 || nodeByMAC(macs[0]) != second {
		t.Fatalf("NDP answers from %v, want only %s", macs, second)
	}

	// The killed speaker back, as its container would be: a cut cable
	// leaves the two others a majority.
	sp[first] = startSpeaker(t, nodeByName(first))
	waitMembers(t, 3)
	// Back from a failure, it is held down; when that ends, the address
	// may move to it, as designed. The cable is pulled after.
	waitSettled(t)
	n := nodeByName(second)
	p = backend.StartProber(env.Net.Client, ip, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	at = time.Now()
	if err := n.SetCable(context.Background(), netlab.NIC1, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.SetCable(context.Background(), netlab.NIC1, true) })
	third := servedBy(t, ip, 15*time.Second, func(s string) bool { return s != second })
	time.Sleep(300 * time.Millisecond)
	gap, failed = backend.Outage(p.Stop(), at)
	t.Logf("cable of %s pulled: %s took over; the client saw an outage of %s (%d failed probes)", second, third, gap.Round(time.Millisecond), failed)
	if macs := whoHas(t, ip, 300*time.Millisecond); len(macs) != 1 || nodeByMAC(macs[0]) != third {
		t.Fatalf("NDP answers from %v, want only %s", macs, third)
	}
}

// Duplicate address detection finds a host on the LAN that holds an IPv6
// address of the pool: no node answers for it, and the conflict is told.
func TestIPv6DuplicateAddressDetectionFindsAHolder(t *testing.T) {
	v6Pool(t)
	startSpeakers(t)
	taken := netip.MustParseAddr("2001:db8:18::107")
	client := env.Net.Client
	if out, err := client.Run(context.Background(), "ip", "addr", "add", taken.String()+"/64", "dev", netlab.NIC1, "nodad"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	t.Cleanup(func() {
		_, _ = client.Run(context.Background(), "ip", "addr", "del", taken.String()+"/64", "dev", netlab.NIC1)
	})
	createService(t, "v6clash", notDefaultService("v6"), func(s *corev1.Service) { s.Annotations[lbservice.IPAnnotation] = taken.String() })
	ip := waitIP(t, "v6clash")
	waitEvent(t, "v6clash", "AddressConflict", client.MAC.String())
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for _, mac := range whoHas(t, ip, 200*time.Millisecond) {
			if mac != client.MAC.String() {
				t.Fatalf("%s, in use by the client, answered by %s", ip, nodeByMAC(mac))
			}
		}
	}
}
