package announcer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"

	"github.com/porterlb/porter/pkg/addrpolicy"
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

// choose picks the NIC a pool is announced on, by the one rule
// (addrpolicy.ChooseNIC), with the kernel's route table for can_reach.
func (l *links) choose(iface string, primaries []netip.Addr) (*link, error) {
	nics := make([]addrpolicy.NIC, 0, len(l.byName))
	for _, lk := range l.byName {
		nics = append(nics, addrpolicy.NIC{Name: lk.name, MAC: lk.mac.String(), Up: lk.up, Prefixes: lk.addrs})
	}
	// A stable order, so that two NICs holding one address always give
	// the same answer.
	sort.Slice(nics, func(i, j int) bool { return nics[i].Name < nics[j].Name })
	nic, err := addrpolicy.ChooseNIC(nics, iface, primaries, l.route)
	if err != nil {
		return nil, err
	}
	return l.byName[nic.Name], nil
}

// route names the link the kernel sends to target through.
func (l *links) route(target netip.Addr) (string, error) {
	routes, err := netlink.RouteGet(target.AsSlice())
	if err != nil {
		return "", err
	}
	if len(routes) == 0 {
		return "", fmt.Errorf("no route to %s", target)
	}
	for _, lk := range l.byName {
		if lk.index == routes[0].LinkIndex {
			return lk.name, nil
		}
	}
	return "", fmt.Errorf("the route to %s leaves by link %d, which is gone", target, routes[0].LinkIndex)
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

// onSubnetOf returns the up link whose subnet holds ip, nil if none does.
func (l *links) onSubnetOf(ip netip.Addr) *link {
	if !ip.IsValid() {
		return nil
	}
	for _, lk := range l.byName {
		if !lk.up || nics.Ignored(lk.name) {
			continue
		}
		for _, p := range lk.addrs {
			if p.Masked().Contains(ip) {
				return lk
			}
		}
	}
	return nil
}
