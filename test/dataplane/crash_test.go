package dataplane

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// moves lists, for ip, each change of the node that answers, with when.
func (s *arpSampler) moves(ip netip.Addr) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	last := ""
	for i, r := range s.rounds {
		now := "nobody"
		if macs := r[ip]; len(macs) > 0 {
			names := make([]string, len(macs))
			for j, m := range macs {
				names[j] = nodeByMAC(m)
			}
			now = strings.Join(names, "+")
		}
		if now != last {
			out = append(out, fmt.Sprintf("%s %s", s.at[i].Format("15:04:05.000"), now))
			last = now
		}
	}
	return out
}

// A speaker that crashes and is restarted at once, as a kubelet restarts
// a container, takes its addresses back itself: no other node answers for
// them meanwhile, and none moves when its hold-down ends.
func TestCrashedSpeakerRestartedAtOnceKeepsItsAddresses(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	sp := startSpeakersAtRest(t)
	createService(t, "crash")
	ip := waitIP(t, "crash")
	owner := ownerOf(t, "crash", ip)
	smp := sampleARP(t, []netip.Addr{ip}, 50*time.Millisecond)
	time.Sleep(time.Second)
	sp[owner].signal(t, syscall.SIGKILL)
	sp[owner].exited(t, 5*time.Second)
	sp[owner] = startSpeaker(t, nodeByName(owner))
	time.Sleep(15 * time.Second)
	smp.finish(t)
	moves := smp.moves(ip)
	t.Logf("who answered for %s (owner %s):\n%s", ip, owner, strings.Join(moves, "\n"))
	for _, m := range moves {
		if f := strings.Fields(m); f[1] != owner && f[1] != "nobody" {
			t.Errorf("%s answered for %s after %s's speaker crashed and came straight back", f[1], ip, owner)
		}
	}
}
