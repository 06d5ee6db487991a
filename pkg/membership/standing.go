package membership

import (
	"sort"
	"time"
)

// Quorum is whether a speaker sees enough of the speakers it expects to
// take on addresses it does not already answer for.
type Quorum struct {
	OK bool
	// Have is how many expected speakers it sees, itself included; Need
	// how many it must see.
	Have, Need int
	// Missing are the expected speakers it does not see and the wire has
	// not found gone, sorted: asking the wire about them may restore the
	// quorum.
	Missing []string
}

// QuorumOf decides the quorum of the speaker on self.
//
//   - expected are the speakers the cluster says run: nodes with a ready
//     speaker pod that published a member address;
//   - visible are the members that count (Judge), self included;
//   - gone are expected nodes whose speaker said it leaves, or whose
//     kernel no longer answers ARP for the node's own address: dead, not
//     cut off. They count for nothing.
//
// A speaker needs a strict majority of the expected speakers that are not
// gone. A gone node is the witness that breaks the tie of two nodes: the
// survivor of a dead peer sees one of one, while two nodes cut off from
// each other's gossip but not from the LAN each see one of two, and take
// nothing new.
func QuorumOf(self string, expected, visible, gone map[string]bool) Quorum {
	counted := map[string]bool{self: true}
	for n := range expected {
		if !gone[n] || visible[n] {
			counted[n] = true
		}
	}
	for n := range visible {
		counted[n] = true
	}
	q := Quorum{Need: len(counted)/2 + 1}
	for n := range counted {
		if visible[n] || n == self {
			q.Have++
		} else {
			q.Missing = append(q.Missing, n)
		}
	}
	sort.Strings(q.Missing)
	q.OK = q.Have >= q.Need
	return q
}

// Damping holds back a speaker that flaps: one found failed that came back
// waits out a hold-down before it takes addresses back, and the hold-down
// doubles with each failure in Forget.
type Damping struct {
	// Base is the first hold-down; zero turns damping off.
	Base time.Duration
	// Max caps the hold-down.
	Max time.Duration
	// Forget is how long a failure counts against a speaker.
	Forget time.Duration
}

// Until is when the hold-down of a speaker that returned at returned ends,
// given the times it was found failed. A speaker that never failed, or
// whose failures are all older than Forget when it returned, is not held.
func (d Damping) Until(failures []time.Time, returned time.Time) time.Time {
	if d.Base <= 0 || returned.IsZero() {
		return time.Time{}
	}
	n := 0
	for _, f := range failures {
		if !f.After(returned) && returned.Sub(f) <= d.Forget {
			n++
		}
	}
	if n == 0 {
		return time.Time{}
	}
	hold := d.Base
	for i := 1; i < n && hold < d.Max; i++ {
		hold *= 2
	}
	if d.Max > 0 && hold > d.Max {
		hold = d.Max
	}
	return returned.Add(hold)
}
