// Package nics reads a node's network interfaces, as `ip link` and
// `ip addr` show them, for the NIC inventory the speaker publishes.
package nics

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

// ignoredPrefixes name interfaces that container networking and kube-proxy
// create; they are never the NIC a LAN client reaches.
var ignoredPrefixes = []string{"lo", "kube-ipvs", "cali", "cilium_", "lxc", "flannel", "cni", "vxlan", "tunl", "docker", "veth", "nodelocaldns", "weave", "genev", "antrea"}

// Ignored reports whether name is an interface the inventory leaves out.
func Ignored(name string) bool {
	for _, p := range ignoredPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Read lists the interfaces of the calling thread's network namespace.
// internalIP marks the NIC that holds the node's InternalIP; the name of
// that NIC is returned as primary.
func Read(internalIP netip.Addr) (list []v1alpha1.NIC, primary string, err error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, "", fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		if Ignored(a.Name) {
			continue
		}
		nic := v1alpha1.NIC{
			Name:    a.Name,
			Up:      a.Flags&net.FlagUp != 0,
			Carrier: a.OperState == netlink.OperUp || (a.OperState == netlink.OperUnknown && a.Flags&net.FlagRunning != 0),
		}
		if len(a.HardwareAddr) > 0 {
			nic.MAC = a.HardwareAddr.String()
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, "", fmt.Errorf("list addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			ip, ok := netip.AddrFromSlice(ad.IP)
			if !ok || ip.IsLinkLocalUnicast() {
				continue
			}
			ones, _ := ad.Mask.Size()
			p := netip.PrefixFrom(ip.Unmap(), ones)
			nic.Addresses = append(nic.Addresses, p.String())
			if internalIP.IsValid() && p.Addr() == internalIP.Unmap() {
				nic.HoldsInternalIP = true
				primary = a.Name
			}
		}
		list = append(list, nic)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return list, primary, nil
}

// Gateways lists the next hops of the default routes of the calling
// thread's network namespace, IPv4 and IPv6, each once, in order.
func Gateways() ([]string, error) {
	var out []string
	seen := map[netip.Addr]bool{}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue // not a default route
				}
			}
			hops := []net.IP{r.Gw}
			for _, nh := range r.MultiPath {
				hops = append(hops, nh.Gw)
			}
			for _, h := range hops {
				ip, ok := netip.AddrFromSlice(h)
				if !ok || !ip.IsValid() || ip.IsUnspecified() {
					continue
				}
				ip = ip.Unmap()
				if !seen[ip] {
					seen[ip] = true
					out = append(out, ip.String())
				}
			}
		}
	}
	return out, nil
}
