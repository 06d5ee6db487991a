package announcer

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/porterlb/porter/speaker/responder"
)

// The takeover gate. Gossip says a member failed when it stops answering
// its peers' probes, which a dead node does, but so does a live node cut
// off from gossip alone (a firewall on the member port) and a speaker
// starved of CPU. Taking its addresses in the last two cases puts two MACs
// on one address, or moves it for nothing and breaks every connection
// through the old node. So before taking an address from a member that
// failed (not one that left, which hands over), the speaker asks the
// wire, where the kernel and the old owner's responder answer whatever
// gossip says:
//   - the old owner's MAC still answers for the address: it is alive and
//     still serving; the address stays where it is;
//   - nobody answers for the address and the old owner's node does not
//     answer ARP for its own address: the node is gone; take it at once;
//   - nobody answers for the address but the node's kernel does: its
//     speaker is dead or starved; take it only once that has lasted
//     StarvedGrace, asking again meanwhile.

// takeoverCheck is one round of asking the wire about a failed member.
type takeoverCheck struct {
	from      string
	nodeAlive bool
	answers   map[netip.Addr]net.HardwareAddr
	targets   map[netip.Addr]Target
}

// gateTakeover says whether ip, which the decision gives this node, may be
// taken now. It returns false while a check of its failed previous owner
// is due or under way.
func (a *Announcer) gateTakeover(ip netip.Addr) bool {
	if a.cfg.TakeoverCheck <= 0 {
		return true
	}
	from, pending := a.pendingFrom[ip]
	if !pending {
		prev := a.lastOwners[ip]
		if prev == "" || prev == a.cfg.Node || prev == startedWith {
			return true
		}
		dep, ok := a.cfg.Members.Departed(prev)
		if !ok || dep.Left {
			return true
		}
		from = prev
		a.pendingFrom[ip] = from
	}
	if a.checked[ip] {
		return true
	}
	a.checkDue[from] = append(a.checkDue[from], ip)
	return false
}

// forgetTakeovers drops the gate's state for addresses the decision no
// longer gives this node, or that it now announces.
func (a *Announcer) forgetTakeovers(desired map[netip.Addr]Target) {
	for ip := range a.pendingFrom {
		_, want := desired[ip]
		_, own := a.owned[ip]
		if !want || own {
			delete(a.pendingFrom, ip)
			delete(a.checked, ip)
		}
	}
}

// startChecks asks the wire about each failed member with addresses due,
// one round per member at a time.
func (a *Announcer) startChecks(ctx context.Context, targets map[netip.Addr]Target) {
	due := a.checkDue
	a.checkDue = map[string][]netip.Addr{}
	for from, ips := range due {
		if a.checking[from] {
			continue
		}
		type probe struct {
			ip netip.Addr
			r  *responder.Responder
		}
		var probes []probe
		for _, ip := range ips {
			r, err := a.responder(targets[ip].Iface)
			if err != nil {
				a.cfg.Log.Warn("open ARP responder", "interface", targets[ip].Iface, "err", err)
				continue
			}
			probes = append(probes, probe{ip, r})
		}
		// The node's own address, asked on the NIC that holds its subnet.
		var nodeIP netip.Addr
		if n, ok := a.cfg.Facts.Policy().Node(from); ok {
			nodeIP = n.InternalIP
		}
		var nodeR *responder.Responder
		if lk := a.links.onSubnetOf(nodeIP); lk != nil {
			nodeR, _ = a.responder(lk.name)
		}
		a.checking[from] = true
		pc := responder.ProbeConfig{Count: 1, Wait: a.cfg.TakeoverCheck}
		go func() {
			c := takeoverCheck{from: from, answers: map[netip.Addr]net.HardwareAddr{}, targets: map[netip.Addr]Target{}}
			for _, p := range probes {
				c.targets[p.ip] = targets[p.ip]
			}
			var mu sync.Mutex
			var wg sync.WaitGroup
			if nodeR != nil {
				wg.Go(func() {
					mac, err := nodeR.Probe(ctx, nodeIP, pc, nil)
					mu.Lock()
					// A probe that could not run says nothing: count the
					// node alive, the cautious answer.
					c.nodeAlive = mac != nil || err != nil
					mu.Unlock()
				})
			}
			for _, p := range probes {
				wg.Go(func() {
					mac, err := p.r.Probe(ctx, p.ip, pc, nil)
					if err != nil {
						return // asked again on the next round
					}
					mu.Lock()
					c.answers[p.ip] = mac
					mu.Unlock()
				})
			}
			wg.Wait()
			select {
			case a.checks <- c:
			case <-ctx.Done():
			}
		}()
	}
}

// takeChecked takes a round's answers: each address is taken, left with its
// old owner, or found in use by a host outside the cluster.
func (a *Announcer) takeChecked(c takeoverCheck) {
	delete(a.checking, c.from)
	dep, _ := a.cfg.Members.Departed(c.from)
	again := false
	for ip, mac := range c.answers {
		if a.pendingFrom[ip] != c.from {
			continue // no longer this node's to take
		}
		switch {
		case mac != nil && a.peerMACs[mac.String()] != "":
			// The old owner, or another speaker, still answers.
			a.cfg.Log.Info("not taking an address whose owner still answers for it, though gossip lost it",
				"ip", ip, "owner", c.from, "answered", a.peerMACs[mac.String()])
			a.cfg.Metrics.TakeoversHeld.Inc()
			again = true
		case mac != nil:
			t := c.targets[ip]
			a.conflict(ip, mac, t.Iface, t.Service, "probe")
		case c.nodeAlive && time.Since(dep.At) < a.cfg.StarvedGrace:
			// Its node is up and its speaker silent: dead, or starved.
			a.cfg.Metrics.TakeoversHeld.Inc()
			again = true
		default:
			a.checked[ip] = true
		}
	}
	for ip, from := range a.pendingFrom {
		if from == c.from && !a.checked[ip] {
			again = true
		}
	}
	if again {
		time.AfterFunc(checkAgain, a.poke)
	}
}

// checkAgain is how soon a held takeover is asked about again.
const checkAgain = 250 * time.Millisecond
