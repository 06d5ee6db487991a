// Package netlab builds a small Layer 2 network out of network namespaces:
// one LAN (a bridge), nodes attached to it by veth pairs, optionally a second
// LAN for multi-NIC nodes, and a client. ARP between them crosses a real
// (virtual) wire, so the kernel and the speakers behave as on a real LAN.
//
// Addresses come only from 198.18.0.0/15 (RFC 2544, benchmarking) and, for
// IPv6 on LAN1, 2001:db8::/32 (RFC 3849, documentation). Nothing outside
// the namespaces the lab creates is touched.
package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/porterlb/porter/test/netns"
	"github.com/porterlb/porter/test/sandbox"
)

var (
	// LAN1 is the nodes' primary LAN; LAN2 is the optional second one.
	LAN1 = netip.MustParsePrefix("198.18.0.0/24")
	LAN2 = netip.MustParsePrefix("198.18.1.0/24")
	// LAN1v6 is LAN1's IPv6 subnet: every host has an address in it too,
	// and neighbours find each other by the kernel's own NDP.
	LAN1v6 = netip.MustParsePrefix("2001:db8:18::/64")
)

const (
	// Host numbers inside each LAN.
	bridgeHost = 1
	clientHost = 2
	firstNode  = 11

	// NIC1 and NIC2 are the node-side interface names.
	NIC1 = "eth0"
	NIC2 = "eth1"
)

// Options shape a lab.
type Options struct {
	// Nodes is how many node namespaces to make.
	Nodes int
	// SecondNIC gives every node a second NIC on LAN2.
	SecondNIC bool
	// SecondNICNodes gives only these nodes ("node1", ...) a second NIC.
	SecondNICNodes []string
}

// Host is one namespace attached to the lab's LAN.
type Host struct {
	// Name is the host's role in the lab, e.g. "node1" or "client".
	Name string
	// Netns is the network namespace the host lives in.
	Netns string
	// IP is the address of NIC1 on LAN1.
	IP netip.Addr
	// MAC is NIC1's hardware address.
	MAC net.HardwareAddr
	// IP6 is the address of NIC1 on LAN1v6.
	IP6 netip.Addr
	// IP2 and MAC2 are NIC2's, on LAN2, when the lab has a second NIC.
	IP2  netip.Addr
	MAC2 net.HardwareAddr

	lab *Lab
	// peers are the bridge-side ends of the host's veth pairs, by NIC.
	peers map[string]string
}

// Lab is a built network.
type Lab struct {
	// LAN is the namespace holding the bridges. It has LAN1's first address
	// on br0, so a control plane run in it is reachable from every node.
	LAN    string
	LANIP  netip.Addr
	Nodes  []*Host
	Client *Host

	sb         *sandbox.Sandbox
	namespaces []string
}

// New builds a lab inside sb. On error, whatever was built is removed.
func New(ctx context.Context, sb *sandbox.Sandbox, opts Options) (_ *Lab, err error) {
	if opts.Nodes < 1 || opts.Nodes > 200 {
		return nil, fmt.Errorf("netlab: %d nodes: want 1 to 200", opts.Nodes)
	}
	l := &Lab{sb: sb, LANIP: hostAddr(LAN1, bridgeHost)}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
		}
	}()

	if l.LAN, err = l.addNetns(ctx, "lan"); err != nil {
		return nil, err
	}
	bridges := []struct {
		name string
		lan  netip.Prefix
	}{{"br0", LAN1}}
	if opts.SecondNIC || len(opts.SecondNICNodes) > 0 {
		bridges = append(bridges, struct {
			name string
			lan  netip.Prefix
		}{"br1", LAN2})
	}
	for _, br := range bridges {
		// forward_delay 0: ports forward as soon as they are up, as on a
		// switch with portfast, so tests need not wait out STP timers.
		if err := ipn(ctx, l.LAN, "link", "add", br.name, "type", "bridge", "forward_delay", "0"); err != nil {
			return nil, err
		}
		if err := ipn(ctx, l.LAN, "addr", "add", prefixOf(br.lan, bridgeHost), "dev", br.name); err != nil {
			return nil, err
		}
		if err := ipn(ctx, l.LAN, "link", "set", br.name, "up"); err != nil {
			return nil, err
		}
	}
	// kube-apiserver picks its advertised address from the default route.
	if err := ipn(ctx, l.LAN, "route", "add", "default", "dev", "br0"); err != nil {
		return nil, err
	}

	for i := range opts.Nodes {
		name := "node" + strconv.Itoa(i+1)
		h, err := l.addHost(ctx, name, firstNode+i, opts.SecondNIC || slices.Contains(opts.SecondNICNodes, name))
		if err != nil {
			return nil, err
		}
		l.Nodes = append(l.Nodes, h)
	}
	if l.Client, err = l.addHost(ctx, "client", clientHost, false); err != nil {
		return nil, err
	}
	return l, nil
}

// Close deletes every namespace of the lab and the processes in them.
func (l *Lab) Close() error {
	var errs []error
	for i := len(l.namespaces) - 1; i >= 0; i-- {
		errs = append(errs, l.sb.DeleteNetns(l.namespaces[i]))
	}
	l.namespaces = nil
	return errors.Join(errs...)
}

// Node returns the node called name ("node1", ...), or nil.
func (l *Lab) Node(name string) *Host {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func (l *Lab) addNetns(ctx context.Context, role string) (string, error) {
	name, err := l.sb.NetnsName(role)
	if err != nil {
		return "", err
	}
	l.namespaces = append(l.namespaces, name)
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		return "", err
	}
	// Addresses are usable at once, not tentative for a second of
	// duplicate address detection: the lab made them unique. A link taken
	// down and up keeps its IPv6 addresses, as its IPv4 ones, as a node's
	// network manager would put them back.
	for _, kv := range []string{"net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
		"net.ipv6.conf.all.keep_addr_on_down=1", "net.ipv6.conf.default.keep_addr_on_down=1"} {
		if err := run(ctx, "ip", "netns", "exec", name, "sysctl", "-q", "-w", kv); err != nil {
			return "", err
		}
	}
	if err := ipn(ctx, name, "link", "set", "lo", "up"); err != nil {
		return "", err
	}
	return name, nil
}

func (l *Lab) addHost(ctx context.Context, role string, hostNum int, secondNIC bool) (*Host, error) {
	ns, err := l.addNetns(ctx, role)
	if err != nil {
		return nil, err
	}
	h := &Host{Name: role, Netns: ns, lab: l, peers: map[string]string{}}
	nics := []struct {
		nic, bridge string
		lan         netip.Prefix
	}{{NIC1, "br0", LAN1}}
	if secondNIC {
		nics = append(nics, struct {
			nic, bridge string
			lan         netip.Prefix
		}{NIC2, "br1", LAN2})
	}
	for i, n := range nics {
		// Bridge-side names must be unique in the LAN namespace and fit
		// IFNAMSIZ (15).
		peer := fmt.Sprintf("v%d-%s", i, shortRole(role))
		if err := ipn(ctx, l.LAN, "link", "add", peer, "type", "veth", "peer", "name", n.nic, "netns", ns); err != nil {
			return nil, err
		}
		if err := ipn(ctx, l.LAN, "link", "set", peer, "master", n.bridge, "up"); err != nil {
			return nil, err
		}
		if err := ipn(ctx, ns, "addr", "add", prefixOf(n.lan, hostNum), "dev", n.nic); err != nil {
			return nil, err
		}
		if err := ipn(ctx, ns, "link", "set", n.nic, "up"); err != nil {
			return nil, err
		}
		mac, err := linkMAC(ctx, ns, n.nic)
		if err != nil {
			return nil, err
		}
		h.peers[n.nic] = peer
		if i == 0 {
			h.IP, h.MAC = hostAddr(n.lan, hostNum), mac
			h.IP6 = hostAddr6(LAN1v6, hostNum)
			if err := ipn(ctx, ns, "addr", "add", netip.PrefixFrom(h.IP6, LAN1v6.Bits()).String(), "dev", n.nic, "nodad"); err != nil {
				return nil, err
			}
		} else {
			h.IP2, h.MAC2 = hostAddr(n.lan, hostNum), mac
		}
	}
	if err := ipn(ctx, ns, "route", "add", "default", "via", l.LANIP.String()); err != nil {
		return nil, err
	}
	return h, nil
}

// Command builds a command that runs in the host's namespace.
func (h *Host) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return netns.Command(ctx, h.Netns, argv...)
}

// Run runs a command in the host's namespace and returns its output.
func (h *Host) Run(ctx context.Context, argv ...string) (string, error) {
	out, err := h.Command(ctx, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s on %s: %w: %s", strings.Join(argv, " "), h.Name, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Do runs fn on a thread inside the host's namespace (see netns.Do).
func (h *Host) Do(fn func() error) error { return netns.Do(h.Netns, fn) }

// Dial connects from the host's namespace.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return netns.DialContext(h.Netns)(ctx, network, addr)
}

// Listen listens in the host's namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	return netns.Listen(h.Netns, network, addr)
}

// SetLink takes the host's NIC down or up on the host's side, as when an
// interface is shut down on the machine.
func (h *Host) SetLink(ctx context.Context, nic string, up bool) error {
	if err := ipn(ctx, h.Netns, "link", "set", nic, upDown(up)); err != nil {
		return err
	}
	if up && nic == NIC1 {
		// Taking a link down drops the routes through it; the default
		// route comes back with the link, as a node's network manager
		// would bring it back.
		return ipn(ctx, h.Netns, "route", "replace", "default", "via", h.lab.LANIP.String())
	}
	return nil
}

// SetCable takes the switch side of the host's NIC down or up, as when its
// cable is pulled: the host sees its carrier go.
func (h *Host) SetCable(ctx context.Context, nic string, up bool) error {
	peer, ok := h.peers[nic]
	if !ok {
		return fmt.Errorf("%s has no NIC %s", h.Name, nic)
	}
	return ipn(ctx, h.lab.LAN, "link", "set", peer, upDown(up))
}

// Neighbor returns the MAC the host's neighbour table holds for ip, or nil
// when it has no usable entry.
func (h *Host) Neighbor(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	out, err := h.Run(ctx, "ip", "neigh", "show", ip.String())
	if err != nil {
		return nil, err
	}
	return parseNeighbor(out)
}

// parseNeighbor reads `ip neigh show ADDR` output such as
// "198.18.0.11 dev eth0 lladdr 02:..:ff REACHABLE".
func parseNeighbor(out string) (net.HardwareAddr, error) {
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "lladdr" {
				continue
			}
			if state := f[len(f)-1]; state == "FAILED" || state == "INCOMPLETE" {
				return nil, nil
			}
			mac, err := net.ParseMAC(f[i+1])
			if err != nil {
				return nil, fmt.Errorf("parse neighbour entry %q: %w", line, err)
			}
			return mac, nil
		}
	}
	return nil, nil
}

func linkMAC(ctx context.Context, ns, nic string) (net.HardwareAddr, error) {
	out, err := exec.CommandContext(ctx, "ip", "-n", ns, "-o", "link", "show", nic).Output()
	if err != nil {
		return nil, fmt.Errorf("read MAC of %s in %s: %w", nic, ns, err)
	}
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "link/ether" {
			return net.ParseMAC(f[i+1])
		}
	}
	return nil, fmt.Errorf("read MAC of %s in %s: no link/ether in %q", nic, ns, out)
}

func hostAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Addr().As4()
	a[3] = byte(n)
	return netip.AddrFrom4(a)
}

func hostAddr6(p netip.Prefix, n int) netip.Addr {
	a := p.Addr().As16()
	a[15] = byte(n)
	return netip.AddrFrom16(a)
}

func prefixOf(p netip.Prefix, n int) string {
	return netip.PrefixFrom(hostAddr(p, n), p.Bits()).String()
}

func shortRole(role string) string {
	if len(role) > 12 {
		return role[len(role)-12:]
	}
	return role
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func ipn(ctx context.Context, ns string, args ...string) error {
	return run(ctx, "ip", append([]string{"-n", ns}, args...)...)
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
