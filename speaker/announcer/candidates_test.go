package announcer

import (
	"maps"
	"slices"
	"testing"

	"github.com/porterlb/porter/pkg/addrpolicy"
)

// A speaker's own pools come from the meta it publishes in this round;
// its peers' come from gossip. Before its first publication, gossip hands
// a speaker empty meta for itself, which must not keep it out of its own
// first decision.
func TestCandidatesReadOwnMetaFromThisRound(t *testing.T) {
	s := cluster()
	s.Pools = append(s.Pools, pool("side", "198.18.1.0/24", 1))
	p := addrpolicy.New(s)
	serves := encodeMeta(nil, nil, 512)
	notSide := encodeMeta([]string{"side"}, nil, 512)
	for _, tc := range []struct {
		name string
		live map[string][]byte
		own  []byte
		want map[string][]string
	}{
		{
			name: "first decision: gossip has no meta for this speaker yet",
			live: map[string][]byte{"n1": nil, "n2": serves},
			own:  serves,
			want: map[string][]string{"main": {"n1", "n2"}, "side": {"n1", "n2"}},
		},
		{
			name: "gossip's copy of this speaker is stale",
			live: map[string][]byte{"n1": serves, "n2": serves},
			own:  notSide,
			want: map[string][]string{"main": {"n1", "n2"}, "side": {"n2"}},
		},
		{
			name: "a peer without meta yet serves nothing",
			live: map[string][]byte{"n1": serves, "n2": nil},
			own:  serves,
			want: map[string][]string{"main": {"n1"}, "side": {"n1"}},
		},
		{
			name: "a peer that cannot serve a pool",
			live: map[string][]byte{"n1": serves, "n3": notSide},
			own:  serves,
			want: map[string][]string{"main": {"n1", "n3"}, "side": {"n1"}},
		},
		{
			name: "this speaker is not live: own meta adds nobody",
			live: map[string][]byte{"n2": serves},
			own:  serves,
			want: map[string][]string{"main": {"n2"}, "side": {"n2"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := candidates(p, tc.live, "n1", tc.own)
			for _, names := range got {
				slices.Sort(names)
			}
			if !maps.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("candidates = %v, want %v", got, tc.want)
			}
		})
	}
}
