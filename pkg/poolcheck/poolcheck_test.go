package poolcheck

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

func node(name, internal string, mods ...func(*corev1.Node)) addrpolicy.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}}
	n.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: internal},
		{Type: corev1.NodeHostName, Address: name},
	}
	for _, m := range mods {
		m(&n)
	}
	return addrpolicy.NodeFromObject(&n)
}

// reports are the NIC reports of nodes that each have eth0 on LAN1 and
// eth1 on LAN2; host is each node's last octet.
func reports(nodes map[string]int) []addrpolicy.Report {
	var out []addrpolicy.Report
	for n, host := range nodes {
		out = append(out, addrpolicy.ReportFromNodeNICs(&v1alpha1.NodeNICs{
			ObjectMeta: metav1.ObjectMeta{Name: n},
			Status: v1alpha1.NodeNICsStatus{NICs: []v1alpha1.NIC{
				{Name: "eth0", Addresses: []string{fmt.Sprintf("198.18.0.%d/24", host)}},
				{Name: "eth1", Addresses: []string{fmt.Sprintf("198.18.1.%d/24", host), fmt.Sprintf("2001:db8::%d/64", host)}},
			}},
		}))
	}
	return out
}

func pool(name, address string, mods ...func(*v1alpha2.Eip)) *v1alpha2.Eip {
	e := &v1alpha2.Eip{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha2.EipSpec{Address: address, Protocol: "layer2"}}
	for _, m := range mods {
		m(e)
	}
	return e
}

func asDefault(e *v1alpha2.Eip) {
	e.Annotations = map[string]string{v1alpha2.DefaultEipAnnotation: "true"}
}

// lan is a cluster on 198.18.0.0/24 whose nodes report their NICs.
func lan() Facts {
	return Facts{Snapshot: addrpolicy.Snapshot{
		Reports: reports(map[string]int{"orion": 11, "vega": 12, "lyra": 13}),
		Nodes: []addrpolicy.Node{
			node("orion", "198.18.0.11", func(n *corev1.Node) {
				n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.5"})
				n.Spec.PodCIDRs = []string{"10.244.0.0/24"}
			}),
			node("vega", "198.18.0.12", func(n *corev1.Node) {
				n.Annotations[v1alpha2.Layer2AnnotationOpenELB] = "198.18.0.42"
			}),
			node("lyra", "198.18.0.13", func(n *corev1.Node) {
				n.Annotations[v1alpha2.Layer2Annotation] = "198.18.0.43"
			}),
		},
		APIServer:    []netip.Addr{netip.MustParseAddr("198.18.0.1")},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16")},
		Pools:        []addrpolicy.Pool{addrpolicy.PoolFromEip(pool("existing", "198.18.0.150-198.18.0.159", asDefault))},
	}}
}

func TestCheckRefusals(t *testing.T) {
	for _, c := range []struct {
		name     string
		eip      *v1alpha2.Eip
		facts    func(Facts) Facts
		sev      Severity
		want     string
		forcible bool
	}{
		{name: "the guide's lockout", eip: pool("p", "10.13.15.200-10.13.15.202"),
			facts: func(f Facts) Facts {
				return Facts{Snapshot: addrpolicy.Snapshot{Nodes: []addrpolicy.Node{node("orion", "10.13.15.200")}}}
			},
			sev: Refused, want: "10.13.15.200 is the InternalIP of node orion"},
		{name: "external IP", eip: pool("p", "203.0.113.0/29"), sev: Refused, want: "203.0.113.5 is the ExternalIP of node orion"},
		{name: "porter layer2 annotation", eip: pool("p", "198.18.0.43"), sev: Refused,
			want: "198.18.0.43 is the layer2 NIC address of node lyra (annotation layer2.porter.kubesphere.io/v1alpha1)"},
		{name: "openelb layer2 annotation", eip: pool("p", "198.18.0.40-198.18.0.42"), sev: Refused,
			want: "198.18.0.42 is the layer2 NIC address of node vega (annotation layer2.openelb.kubesphere.io/v1alpha1)"},
		{name: "API server", eip: pool("p", "198.18.0.1-198.18.0.5"), sev: Refused,
			want: "198.18.0.1 is an address of the API server (endpoints of service default/kubernetes)"},
		{name: "service CIDR", eip: pool("p", "10.96.0.0/28"), sev: Refused, want: "10.96.0.0-10.96.0.15 overlaps the Service ClusterIP range 10.96.0.0/16"},
		{name: "pod CIDR", eip: pool("p", "10.244.0.10"), sev: Refused, want: "10.244.0.10 overlaps pod CIDR 10.244.0.0/24 of node orion"},
		{name: "other Eip", eip: pool("p", "198.18.0.155-198.18.0.170"), sev: Refused,
			want: "198.18.0.155-198.18.0.159 overlaps Eip existing (198.18.0.150-198.18.0.159)"},
		{name: "second default", eip: pool("p", "198.18.0.200", asDefault), sev: Refused,
			want: "Eip existing is already the default pool"},
		{name: "outside the NIC subnet", eip: pool("p", "198.18.2.10-198.18.2.20"), sev: Forceable, forcible: true,
			want: "the pool 198.18.2.10-198.18.2.20 is not inside 198.18.0.0/24, the subnet of eth0 on node "},
		{name: "straddles the subnet", eip: pool("p", "198.18.0.250-198.18.1.5", func(e *v1alpha2.Eip) { e.Spec.Interface = "eth0"; e.Spec.UsingKnownIPs = true }),
			sev: Forceable, forcible: true, want: "is not inside 198.18.0.0/24"},
		{name: "network address", eip: pool("p", "198.18.0.0-198.18.0.3", func(e *v1alpha2.Eip) { e.Spec.Interface = "eth0" }),
			sev: Refused, want: "198.18.0.0 is the network address of 198.18.0.0/24, the subnet of NIC eth0 on node"},
		{name: "broadcast address", eip: pool("p", "198.18.0.250-198.18.0.255", func(e *v1alpha2.Eip) { e.Spec.Interface = "eth0" }),
			sev: Refused, want: "198.18.0.255 is the broadcast address of 198.18.0.0/24"},
		{name: "a secondary address a speaker reports", eip: pool("p", "198.18.0.30"),
			facts: func(f Facts) Facts {
				f.Snapshot.Reports[0].NICs[0].Prefixes = append(f.Snapshot.Reports[0].NICs[0].Prefixes, netip.MustParsePrefix("198.18.0.30/24"))
				return f
			},
			sev: Refused, want: "198.18.0.30 is an address of NIC eth0 on node"},
		{name: "a gateway", eip: pool("p", "198.18.0.254"),
			facts: func(f Facts) Facts {
				f.Snapshot.Reports[1].Gateways = []netip.Addr{netip.MustParseAddr("198.18.0.254")}
				return f
			},
			sev: Refused, want: "198.18.0.254 is the default gateway of node"},
		{name: "the kubeconfig's API server", eip: pool("p", "198.18.0.7"),
			facts: func(f Facts) Facts {
				f.Snapshot.ControlPlane = []addrpolicy.ControlPlane{{IP: netip.MustParseAddr("198.18.0.7"), Source: "controlPlaneEndpoint of kubeadm's ClusterConfiguration"}}
				return f
			},
			sev: Refused, want: "198.18.0.7 is an address of the API server (controlPlaneEndpoint"},
		{name: "an IPv4-mapped pool holding a node", eip: pool("p", "::ffff:198.18.0.0/120"), sev: Refused, want: "198.18.0.11 is the InternalIP of node orion"},
		{name: "can_reach picks the second LAN", eip: pool("p", "198.18.0.200", func(e *v1alpha2.Eip) { e.Spec.Interface = "can_reach:198.18.1.1" }),
			sev: Forceable, forcible: true, want: "is not inside 198.18.1.0/24, the subnet of eth1"},
		{name: "ClusterIP when the range is unknown", eip: pool("p", "10.0.0.10"),
			facts: func(f Facts) Facts {
				f.Snapshot.ServiceCIDRs, f.ServiceCIDRsUnknown = nil, true
				f.ClusterIPs = map[netip.Addr]string{netip.MustParseAddr("10.0.0.10"): "default/kubernetes"}
				return f
			},
			sev: Refused, want: "10.0.0.10 is the ClusterIP of service default/kubernetes"},
		{name: "reversed range", eip: pool("p", "198.18.0.20-198.18.0.10"), sev: Refused, want: "is reversed"},
		{name: "mixed families", eip: pool("p", "198.18.0.20-2001:db8::1"), sev: Refused, want: "mixes IPv4 and IPv6"},
		{name: "garbage", eip: pool("p", "ten dot thirteen"), sev: Refused, want: `address "ten dot thirteen"`},
		{name: "too large", eip: pool("p", "198.18.0.0/15"), sev: Refused, want: "more than 65536"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := lan()
			if c.facts != nil {
				f = c.facts(f)
			}
			res := Check(c.eip, f)
			var hit *Finding
			for i, fd := range res.Findings {
				if strings.Contains(fd.Message, c.want) {
					hit = &res.Findings[i]
				}
			}
			if hit == nil {
				t.Fatalf("no finding contains %q; got %v", c.want, res.Findings)
			}
			if hit.Severity != c.sev {
				t.Errorf("%q is %v, want %v", hit.Message, hit.Severity, c.sev)
			}
			if !res.Refused(false) {
				t.Error("pool not refused")
			}
			if got := res.Refused(true); got == c.forcible {
				t.Errorf("Refused(force) = %v, want %v", got, !c.forcible)
			}
			if c.sev == Forceable && hit.Risk == "" {
				t.Error("a forceable finding must say what forcing risks")
			}
		})
	}
}

func TestCheckAcceptsASafePool(t *testing.T) {
	res := Check(pool("p", "198.18.0.200-198.18.0.210", func(e *v1alpha2.Eip) { e.Spec.Interface = "eth0" }), lan())
	if res.Refused(false) {
		t.Fatalf("safe pool refused: %v", res.Findings)
	}
	if len(res.Findings) != 0 {
		t.Fatalf("findings for a safe pool: %v", res.Findings)
	}
	if res.Range.String() != "198.18.0.200-198.18.0.210" {
		t.Fatalf("range %s", res.Range)
	}
}

func TestCheckWarnings(t *testing.T) {
	f := lan()
	f.Snapshot.Reports = nil
	res := Check(pool("p", "198.18.0.200", func(e *v1alpha2.Eip) { e.Spec.Protocol = "bgp" }), f)
	if res.Refused(false) {
		t.Fatalf("warnings alone refused the pool: %v", res.Findings)
	}
	joined := ""
	for _, fd := range res.Findings {
		if fd.Severity != Warning {
			t.Errorf("unexpected %v: %s", fd.Severity, fd.Message)
		}
		joined += fd.Message + "\n"
	}
	for _, want := range []string{"protocol bgp: Porter announces layer2 pools only", "cannot check that the pool lies in the subnet of each node's primary NIC"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no warning %q in:\n%s", want, joined)
		}
	}
	// usingKnownIPs allows network and broadcast addresses.
	res = Check(pool("p", "198.18.0.0", func(e *v1alpha2.Eip) { e.Spec.UsingKnownIPs = true; e.Spec.Interface = "eth0" }), lan())
	if res.Refused(false) {
		t.Fatalf("usingKnownIPs did not allow the network address: %v", res.Findings)
	}
}

func TestCheckIgnoresItself(t *testing.T) {
	f := lan()
	e := pool("existing", "198.18.0.150-198.18.0.159", asDefault)
	if res := Check(e, f); res.Refused(false) {
		t.Fatalf("an existing pool overlaps itself: %v", res.Findings)
	}
}
