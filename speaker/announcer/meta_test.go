package announcer

import (
	"fmt"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	m := encodeMeta([]string{"lan2", "dmz"}, nil, 512)
	for pool, want := range map[string]bool{"lan2": false, "dmz": false, "main": true} {
		if got := metaServes(m, poolHash(pool)); got != want {
			t.Errorf("%s: serves %v, want %v", pool, got, want)
		}
	}
	// A member that has not yet said what it can serve serves nothing.
	if metaServes(nil, poolHash("main")) {
		t.Error("a member without meta counts as serving a pool")
	}
	if metaServes([]byte{metaVersion + 1}, poolHash("main")) {
		t.Error("a member with meta of another version counts as serving a pool")
	}
	if !metaServes(encodeMeta(nil, nil, 512), poolHash("main")) {
		t.Error("a member that can serve every pool serves none")
	}
}

func TestMetaStaysWithinTheLimit(t *testing.T) {
	var many []string
	for i := range 500 {
		many = append(many, fmt.Sprintf("pool-%d", i))
	}
	m := encodeMeta(many, []string{"node1"}, 512)
	if len(m) > 512 {
		t.Fatalf("meta of %d bytes", len(m))
	}
	down := 0
	for _, p := range many {
		if !metaServes(m, poolHash(p)) {
			down++
		}
	}
	if down != 127 {
		t.Fatalf("%d pools marked down, want the 127 that fit", down)
	}
}

func TestMetaCarriesHeldDownMembers(t *testing.T) {
	m := encodeMeta([]string{"lan2"}, []string{"node2", "node3"}, 512)
	for node, want := range map[string]bool{"node2": true, "node3": true, "node1": false, "lan2": false} {
		if got := metaDamps(m, node); got != want {
			t.Errorf("%s: held down %v, want %v", node, got, want)
		}
	}
	// The held-down members are no pools: a pool of the same name as a
	// member is still served.
	if !metaServes(m, poolHash("node2")) {
		t.Error("a held-down member's name reads as an unservable pool")
	}
	if metaServes(m, poolHash("lan2")) {
		t.Error("the unservable pool before the mark is lost")
	}
	if metaDamps(encodeMeta([]string{"node2"}, nil, 512), "node2") {
		t.Error("an unservable pool reads as a held-down member")
	}
}
