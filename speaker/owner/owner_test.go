package owner

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestPickIsStableAndOrderFree(t *testing.T) {
	ip := netip.MustParseAddr("198.18.0.100")
	a := Pick(ip, []string{"node-a", "node-b", "node-c"})
	b := Pick(ip, []string{"node-c", "node-a", "node-b"})
	if a == "" || a != b {
		t.Fatalf("order changed the owner: %q vs %q", a, b)
	}
	if Pick(ip, nil) != "" {
		t.Fatal("owner without candidates")
	}
}

func TestPickMovesOnlyTheLeaversAddresses(t *testing.T) {
	all := []string{"node-a", "node-b", "node-c"}
	without := []string{"node-a", "node-c"}
	counts := map[string]int{}
	base := netip.MustParseAddr("198.18.0.0")
	ip := base
	for range 3000 {
		ip = ip.Next()
		before := Pick(ip, all)
		after := Pick(ip, without)
		counts[before]++
		if before != "node-b" && before != after {
			t.Fatalf("%s moved from %s to %s though %s stayed", ip, before, after, before)
		}
	}
	for _, n := range all {
		if c := counts[n]; c < 800 || c > 1200 {
			t.Errorf("%s owns %d of 3000 addresses; want about a third (%v)", n, c, fmt.Sprint(counts))
		}
	}
}
