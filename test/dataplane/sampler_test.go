package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"

	"github.com/porterlb/porter/test/backend"
	"github.com/porterlb/porter/test/netlab"
)

// arpSampler asks the client's LAN, every period, who has each of a set of
// addresses, with one raw socket, and keeps every round's answers.
type arpSampler struct {
	stop chan struct{}
	done chan error
	mu   sync.Mutex
	// rounds are, per round, the MACs that answered for each address.
	rounds []map[netip.Addr][]string
	at     []time.Time
}

func sampleARP(t *testing.T, ips []netip.Addr, period time.Duration) *arpSampler {
	t.Helper()
	s := &arpSampler{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		s.done <- backend.OnARP(env.Net.Client, netlab.NIC1, func(c *arp.Client, ifi *net.Interface) error {
			for {
				select {
				case <-s.stop:
					return nil
				default:
				}
				start := time.Now()
				round := map[netip.Addr][]string{}
				for _, ip := range ips {
					if err := c.Request(ip); err != nil {
						return fmt.Errorf("who-has %s: %w", ip, err)
					}
				}
				err := backend.ReadARP(c, start.Add(period), func(p *arp.Packet) {
					// Replies to this sampler only: a new owner's
					// gratuitous ARP reply, broadcast in the same
					// round as the old owner's answer, is a handover
					// announced, not a second node answering.
					if p.Operation != arp.OperationReply || !slices.Contains(ips, p.SenderIP) || !slices.Equal(p.TargetHardwareAddr, ifi.HardwareAddr) {
						return
					}
					if m := p.SenderHardwareAddr.String(); !slices.Contains(round[p.SenderIP], m) {
						round[p.SenderIP] = append(round[p.SenderIP], m)
					}
				})
				if err != nil {
					return err
				}
				s.mu.Lock()
				s.rounds = append(s.rounds, round)
				s.at = append(s.at, start)
				s.mu.Unlock()
			}
		})
	}()
	t.Cleanup(func() { s.finish(t) })
	return s
}

// finish stops the sampler and fails t on a socket error.
func (s *arpSampler) finish(t *testing.T) {
	t.Helper()
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	if err := <-s.done; err != nil {
		t.Fatalf("ARP sampler: %v", err)
	}
}

// double is an address two or more MACs answered for in one round.
type double struct {
	at    time.Time
	ip    netip.Addr
	nodes []string
}

func (d double) String() string {
	return fmt.Sprintf("%s answered by %v at %s", d.ip, d.nodes, d.at.Format("15:04:05.000"))
}

// doubles are the rounds in which two or more MACs answered for one
// address.
func (s *arpSampler) doubles() []double {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []double
	for i, r := range s.rounds {
		for ip, macs := range r {
			if len(macs) > 1 {
				names := make([]string, len(macs))
				for j, m := range macs {
					names[j] = nodeByMAC(m)
				}
				out = append(out, double{at: s.at[i], ip: ip, nodes: names})
			}
		}
	}
	return out
}

// count is how many rounds there were.
func (s *arpSampler) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rounds)
}
