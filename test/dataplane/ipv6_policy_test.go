package dataplane

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/test/netlab"
)

// The reserved classes hold in IPv6 on a real wire: a node's own address,
// a secondary address, a default gateway, the subnet-router anycast
// address and a link-local address, each inside a pool applied with
// kubectl and asked for by a Service, are refused, and no speaker answers
// for them by NDP.
func TestIPv6ReservedAddressesAreNeverAnswered(t *testing.T) {
	node1, node2, node3 := env.Net.Nodes[0], env.Net.Nodes[1], env.Net.Nodes[2]
	secondary := netip.MustParseAddr("2001:db8:18::50")
	gateway := netip.MustParseAddr("2001:db8:18::fe")
	run(t, node2, []string{"ip", "addr", "add", secondary.String() + "/64", "dev", netlab.NIC1, "nodad"},
		[]string{"ip", "addr", "del", secondary.String() + "/64", "dev", netlab.NIC1})
	run(t, node3, []string{"ip", "-6", "route", "replace", "default", "via", gateway.String(), "dev", netlab.NIC1},
		[]string{"ip", "-6", "route", "del", "default", "via", gateway.String(), "dev", netlab.NIC1})
	applyPool(t, "reserved6", "2001:db8:18::/120", "")
	applyPool(t, "linklocal6", "fe80::100-fe80::1ff", "")
	startSpeakers(t)
	poll(t, 15*time.Second, "node2 to report its secondary address and node3 its gateway", func(context.Context) (bool, error) {
		r2, r3 := report(t, node2.Name), report(t, node3.Name)
		if r2 == nil || r3 == nil {
			return false, nil
		}
		has := false
		for _, n := range r2.Status.NICs {
			has = has || slices.Contains(n.Addresses, secondary.String()+"/64")
		}
		return has && slices.Contains(r3.Status.Gateways, gateway.String()), nil
	})
	for _, c := range []struct {
		name, pool string
		ip         netip.Addr
		reason     string
		owner      string // the MAC that rightly answers, if any
	}{
		{"nic", "reserved6", node1.IP6, "is an address of NIC eth0 on node node1", node1.MAC.String()},
		{"secondary", "reserved6", secondary, "is an address of NIC eth0 on node node2", node2.MAC.String()},
		{"gateway", "reserved6", gateway, "is the default gateway of node node3", ""},
		{"anycast", "reserved6", netip.MustParseAddr("2001:db8:18::"), "subnet-router anycast", ""},
		{"linklocal", "linklocal6", netip.MustParseAddr("fe80::105"), "is link-local", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := "reserved6-" + c.name
			createService(t, name, func(s *corev1.Service) {
				s.Annotations[lbservice.IPAnnotation] = c.ip.String()
				s.Annotations[lbservice.PoolAnnotation] = c.pool
			})
			waitEvent(t, name, "AddressRefused", c.reason)
			forgeIngress(t, name, c.ip)
			waitEvent(t, name, "AddressRefused", "never announced")
			if c.ip.IsLinkLocalUnicast() {
				return // not on the LAN's subnet: nobody is asked
			}
			var except []string
			if c.owner != "" {
				except = append(except, c.owner)
			}
			neverAnsweredByNodes(t, c.ip, 2*time.Second, except...)
		})
	}
}
