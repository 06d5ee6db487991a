package announcer

import (
	"net"
	"net/netip"
	"sync"
)

// claimed is another host found answering for an announced address.
// yield is set when it is another speaker's node and this speaker, cut off
// or held down, gives the address up to it.
type claimed struct {
	ip    netip.Addr
	mac   net.HardwareAddr
	iface string
	yield string
}

// claimQueue carries claims from the responders' readers to the run loop.
// When a claim is made the responder has already stopped answering, so a
// claim that is lost leaves the speaker believing it still answers: it
// neither records the yield nor the conflict, and takes the address back
// at its next decision. So no claim is dropped, however long the run loop
// is starved. It holds at most one claim per address, the first, which
// is the one that withdrew it: the queue is bounded by what this node
// announces.
type claimQueue struct {
	mu      sync.Mutex
	pending map[netip.Addr]claimed
	order   []netip.Addr
	// ready has room for one signal: the run loop takes every pending
	// claim at once, however many signals were sent.
	ready chan struct{}
}

func newClaimQueue() *claimQueue {
	return &claimQueue{pending: map[netip.Addr]claimed{}, ready: make(chan struct{}, 1)}
}

// add queues c, unless a claim on its address is already queued. It never
// blocks: the readers call it.
func (q *claimQueue) add(c claimed) {
	q.mu.Lock()
	if _, dup := q.pending[c.ip]; !dup {
		q.pending[c.ip] = c
		q.order = append(q.order, c.ip)
	}
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take returns the queued claims, in the order they came, and empties the
// queue; dst is reused.
func (q *claimQueue) take(dst []claimed) []claimed {
	dst = dst[:0]
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, ip := range q.order {
		dst = append(dst, q.pending[ip])
	}
	clear(q.pending)
	q.order = q.order[:0]
	return dst
}
