package addrpolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
)

// RouteLookup names the NIC a node's kernel routes an address through.
type RouteLookup func(netip.Addr) (string, error)

// ChooseNIC is the rule for which of a node's NICs a pool is announced on.
// The speaker applies it to its live interfaces and route table; the
// plugin, status and the pool check apply it to the speaker's report,
// where route is nil. In order:
//   - iface names a NIC: that NIC;
//   - iface is "can_reach:IP": the NIC the kernel routes IP through, or,
//     without a route table, the NIC whose subnet holds IP;
//   - iface is empty: the NIC holding the first of primaries that a NIC
//     holds (the node's layer2 address, then its InternalIP).
func ChooseNIC(nics []NIC, iface string, primaries []netip.Addr, route RouteLookup) (NIC, error) {
	byName := func(name string) (NIC, bool) {
		for _, n := range nics {
			if n.Name == name {
				return n, true
			}
		}
		return NIC{}, false
	}
	if ipText, found := strings.CutPrefix(iface, v1alpha2.CanReachPrefix); found {
		target, err := netip.ParseAddr(strings.TrimSpace(ipText))
		if err != nil {
			return NIC{}, fmt.Errorf("interface %q: want an IP after %q", iface, v1alpha2.CanReachPrefix)
		}
		target = target.Unmap()
		if route != nil {
			name, err := route(target)
			if err != nil {
				return NIC{}, fmt.Errorf("find the route to %s (interface %q): %w", target, iface, err)
			}
			if n, ok := byName(name); ok {
				return n, nil
			}
			return NIC{}, fmt.Errorf("the route to %s leaves by %s, which this node does not have", target, name)
		}
		for _, n := range nics {
			for _, p := range n.Prefixes {
				if p.Masked().Contains(target) {
					return n, nil
				}
			}
		}
		return NIC{}, fmt.Errorf("no NIC's subnet holds %s (interface %q)", target, iface)
	}
	if iface != "" {
		if n, ok := byName(iface); ok {
			return n, nil
		}
		return NIC{}, fmt.Errorf("the node has no interface %s", iface)
	}
	for _, ip := range primaries {
		for _, n := range nics {
			if n.Holds(ip) {
				return n, nil
			}
		}
	}
	if len(primaries) == 0 {
		return NIC{}, errors.New("the node has neither a layer2 address nor an InternalIP")
	}
	return NIC{}, fmt.Errorf("no interface holds the node's layer2 address or InternalIP (%v)", primaries)
}
