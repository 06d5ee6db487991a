package announcer

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/lbservice"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func pool(name, address string, age int, mut ...func(*v1alpha2.Eip)) addrpolicy.Pool {
	e := &v1alpha2.Eip{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Minute))},
		Spec:       v1alpha2.EipSpec{Address: address, Protocol: v1alpha2.ProtocolLayer2},
	}
	for _, m := range mut {
		m(e)
	}
	return addrpolicy.PoolFromEip(e)
}

func disabled(e *v1alpha2.Eip)   { e.Spec.Disable = true }
func knownIPs(e *v1alpha2.Eip)   { e.Spec.UsingKnownIPs = true }
func bgp(e *v1alpha2.Eip)        { e.Spec.Protocol = v1alpha2.ProtocolBGP }
func onEth1(e *v1alpha2.Eip)     { e.Spec.Interface = "eth1" }
func addr(s string) netip.Addr   { return netip.MustParseAddr(s) }
func svc(key, ip string) Service { return Service{Key: key, IP: addr(ip)} }

func node(name, internal string, mut ...func(*corev1.Node)) addrpolicy.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internal}}
	for _, m := range mut {
		m(n)
	}
	return addrpolicy.NodeFromObject(n)
}

func report(name string, gateways []string, addrs ...string) addrpolicy.Report {
	return addrpolicy.ReportFromNodeNICs(&v1alpha1.NodeNICs{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: v1alpha1.NodeNICsStatus{
			NICs:      []v1alpha1.NIC{{Name: "eth0", MAC: "02:00:00:00:00:0" + name[len(name)-1:], Up: true, Carrier: true, Addresses: addrs}},
			Gateways:  gateways,
			UpdatedAt: metav1.NewTime(epoch),
		},
	})
}

// cluster is three nodes on 198.18.0.0/24 with one pool, main; n2 also has
// an ExternalIP, both layer2 annotations, a pod CIDR and, on its NIC, a
// control-plane VIP no Node object names.
func cluster() addrpolicy.Snapshot {
	return addrpolicy.Snapshot{
		Pools: []addrpolicy.Pool{pool("main", "198.18.0.0/24", 0)},
		Nodes: []addrpolicy.Node{
			node("n1", "198.18.0.11"),
			node("n2", "198.18.0.12", func(n *corev1.Node) {
				n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "198.18.0.22"})
				n.Annotations[v1alpha2.Layer2Annotation] = "198.18.0.32"
				n.Annotations[v1alpha2.Layer2AnnotationOpenELB] = "198.18.0.42"
				n.Spec.PodCIDRs = []string{"198.18.0.64/30"}
			}),
			node("n3", "198.18.0.13"),
		},
		Reports: []addrpolicy.Report{
			report("n1", []string{"198.18.0.1"}, "198.18.0.11/24"),
			report("n2", nil, "198.18.0.12/24", "198.18.0.50/24"),
			report("n3", []string{"198.18.0.2"}, "198.18.0.13/24"),
		},
		APIServer:    []netip.Addr{addr("198.18.0.5")},
		ControlPlane: []addrpolicy.ControlPlane{{IP: addr("198.18.0.6"), Source: "controlPlaneEndpoint of kubeadm's ClusterConfiguration"}},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.0.240/29")},
		PodCIDRs:     []netip.Prefix{netip.MustParsePrefix("198.18.0.96/30")},
	}
}

// in is the input of n1, the only candidate of every pool, with its eth0
// serving every pool.
func in(s addrpolicy.Snapshot, svcs ...Service) Input {
	p := addrpolicy.New(s)
	input := Input{Node: "n1", Policy: p, Candidates: map[string][]string{}, NICs: map[string]string{},
		Local: map[netip.Addr]string{addr("198.18.0.11"): "is an address of eth0 on this node"}, Services: svcs}
	for _, pl := range p.Pools() {
		input.Candidates[pl.Name] = []string{"n1"}
		input.NICs[pl.Name] = "eth0"
	}
	return input
}

func TestDecide(t *testing.T) {
	type want struct {
		announce map[string]string // ip -> interface
		refused  map[string]string // ip -> part of the reason
		owners   map[string]string // ip -> owner, checked when set
		probe    []string          // announced addresses to probe first
	}
	with := func(mut func(*addrpolicy.Snapshot)) addrpolicy.Snapshot {
		s := cluster()
		mut(&s)
		return s
	}
	cases := []struct {
		name  string
		input Input
		want  want
	}{
		{"plain", in(cluster(), svc("a/a", "198.18.0.100")),
			want{announce: map[string]string{"198.18.0.100": "eth0"}, owners: map[string]string{"198.18.0.100": "n1"}}},
		{"another node owns it", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			i.Candidates["main"] = []string{"n2"}
			return i
		}(), want{owners: map[string]string{"198.18.0.100": "n2"}}},
		{"no candidate", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			i.Candidates["main"] = nil
			return i
		}(), want{owners: map[string]string{}}},
		{"a node's InternalIP", in(cluster(), svc("a/a", "198.18.0.12")), want{refused: map[string]string{"198.18.0.12": "InternalIP of node n2"}}},
		{"a node's InternalIP, IPv4-mapped", in(cluster(), svc("a/a", "::ffff:198.18.0.12")), want{refused: map[string]string{"198.18.0.12": "InternalIP of node n2"}}},
		{"a node's ExternalIP", in(cluster(), svc("a/a", "198.18.0.22")), want{refused: map[string]string{"198.18.0.22": "ExternalIP of node n2"}}},
		{"Porter's layer2 annotation", in(cluster(), svc("a/a", "198.18.0.32")), want{refused: map[string]string{"198.18.0.32": "layer2.porter.kubesphere.io"}}},
		{"OpenELB's layer2 annotation", in(cluster(), svc("a/a", "198.18.0.42")), want{refused: map[string]string{"198.18.0.42": "layer2.openelb.kubesphere.io"}}},
		{"a secondary NIC address (a keepalived VIP)", in(cluster(), svc("a/a", "198.18.0.50")), want{refused: map[string]string{"198.18.0.50": "NIC eth0 on node n2"}}},
		{"a gateway", in(cluster(), svc("a/a", "198.18.0.1")), want{refused: map[string]string{"198.18.0.1": "default gateway of node n1"}}},
		{"another node's gateway", in(cluster(), svc("a/a", "198.18.0.2")), want{refused: map[string]string{"198.18.0.2": "default gateway of node n3"}}},
		{"an API server endpoint", in(cluster(), svc("a/a", "198.18.0.5")), want{refused: map[string]string{"198.18.0.5": "API server"}}},
		{"the control-plane endpoint", in(cluster(), svc("a/a", "198.18.0.6")), want{refused: map[string]string{"198.18.0.6": "controlPlaneEndpoint"}}},
		{"the Service ClusterIP range", in(cluster(), svc("a/a", "198.18.0.241")), want{refused: map[string]string{"198.18.0.241": "Service ClusterIP range"}}},
		{"a node's pod CIDR", in(cluster(), svc("a/a", "198.18.0.65")), want{refused: map[string]string{"198.18.0.65": "pod CIDR 198.18.0.64/30 of node n2"}}},
		{"the cluster's pod CIDR", in(cluster(), svc("a/a", "198.18.0.97")), want{refused: map[string]string{"198.18.0.97": "cluster's pod CIDR"}}},
		{"the network address", in(cluster(), svc("a/a", "198.18.0.0")), want{refused: map[string]string{"198.18.0.0": "network address"}}},
		{"the broadcast address", in(cluster(), svc("a/a", "198.18.0.255")), want{refused: map[string]string{"198.18.0.255": "broadcast address"}}},
		{"the broadcast address of a usingKnownIPs pool", in(with(func(s *addrpolicy.Snapshot) {
			s.Pools = []addrpolicy.Pool{pool("main", "198.18.0.0/24", 0, knownIPs)}
		}), svc("a/a", "198.18.0.255")), want{announce: map[string]string{"198.18.0.255": "eth0"}}},
		{"an address on this node's own links only", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.77"))
			i.Local[addr("198.18.0.77")] = "is an address of eth0 on this node"
			return i
		}(), want{refused: map[string]string{"198.18.0.77": "eth0 on this node"}}},
		{"in no pool", in(cluster(), svc("a/a", "192.0.2.10")), want{refused: map[string]string{"192.0.2.10": "in no pool"}}},
		{"not in the pool the Service names", in(cluster(), Service{Key: "a/a", IP: addr("198.18.0.100"), Pool: "other"}),
			want{refused: map[string]string{"198.18.0.100": "not in Eip other"}}},
		{"in the pool the Service names", in(cluster(), Service{Key: "a/a", IP: addr("198.18.0.100"), Pool: "main"}),
			want{announce: map[string]string{"198.18.0.100": "eth0"}}},
		{"overlapping pools, the newer disabled", in(with(func(s *addrpolicy.Snapshot) {
			s.Pools = append(s.Pools, pool("a-shadow", "198.18.0.100-198.18.0.120", 5, disabled))
		}), svc("a/a", "198.18.0.110")), want{announce: map[string]string{"198.18.0.110": "eth0"}}},
		{"overlapping pools, the older disabled", in(with(func(s *addrpolicy.Snapshot) {
			s.Pools = []addrpolicy.Pool{pool("old", "198.18.0.100-198.18.0.120", 0, disabled), pool("new", "198.18.0.0/24", 5)}
		}), svc("a/a", "198.18.0.110")), want{owners: map[string]string{}}},
		{"overlapping pools, the Service names the newer", in(with(func(s *addrpolicy.Snapshot) {
			s.Pools = append(s.Pools, pool("new", "198.18.0.100-198.18.0.120", 5))
		}), Service{Key: "a/a", IP: addr("198.18.0.110"), Pool: "new"}), want{refused: map[string]string{"198.18.0.110": "held by Eip main"}}},
		{"overlapping pools, the Service names the older", in(with(func(s *addrpolicy.Snapshot) {
			s.Pools = append(s.Pools, pool("new", "198.18.0.100-198.18.0.120", 5))
		}), Service{Key: "a/a", IP: addr("198.18.0.110"), Pool: "main"}), want{announce: map[string]string{"198.18.0.110": "eth0"}}},
		{"a disabled pool is silent", in(with(func(s *addrpolicy.Snapshot) {
			s.Pools = []addrpolicy.Pool{pool("main", "198.18.0.0/24", 0, disabled)}
		}), svc("a/a", "198.18.0.100")), want{owners: map[string]string{}}},
		{"a bgp pool is not Porter's", in(with(func(s *addrpolicy.Snapshot) {
			s.Pools = append(s.Pools, pool("bgp", "203.0.113.0/28", 1, bgp))
		}), svc("a/a", "203.0.113.3")), want{refused: map[string]string{"203.0.113.3": "not a layer2 pool"}}},
		{"a pool whose address does not parse holds nothing", in(with(func(s *addrpolicy.Snapshot) {
			s.Pools = append(s.Pools, pool("broken", "203.0.113.9-203.0.113.1", 1))
		}), svc("a/a", "203.0.113.5")), want{refused: map[string]string{"203.0.113.5": "in no pool"}}},
		{"externalTrafficPolicy Local, endpoint here", func() Input {
			i := in(cluster(), Service{Key: "a/a", IP: addr("198.18.0.100"), Local: true, Endpoints: []string{"n1"}})
			i.Candidates["main"] = []string{"n1", "n2", "n3"}
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth0"}, owners: map[string]string{"198.18.0.100": "n1"}}},
		{"externalTrafficPolicy Local, endpoint elsewhere", func() Input {
			i := in(cluster(), Service{Key: "a/a", IP: addr("198.18.0.100"), Local: true, Endpoints: []string{"n3"}})
			i.Candidates["main"] = []string{"n1", "n2", "n3"}
			return i
		}(), want{owners: map[string]string{"198.18.0.100": "n3"}}},
		{"externalTrafficPolicy Local, no endpoint", in(cluster(), Service{Key: "a/a", IP: addr("198.18.0.100"), Local: true}),
			want{owners: map[string]string{}}},
		{"externalTrafficPolicy Local, endpoint on a node that cannot serve the pool", func() Input {
			i := in(cluster(), Service{Key: "a/a", IP: addr("198.18.0.100"), Local: true, Endpoints: []string{"n2"}})
			i.Candidates["main"] = []string{"n1", "n3"}
			return i
		}(), want{owners: map[string]string{}}},
		{"this node's NIC is down", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			delete(i.NICs, "main")
			return i
		}(), want{owners: map[string]string{"198.18.0.100": "n1"}}},
		{"the pool's own interface", func() Input {
			i := in(with(func(s *addrpolicy.Snapshot) { s.Pools = []addrpolicy.Pool{pool("main", "198.18.0.0/24", 0, onEth1)} }), svc("a/a", "198.18.0.100"))
			i.NICs["main"] = "eth1"
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth1"}}},
		{"held after a conflict", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			i.Held = map[netip.Addr]bool{addr("198.18.0.100"): true}
			return i
		}(), want{owners: map[string]string{}}},
		{"suspect: probed first", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			i.Suspect = map[netip.Addr]bool{addr("198.18.0.100"): true}
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth0"}, probe: []string{"198.18.0.100"}}},
		{"IPv6 outside every pool", in(cluster(), svc("a/a", "2001:db8::10")), want{owners: map[string]string{}, refused: map[string]string{"2001:db8::10": "in no pool"}}},
		{"IPv6 is announced as IPv4 is", in(with(func(s *addrpolicy.Snapshot) {
			s.Pools = append(s.Pools, pool("v6", "2001:db8::/120", 1))
		}), svc("a/a", "2001:db8::10")), want{announce: map[string]string{"2001:db8::10": "eth0"}}},
		{"two Services claim one address", in(cluster(), svc("a/a", "198.18.0.100"), svc("b/b", "198.18.0.100")),
			want{announce: map[string]string{"198.18.0.100": "eth0"}, refused: map[string]string{"198.18.0.100": "also claimed by Service a/a"}}},
		{"two Services that may share one address are served as one", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"), svc("b/b", "198.18.0.100"))
			i.Services[0].Share = lbservice.Sharing{Key: "k", Ports: []string{"TCP/80"}}
			i.Services[1].Share = lbservice.Sharing{Key: "k", Ports: []string{"TCP/443"}}
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth0"}}},
		{"two Services whose ports collide on one address", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"), svc("b/b", "198.18.0.100"))
			i.Services[0].Share = lbservice.Sharing{Key: "k", Ports: []string{"TCP/80"}}
			i.Services[1].Share = lbservice.Sharing{Key: "k", Ports: []string{"TCP/80"}}
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth0"}, refused: map[string]string{"198.18.0.100": "may not share it: both use TCP/80"}}},
		{"many Services", in(cluster(), svc("a/a", "198.18.0.100"), svc("a/b", "198.18.0.101"), svc("a/c", "198.18.0.102")),
			want{announce: map[string]string{"198.18.0.100": "eth0", "198.18.0.101": "eth0", "198.18.0.102": "eth0"}}},
		{"IPv4-mapped Service address", in(cluster(), svc("a/a", "::ffff:198.18.0.100")), want{announce: map[string]string{"198.18.0.100": "eth0"}}},
		{"a refused address among good ones", in(cluster(), svc("a/a", "198.18.0.100"), svc("a/b", "198.18.0.13")),
			want{announce: map[string]string{"198.18.0.100": "eth0"}, refused: map[string]string{"198.18.0.13": "InternalIP of node n3"}}},
		{"a reserved address is refused even while held", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.1"))
			i.Held = map[netip.Addr]bool{addr("198.18.0.1"): true}
			return i
		}(), want{refused: map[string]string{"198.18.0.1": "default gateway"}}},
		{"a held-down member gets nothing while another can serve", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"), svc("a/b", "198.18.0.101"), svc("a/c", "198.18.0.102"))
			i.Candidates["main"] = []string{"n1", "n2"}
			i.Damped = map[string]bool{"n2": true}
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth0", "198.18.0.101": "eth0", "198.18.0.102": "eth0"},
			owners: map[string]string{"198.18.0.100": "n1", "198.18.0.101": "n1", "198.18.0.102": "n1"}}},
		{"a held-down member serves where nobody else can", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			i.Damped = map[string]bool{"n1": true}
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth0"}, owners: map[string]string{"198.18.0.100": "n1"}}},
		{"held down, it keeps what it answers for", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"), svc("a/b", "198.18.0.101"))
			i.Candidates["main"] = []string{"n1", "n2"}
			i.Damped = map[string]bool{"n1": true}
			i.Announcing = map[netip.Addr]string{addr("198.18.0.100"): "eth0"}
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth0"}, owners: map[string]string{"198.18.0.100": "n2", "198.18.0.101": "n2"}}},
		{"restarted and held down, it takes back only what it would own were it not", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"), svc("a/b", "198.18.0.102"))
			i.Candidates["main"] = []string{"n1", "n2"}
			i.Damped = map[string]bool{"n1": true}
			i.Reclaim = map[netip.Addr]bool{addr("198.18.0.100"): true, addr("198.18.0.102"): true}
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth0"}, owners: map[string]string{"198.18.0.100": "n2", "198.18.0.102": "n2"}}},
		{"restarted and held down, it takes back nothing it yielded", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			i.Candidates["main"] = []string{"n1", "n2"}
			i.Damped = map[string]bool{"n1": true}
			i.Reclaim = map[netip.Addr]bool{addr("198.18.0.100"): true}
			i.Yielded = map[netip.Addr]bool{addr("198.18.0.100"): true}
			return i
		}(), want{owners: map[string]string{"198.18.0.100": "n2"}}},
		{"restarted in the minority, it takes back nothing", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			i.Candidates["main"] = []string{"n1", "n2"}
			i.Damped = map[string]bool{"n1": true}
			i.Minority = true
			i.Reclaim = map[netip.Addr]bool{addr("198.18.0.100"): true}
			return i
		}(), want{owners: map[string]string{"198.18.0.100": "n2"}}},
		{"not held down, a restarted speaker decides as any other", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			i.Candidates["main"] = []string{"n1", "n2"}
			i.Damped = map[string]bool{"n2": true}
			i.Reclaim = map[netip.Addr]bool{addr("198.18.0.100"): true}
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth0"}, owners: map[string]string{"198.18.0.100": "n1"}}},
		{"held down, it keeps nothing it yielded", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			i.Candidates["main"] = []string{"n1", "n2"}
			i.Damped = map[string]bool{"n1": true}
			i.Announcing = map[netip.Addr]string{addr("198.18.0.100"): "eth0"}
			i.Yielded = map[netip.Addr]bool{addr("198.18.0.100"): true}
			return i
		}(), want{owners: map[string]string{"198.18.0.100": "n2"}}},
		{"another member held down keeps nothing here", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			i.Candidates["main"] = []string{"n1", "n2"}
			i.Damped = map[string]bool{"n2": true}
			i.Announcing = map[netip.Addr]string{addr("198.18.0.100"): "eth0"}
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth0"}, owners: map[string]string{"198.18.0.100": "n1"}}},
		{"every candidate held down: they decide as if none were", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.101"))
			i.Candidates["main"] = []string{"n1", "n2", "n3"}
			i.Damped = map[string]bool{"n1": true, "n2": true, "n3": true}
			return i
		}(), want{announce: map[string]string{"198.18.0.101": "eth0"}, owners: map[string]string{"198.18.0.101": "n1"}}},
		{"held down while another is not, it gains nothing", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.101"))
			i.Candidates["main"] = []string{"n1", "n2", "n3"}
			i.Damped = map[string]bool{"n1": true, "n2": true}
			return i
		}(), want{owners: map[string]string{"198.18.0.101": "n3"}}},
		{"held down, it still keeps what its own view gives it", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.101"))
			i.Candidates["main"] = []string{"n1", "n2", "n3"}
			i.Damped = map[string]bool{"n1": true, "n2": true, "n3": true}
			i.Announcing = map[netip.Addr]string{addr("198.18.0.101"): "eth0"}
			return i
		}(), want{announce: map[string]string{"198.18.0.101": "eth0"}, owners: map[string]string{"198.18.0.101": "n1"}}},
		{"in the minority, it gains nothing", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			i.Minority = true
			return i
		}(), want{owners: map[string]string{"198.18.0.100": "n1"}}},
		{"in the minority, it keeps what it answers for", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"), svc("a/b", "198.18.0.101"))
			i.Minority = true
			i.Announcing = map[netip.Addr]string{addr("198.18.0.100"): "eth0"}
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth0"}}},
		{"in the minority, it keeps an address a visible member owns", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.100"))
			i.Candidates["main"] = []string{"n2"}
			i.Minority = true
			i.Announcing = map[netip.Addr]string{addr("198.18.0.100"): "eth0"}
			return i
		}(), want{announce: map[string]string{"198.18.0.100": "eth0"}, owners: map[string]string{"198.18.0.100": "n2"}}},
		{"in the minority, it keeps no refused address", func() Input {
			i := in(cluster(), svc("a/a", "198.18.0.1"))
			i.Minority = true
			i.Announcing = map[netip.Addr]string{addr("198.18.0.1"): "eth0"}
			return i
		}(), want{refused: map[string]string{"198.18.0.1": "default gateway"}}},
		{"in the minority, it keeps nothing of a disabled pool", func() Input {
			i := in(with(func(s *addrpolicy.Snapshot) {
				s.Pools = []addrpolicy.Pool{pool("main", "198.18.0.0/24", 0, disabled)}
			}), svc("a/a", "198.18.0.100"))
			i.Minority = true
			i.Announcing = map[netip.Addr]string{addr("198.18.0.100"): "eth0"}
			return i
		}(), want{owners: map[string]string{}}},
	}
	if len(cases) < 40 {
		t.Fatalf("%d cases; the decision deserves at least 40", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.input)
			got := map[string]string{}
			var probes []string
			for ip, tg := range d.Announce {
				got[ip.String()] = tg.Iface
				if tg.Probe {
					probes = append(probes, ip.String())
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(nonNil(c.want.announce)) {
				t.Errorf("announce %v, want %v", got, c.want.announce)
			}
			refused := map[string]string{}
			for _, r := range d.Refused {
				refused[r.IP.String()] = r.Reason
			}
			if len(refused) != len(c.want.refused) {
				t.Errorf("refused %v, want %v", refused, c.want.refused)
			}
			for ip, why := range c.want.refused {
				if !strings.Contains(refused[ip], why) {
					t.Errorf("refusal of %s: %q, want one with %q", ip, refused[ip], why)
				}
				// An address claimed twice is still served for the first.
				if _, ok := got[ip]; ok && !strings.Contains(refused[ip], "also claimed by Service a/a") {
					t.Errorf("%s is both refused and announced", ip)
				}
			}
			if c.want.owners != nil {
				owners := map[string]string{}
				for ip, o := range d.Owners {
					owners[ip.String()] = o
				}
				if fmt.Sprint(owners) != fmt.Sprint(c.want.owners) {
					t.Errorf("owners %v, want %v", owners, c.want.owners)
				}
			}
			if (len(probes) != 0 || len(c.want.probe) != 0) && fmt.Sprint(probes) != fmt.Sprint(c.want.probe) {
				t.Errorf("probe first %v, want %v", probes, c.want.probe)
			}
		})
	}
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// Every member decides alone; together they must answer for each address
// exactly once, and a member leaving moves only the addresses it held.
func TestDecideAgreesAcrossNodes(t *testing.T) {
	var svcs []Service
	for i := 100; i < 200; i++ {
		svcs = append(svcs, svc(fmt.Sprintf("a/s%d", i), fmt.Sprintf("198.18.0.%d", i)))
	}
	decideAll := func(members []string) map[netip.Addr]string {
		who := map[netip.Addr]string{}
		for _, m := range members {
			i := in(cluster(), svcs...)
			i.Node = m
			i.Local = nil
			i.Candidates["main"] = members
			for ip := range Decide(i).Announce {
				if prev, dup := who[ip]; dup {
					t.Fatalf("%s announced by %s and %s", ip, prev, m)
				}
				who[ip] = m
			}
		}
		return who
	}
	before := decideAll([]string{"n1", "n2", "n3"})
	if len(before) != len(svcs) {
		t.Fatalf("%d of %d addresses announced", len(before), len(svcs))
	}
	spread := map[string]int{}
	for _, m := range before {
		spread[m]++
	}
	for _, m := range []string{"n1", "n2", "n3"} {
		if spread[m] < 15 {
			t.Errorf("%s holds %d of 100 addresses: spread %v", m, spread[m], spread)
		}
	}
	after := decideAll([]string{"n1", "n3"})
	for ip, m := range before {
		if m != "n2" && after[ip] != m {
			t.Errorf("%s moved from %s to %s though %s stayed", ip, m, after[ip], m)
		}
		if after[ip] == "" {
			t.Errorf("%s unannounced after n2 left", ip)
		}
	}
}

func TestWhyLost(t *testing.T) {
	ip := netip.MustParseAddr("198.51.100.7")
	for _, tc := range []struct {
		name string
		d    Decision
		want string
	}{
		{"another member owns it", Decision{Owners: map[netip.Addr]string{ip: "node2"}}, "the decision gives it to node2"},
		{"nobody may announce it", Decision{}, "the decision gives it to no member"},
		{"its pool moved NIC", Decision{Announce: map[netip.Addr]Target{ip: {Iface: "eth1"}}, Owners: map[netip.Addr]string{ip: "node1"}}, "its pool is announced on eth1 now"},
		{"the responder is gone", Decision{Announce: map[netip.Addr]Target{ip: {Iface: "eth0"}}, Owners: map[netip.Addr]string{ip: "node1"}}, "the interface's responder is closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := whyLost(ip, "eth0", tc.d, nil); got != tc.want {
				t.Errorf("whyLost = %q, want %q", got, tc.want)
			}
		})
	}
}
