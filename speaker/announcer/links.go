package announcer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/porterlb/porter/speaker/nics"
)

// link is one local interface as the announcer needs it.
type link struct {
	name  string
	index int
	mac   net.HardwareAddr
	up    bool // administratively up with carrier
	addrs []netip.Prefix
}

// links is a snapshot of the node's interfaces.
type links struct {
	byName map[string]*link
	// local are the addresses of the node's real NICs: never to be
	// announced. Loopback and kube-ipvs0 are left out because that is
	// where kube-proxy puts the Service addresses themselves.
	local map[netip.Addr]string
}

func readLinks() (*links, error) {
	ll, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := &links{byName: map[string]*link{}, local: map[netip.Addr]string{}}
	for _, l := range ll {
		a := l.Attrs()
		lk := &link{
			name:  a.Name,
			index: a.Index,
			mac:   a.HardwareAddr,
			up:    a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown && a.Flags&net.FlagRunning != 0),
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			ip, ok := netip.AddrFromSlice(ad.IP)
			if !ok {
				continue
			}
			ones, _ := ad.Mask.Size()
			lk.addrs = append(lk.addrs, netip.PrefixFrom(ip.Unmap(), ones))
			if !nics.Ignored(a.Name) {
				out.local[ip.Unmap()] = "address of " + a.Name + " on this node"
			}
		}
		out.byName[a.Name] = lk
	}
	return out, nil
}

// holding returns the link that has ip.
func (l *links) holding(ip netip.Addr) *link {
	for _, lk := range l.byName {
		for _, p := range lk.addrs {
			if p.Addr() == ip {
				return lk
			}
		}
	}
	return nil
}

// choose picks the NIC a pool is announced on, in order: the Eip's
// interface; the NIC routing to its can_reach address; the NIC holding the
// node's layer2 annotation address; the NIC holding its InternalIP.
func (l *links) choose(iface string, layer2, internal netip.Addr) (*link, error) {
	switch {
	case strings.HasPrefix(iface, "can_reach:"):
		target, err := netip.ParseAddr(strings.TrimPrefix(iface, "can_reach:"))
		if err != nil {
			return nil, fmt.Errorf("interface %q: want an IP after %q", iface, "can_reach:")
		}
		routes, err := netlink.RouteGet(target.AsSlice())
		if err != nil {
			return nil, fmt.Errorf("find the route to %s (interface %q): %w", target, iface, err)
		}
		if len(routes) == 0 {
			return nil, fmt.Errorf("no route to %s (interface %q)", target, iface)
		}
		for _, lk := range l.byName {
			if lk.index == routes[0].LinkIndex {
				return lk, nil
			}
		}
		return nil, fmt.Errorf("the route to %s leaves by link %d, which is gone", target, routes[0].LinkIndex)
	case iface != "":
		lk := l.byName[iface]
		if lk == nil {
			return nil, fmt.Errorf("this node has no interface %s", iface)
		}
		return lk, nil
	}
	for _, ip := range []netip.Addr{layer2, internal} {
		if !ip.IsValid() {
			continue
		}
		if lk := l.holding(ip); lk != nil {
			return lk, nil
		}
	}
	return nil, fmt.Errorf("no interface holds the node's layer2 address %v or InternalIP %v", layer2, internal)
}

// watchLinks calls kick on every link or address change until ctx ends.
func watchLinks(ctx context.Context, kick func()) error {
	lu := make(chan netlink.LinkUpdate, 64)
	au := make(chan netlink.AddrUpdate, 64)
	if err := netlink.LinkSubscribe(lu, ctx.Done()); err != nil {
		return fmt.Errorf("follow link changes: %w", err)
	}
	if err := netlink.AddrSubscribe(au, ctx.Done()); err != nil {
		return fmt.Errorf("follow address changes: %w", err)
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-lu:
				if !ok {
					return
				}
				kick()
			case _, ok := <-au:
				if !ok {
					return
				}
				kick()
			}
		}
	}()
	return nil
}
