package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/porterlb/porter/test/backend"
	"github.com/porterlb/porter/test/daemons"
	"github.com/porterlb/porter/test/netlab"
)

// stack is one load balancer under measurement, Porter or MetalLB, run in
// the same lab and probed by the same client.
type stack struct {
	name string
	// vip is the address of its Service.
	vip netip.Addr
	// speakers mirror its speaker DaemonSet.
	speakers *daemons.Runner
	// gains is how many times, by its speakers' own count, any speaker
	// started to answer for an address.
	gains func(ctx context.Context) (float64, error)
	// settled reports whether its speakers are all up and agree.
	settled func(ctx context.Context) bool
	// fresh, when set, starts its speakers anew with no memory of
	// earlier failures, before a measurement of steady state.
	fresh func(ctx context.Context) error
}

// owner is the node that answers ARP for s's address, asked from the
// client: the same question for every stack.
func (b *bench) ownerOf(ctx context.Context, s *stack) (*netlab.Host, error) {
	var last []string
	err := poll(ctx, 30*time.Second, func() bool {
		macs, err := whoHas(b.env.Net.Client, s.vip, 200*time.Millisecond)
		last = macs
		return err == nil && len(macs) == 1
	})
	if err != nil {
		return nil, fmt.Errorf("wait for one node to answer ARP for %s (%s): answered by %v: %w", s.vip, s.name, last, err)
	}
	for _, n := range b.env.Net.Nodes {
		if n.MAC.String() == last[0] {
			return n, nil
		}
	}
	return nil, fmt.Errorf("%s is answered by %s, no lab node", s.vip, last[0])
}

// settleStack waits until s's speakers are all up and agree, and one node
// answers for its address.
func (b *bench) settleStack(ctx context.Context, s *stack) error {
	if err := poll(ctx, 60*time.Second, func() bool { return s.settled(ctx) }); err != nil {
		return fmt.Errorf("wait for %s's speakers to settle: %w", s.name, err)
	}
	if _, err := b.ownerOf(ctx, s); err != nil {
		return err
	}
	// A returning node may take its addresses back after its hold-down;
	// let that finish.
	time.Sleep(time.Second)
	return nil
}

// whoHas asks from the client's LAN NIC who has ip (backend.WhoHas).
func whoHas(client *netlab.Host, ip netip.Addr, wait time.Duration) ([]string, error) {
	if ip.Is6() {
		return backend.WhoHas6(client, netlab.NIC1, ip, wait)
	}
	return backend.WhoHas(client, netlab.NIC1, ip, wait)
}
