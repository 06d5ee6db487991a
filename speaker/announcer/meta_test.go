package announcer

import (
	"fmt"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	m := encodeMeta([]string{"lan2", "dmz"}, 512)
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
	if !metaServes(encodeMeta(nil, 512), poolHash("main")) {
		t.Error("a member that can serve every pool serves none")
	}
}

func TestMetaStaysWithinTheLimit(t *testing.T) {
	var many []string
	for i := range 500 {
		many = append(many, fmt.Sprintf("pool-%d", i))
	}
	m := encodeMeta(many, 512)
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
