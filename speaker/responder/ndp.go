package responder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// allNodes is where unsolicited Neighbor Advertisements go (RFC 4861 7.2.6).
var allNodes = netip.MustParseAddr("ff02::1")

// ndpConn opens the interface's ICMPv6 socket the first time an IPv6
// address needs it: a NIC without IPv6, or before its link-local address
// is ready, serves IPv4 alone, and the next IPv6 address tries again.
func (r *Responder) ndpConn() (*ndp.Conn, error) {
	r.ndpMu.Lock()
	defer r.ndpMu.Unlock()
	if r.nd != nil {
		return r.nd, nil
	}
	if r.closed.Load() {
		return nil, errors.New("closed")
	}
	c, _, err := ndp.Listen(r.ifi, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("open NDP socket on %s (it needs an IPv6 link-local address): %w", r.ifi.Name, err)
	}
	// Only Neighbor Solicitations and Advertisements matter here.
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := c.SetICMPFilter(&f); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("filter ICMPv6 on %s: %w", r.ifi.Name, err)
	}
	r.nd = c
	r.ndDone = make(chan struct{})
	go r.serveNDP(c)
	return c, nil
}

// serveNDP answers Neighbor Solicitations for owned addresses, and hands
// every advertisement to the probes and the defence, until Close.
func (r *Responder) serveNDP(c *ndp.Conn) {
	defer close(r.ndDone)
	iface := r.ifi.Name
	seen := r.m.ARPRequests.WithLabelValues(iface)
	replied := r.m.ARPReplies.WithLabelValues(iface)
	for {
		m, _, src, err := c.ReadFrom()
		if err != nil {
			if r.closed.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			r.log.Warn("read NDP", "err", err)
			return
		}
		switch m := m.(type) {
		case *ndp.NeighborAdvertisement:
			if mac := linkLayer(m.Options, ndp.Target); mac != nil && !slices.Equal(mac, r.ifi.HardwareAddr) {
				r.heard(m.TargetAddress, mac)
			}
		case *ndp.NeighborSolicitation:
			mac := linkLayer(m.Options, ndp.Source)
			if slices.Equal(mac, r.ifi.HardwareAddr) {
				continue
			}
			// A solicitation says nothing about who holds its target;
			// one from :: is another host's duplicate address detection,
			// which the advertisement below answers (RFC 4862 5.4.3).
			seen.Inc()
			if !r.Owns(m.TargetAddress) {
				continue
			}
			// Solicited and override: the asker takes this MAC at once,
			// whatever it had (RFC 4861 7.2.4). A DAD probe from :: is
			// answered to all nodes, as the RFC says.
			dst := src
			solicited := true
			if src.Unmap().IsUnspecified() {
				dst, solicited = allNodes, false
			}
			if err := r.advertise(c, m.TargetAddress, dst, solicited); err != nil {
				r.log.Warn("send Neighbor Advertisement", "ip", m.TargetAddress, "to", dst, "err", err)
				continue
			}
			replied.Inc()
		}
	}
}

// heard hands an address another host advertised to the probe waiting
// on it, and to the defence of owned addresses.
func (r *Responder) heard(ip netip.Addr, mac net.HardwareAddr) {
	ip = ip.WithZone("")
	r.mu.RLock()
	ch := r.probes[ip]
	_, owned := r.owned[ip]
	r.mu.RUnlock()
	if ch != nil {
		select {
		case ch <- slices.Clone(mac):
		default:
		}
	}
	if owned {
		r.defend(ip, mac)
	}
}

func (r *Responder) advertise(c *ndp.Conn, ip, dst netip.Addr, solicited bool) error {
	na := &ndp.NeighborAdvertisement{
		Solicited: solicited, Override: true, TargetAddress: ip.WithZone(""),
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: r.ifi.HardwareAddr}},
	}
	return c.WriteTo(na, nil, dst)
}

// announceNDP joins the solicited-node group of each address, so that
// solicitations for it reach this socket, and sends an unsolicited,
// override Neighbor Advertisement for it to all nodes: the IPv6 twin of
// gratuitous ARP.
func (r *Responder) announceNDP(ips []netip.Addr, join bool) {
	if len(ips) == 0 {
		return
	}
	c, err := r.ndpConn()
	if err != nil {
		r.log.Warn("answer for IPv6 addresses", "count", len(ips), "err", err)
		return
	}
	counter := r.m.GratuitousARPs.WithLabelValues(r.ifi.Name)
	for _, ip := range ips {
		if join {
			if g, err := ndp.SolicitedNodeMulticast(ip); err == nil {
				// Joining twice fails harmlessly: the group stays joined.
				_ = c.JoinGroup(g)
			}
		}
		if err := r.advertise(c, ip, allNodes, false); err != nil {
			r.log.Warn("send unsolicited Neighbor Advertisement", "ip", ip, "err", err)
			continue
		}
		counter.Inc()
	}
}

// withdrawNDP leaves the solicited-node groups of addresses no longer
// owned, unless another owned address shares the group.
func (r *Responder) withdrawNDP(ips []netip.Addr) {
	r.ndpMu.Lock()
	c := r.nd
	r.ndpMu.Unlock()
	if c == nil {
		return
	}
	r.mu.RLock()
	inUse := map[netip.Addr]bool{}
	for ip := range r.owned {
		if ip.Is6() {
			if g, err := ndp.SolicitedNodeMulticast(ip); err == nil {
				inUse[g] = true
			}
		}
	}
	r.mu.RUnlock()
	for _, ip := range ips {
		if g, err := ndp.SolicitedNodeMulticast(ip); err == nil && !inUse[g] {
			_ = c.LeaveGroup(g)
		}
	}
}

// probeNDP is duplicate address detection (RFC 4862 5.4): Neighbor
// Solicitations for ip, to its solicited-node group, and any host that
// advertises ip meanwhile holds it. The solicitations go from this
// node's link-local address, not from ::, which a raw socket cannot
// send; hosts answer them alike, with an advertisement that names their
// MAC, and learn nothing that matters from them.
func (r *Responder) probeNDP(ctx context.Context, ip netip.Addr, pc ProbeConfig, ignore func(net.HardwareAddr) bool, ch chan net.HardwareAddr) (net.HardwareAddr, error) {
	c, err := r.ndpConn()
	if err != nil {
		return nil, err
	}
	g, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return nil, fmt.Errorf("solicited-node group of %s: %w", ip, err)
	}
	// The answer to an address held by a host that joined no group for it
	// (a host with it on another interface answers to the group anyway).
	_ = c.JoinGroup(g)
	defer func() {
		if !r.Owns(ip) {
			r.withdrawNDP([]netip.Addr{ip})
		}
	}()
	ns := &ndp.NeighborSolicitation{TargetAddress: ip}
	return r.probeLoop(ctx, ip, pc, ignore, ch, func() error {
		if err := c.WriteTo(ns, nil, g); err != nil {
			return fmt.Errorf("send Neighbor Solicitation for %s on %s: %w", ip, r.ifi.Name, err)
		}
		return nil
	})
}

func linkLayer(opts []ndp.Option, dir ndp.Direction) net.HardwareAddr {
	for _, o := range opts {
		if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == dir {
			return l.Addr
		}
	}
	return nil
}

// closeNDP closes the ICMPv6 socket, if one was opened, and waits for its
// read loop.
func (r *Responder) closeNDP() error {
	r.ndpMu.Lock()
	c, done := r.nd, r.ndDone
	r.ndpMu.Unlock()
	if c == nil {
		return nil
	}
	err := c.Close()
	<-done
	return err
}
