package speaker

import (
	"testing"
	"time"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

func TestOnlyAnAddressListChangeWaits(t *testing.T) {
	base := func(n int) *v1alpha1.SpeakerStatus {
		sp := &v1alpha1.SpeakerStatus{MemberAddress: "198.18.0.11:7947", Members: []string{"node1", "node2"}, Announcing: n}
		for range n {
			sp.Addresses = append(sp.Addresses, v1alpha1.AnnouncedAddress{Address: "198.18.0.1", Interface: "eth0"})
		}
		return sp
	}
	moved := base(3)
	moved.Members = []string{"node1"}
	for _, tc := range []struct {
		name string
		a, b *v1alpha1.SpeakerStatus
		want bool
	}{
		{"more addresses", base(3), base(4), true},
		{"members changed too", base(4), moved, false},
		{"first report", nil, base(1), false},
	} {
		if got := addressesOnly(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: addressesOnly = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := listWait(base(10000)); got != 10*time.Second {
		t.Errorf("10,000 addresses wait %s, want 10s", got)
	}
	if got := listWait(base(2)); got > 10*time.Millisecond {
		t.Errorf("a short list waits %s: a small cluster must see changes at once", got)
	}
	i := &inventory{every: 10 * time.Second, lastSpeaker: base(5000), publishedAt: time.Now(), pending: true}
	if w := i.wait(); w > 5*time.Second || w < 4*time.Second {
		t.Errorf("a pending list of 5,000 wakes the loop after %s, want about 5s", w)
	}
	i.pending = false
	if w := i.wait(); w != 10*time.Second {
		t.Errorf("nothing pending: the loop sleeps %s, want its period", w)
	}
}
