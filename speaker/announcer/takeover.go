package announcer

import (
	"context"
	"errors"
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
//     speaker is dead or starved; take it only once it has been silent
//     for StarvedGrace, asking again meanwhile.
//
// An address that moves from a live member, as decisions change, is
// asked about the same way: it is taken once that member no longer
// answers, so a handover is break-before-make and never puts two MACs on
// one address. A member held down for flapping keeps what it still
// answers for, and gives up only what the new owner answers for (see
// Target.Kept).

// takeoverCheck is one round of asking the wire about a failed member.
type takeoverCheck struct {
	from      string
	nodeAsked bool
	nodeAlive bool
	// unsure is set when a probe ended too late to mean anything: this
	// speaker was starved of CPU itself, and asks again at once.
	unsure  bool
	answers map[netip.Addr]net.HardwareAddr
	targets map[netip.Addr]Target
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
		if prev == "" || prev == a.cfg.Node {
			return true
		}
		// An address allocated before this speaker started may be
		// answered by the member that took it while this one was away:
		// it is asked about like a live member's, and taken once nobody
		// answers for it.
		from = prev
	}
	// A member that left handed over, even one whose word that it
	// leaves came after gossip found it failed. One that failed is
	// asked about as above; so is one still live, whose decision has
	// not yet let the address go: it is taken once that member is
	// silent, so that no two nodes ever answer for it.
	if dep, gone := a.cfg.Members.Departed(from); gone && dep.Left && from != startedWith {
		return true
	}
	if !pending {
		a.pendingFrom[ip] = from
		a.pendingSince[ip] = time.Now()
	}
	if a.checked[ip] {
		return true
	}
	a.checkDue[from] = append(a.checkDue[from], ip)
	return false
}

// forgetTakeovers drops the gate's state, and the probe's wait on a peer,
// for addresses the decision no longer gives this node, or that it now
// announces.
func (a *Announcer) forgetTakeovers(desired map[netip.Addr]Target) {
	settled := func(ip netip.Addr) bool {
		_, want := desired[ip]
		_, own := a.owned[ip]
		return !want || own
	}
	for ip := range a.peerHeld {
		if settled(ip) {
			delete(a.peerHeld, ip)
		}
	}
	for ip := range a.pendingFrom {
		if settled(ip) {
			delete(a.pendingFrom, ip)
			delete(a.pendingSince, ip)
			delete(a.checked, ip)
		}
	}
}

// startChecks asks the wire about each failed member with addresses due,
// one round per member at a time.
func (a *Announcer) startChecks(ctx context.Context, targets map[netip.Addr]Target) {
	due := a.checkDue
	a.checkDue = map[string][]netip.Addr{}
	now := time.Now()
	for from, ips := range due {
		// A round's answer calls for a decision, which finds the same
		// addresses due again: without the wait the round set, a member
		// that keeps answering (cut off from gossip, starved, handing
		// over) would be asked as fast as it answers, a thousand rounds
		// a second of broadcasts on the LAN and of this speaker's CPU.
		if a.checking[from] || now.Before(a.nextRound[from]) {
			continue
		}
		type probe struct {
			ip netip.Addr
			r  *responder.Responder
		}
		ips = checkRound(ips, a.heldDownNow[from])
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
		a.cfg.Metrics.TakeoverChecks.Inc()
		pc := responder.ProbeConfig{Count: checkProbes, Interval: a.cfg.TakeoverCheck, Wait: a.cfg.TakeoverCheck}
		// targets is the decision's, which the next decision refills:
		// what the round needs of it is copied here, on the run loop.
		c := takeoverCheck{from: from, answers: map[netip.Addr]net.HardwareAddr{}, targets: make(map[netip.Addr]Target, len(probes))}
		for _, p := range probes {
			c.targets[p.ip] = targets[p.ip]
		}
		go func() {
			var mu sync.Mutex
			var wg sync.WaitGroup
			c.nodeAsked = nodeR != nil
			if nodeR != nil {
				wg.Go(func() {
					mac, err := nodeR.Probe(ctx, nodeIP, pc, nil)
					mu.Lock()
					// A probe that could not run says nothing: count the
					// node alive, the cautious answer.
					c.nodeAlive = mac != nil || err != nil
					c.unsure = c.unsure || errors.Is(err, responder.ErrStarved)
					mu.Unlock()
				})
			}
			for _, p := range probes {
				wg.Go(func() {
					mac, err := p.r.Probe(ctx, p.ip, pc, nil)
					if err != nil {
						mu.Lock()
						c.unsure = c.unsure || errors.Is(err, responder.ErrStarved)
						mu.Unlock()
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
	if c.unsure {
		// Nothing this round said can be trusted, silence least of all.
		a.askAgain(c.from, handoverAgain)
		return
	}
	if c.nodeAsked {
		if c.nodeAlive {
			delete(a.nodeGone, c.from)
		} else {
			a.nodeGone[c.from] = time.Now()
		}
	}
	dep, failed := a.cfg.Members.Departed(c.from)
	heldDown := !failed && a.heldDownNow[c.from]
	// Silent since: a starved speaker that answers now and then keeps its
	// addresses; only StarvedGrace of unbroken silence gives them up. A
	// member held down is as likely starved as one gossip lost: its
	// silence counts from when the address was first asked about.
	silentSince := func(ip netip.Addr) time.Time {
		t := dep.At
		if heldDown {
			t = a.pendingSince[ip]
		}
		if at := a.lastAnswered[c.from]; at.After(t) {
			t = at
		}
		return t
	}
	again := a.minority // the quorum waits on the wire's word
	soon := false       // a live member hands over within moments
	later := false      // a member held down still serves
	// The first address a failed member still answers for: said once
	// for each failure, not on every round, which asks again within
	// moments.
	var stillAnswered netip.Addr
	var answeredBy string
	for ip, mac := range c.answers {
		if a.pendingFrom[ip] != c.from {
			continue // no longer this node's to take
		}
		switch {
		case mac != nil && a.peerMACs[mac.String()] != "":
			// The old owner, or another speaker, still answers.
			a.lastAnswered[c.from] = time.Now()
			if !failed {
				// A live member not done with the address yet: ask
				// again soon. One held down keeps what it still
				// serves; it is asked again every second, so that a
				// missed answer or two never reads as its silence.
				if heldDown {
					later = true
				} else {
					soon = true
				}
				continue
			}
			a.cfg.Metrics.TakeoversHeld.Inc()
			if !stillAnswered.IsValid() {
				stillAnswered, answeredBy = ip, a.peerMACs[mac.String()]
			}
			again = true
		case mac != nil:
			t := c.targets[ip]
			a.conflict(ip, mac, t.Iface, t.Service, "probe")
		case (failed || heldDown) && c.nodeAlive && time.Since(silentSince(ip)) < a.cfg.StarvedGrace:
			// Its node is up and its speaker silent: dead, or starved.
			a.cfg.Metrics.TakeoversHeld.Inc()
			again = true
		default:
			a.checked[ip] = true
		}
	}
	if stillAnswered.IsValid() && a.heldSaid[c.from] != dep.At {
		a.heldSaid[c.from] = dep.At
		a.cfg.Log.Info("not taking the addresses of a member gossip lost: it still answers for them",
			"owner", c.from, "first", stillAnswered, "answered", answeredBy)
	}
	if failed {
		for ip, from := range a.pendingFrom {
			if from == c.from && !a.checked[ip] {
				again = true
			}
		}
	}
	switch {
	case soon:
		a.askAgain(c.from, handoverAgain)
	case again:
		a.askAgain(c.from, checkAgain)
	case later:
		a.askAgain(c.from, time.Second)
	default:
		delete(a.nextRound, c.from)
	}
}

// askAgain holds the next round about member from for wait, and asks for
// the decision that starts it then.
func (a *Announcer) askAgain(from string, wait time.Duration) {
	a.nextRound[from] = time.Now().Add(wait)
	time.AfterFunc(wait, a.poke)
}

// checkProbes is how many times a round asks, TakeoverCheck apart: its
// silence takes an address at once, or counts a node gone, so one lost
// request or reply (a qdisc replaced, a moment of load on either side)
// must not be enough.
const checkProbes = 2

// checkAgain is how soon a held takeover is asked about again.
const checkAgain = 250 * time.Millisecond

// heldDownSample is how many addresses of a member held down are asked
// about in one round.
const heldDownSample = 4

// maxCheckRound is how many addresses one round asks about. The answers
// are timed to the millisecond (a wait that ends over 20 ms late says
// nothing, responder.ErrStarved), and a round of 10,000 probes at once,
// as a restart or the death of a node that held them starts, can keep the
// process busy long enough to spoil its own waits; the whole round is
// then thrown away and asked again.
const maxCheckRound = 256

// checkRound is which of ips, due to be asked about, one round asks
// about; the rest are asked about in the rounds after it. A member held
// down answers for all its addresses or none: a few of them tell whether
// it still serves, so a hold-down of thousands of addresses does not
// flood the LAN with probes every second.
func checkRound(ips []netip.Addr, heldDown bool) []netip.Addr {
	n := maxCheckRound
	if heldDown {
		n = heldDownSample
	}
	if len(ips) > n {
		return ips[:n]
	}
	return ips
}

// handoverAgain is how soon an address a live member still answers for is
// asked about again: its own decision lets it go within moments.
const handoverAgain = 50 * time.Millisecond
