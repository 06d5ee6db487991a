package addrpolicy

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/addr"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func eip(name, address string, age int, mut ...func(*v1alpha2.Eip)) Pool {
	e := &v1alpha2.Eip{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Minute))},
		Spec:       v1alpha2.EipSpec{Address: address, Protocol: v1alpha2.ProtocolLayer2},
	}
	for _, m := range mut {
		m(e)
	}
	return PoolFromEip(e)
}

func node(name string, internal string, mut ...func(*corev1.Node)) Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internal}, {Type: corev1.NodeHostName, Address: name}}
	for _, m := range mut {
		m(n)
	}
	return NodeFromObject(n)
}

func report(nodeName string, gateways []string, nics ...v1alpha1.NIC) Report {
	return ReportFromNodeNICs(&v1alpha1.NodeNICs{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName},
		Status:     v1alpha1.NodeNICsStatus{NICs: nics, Gateways: gateways, UpdatedAt: metav1.NewTime(t0)},
	})
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// lab is a cluster like the network lab: three nodes on 198.18.0.0/24, one
// with a secondary address and a second NIC, a gateway, and an API server
// reached through a VIP.
func lab() Snapshot {
	return Snapshot{
		Pools: []Pool{
			eip("main", "198.18.0.0/24", 0),
			eip("edge", "198.18.0.250-198.18.0.255", 1, func(e *v1alpha2.Eip) { e.Spec.UsingKnownIPs = true }),
			eip("bgp", "203.0.113.0/28", 2, func(e *v1alpha2.Eip) { e.Spec.Protocol = v1alpha2.ProtocolBGP }),
			eip("broken", "198.18.1.9-198.18.1.1", 3),
			eip("mapped", "::ffff:198.51.100.0/124", 4),
		},
		Nodes: []Node{
			node("node1", "198.18.0.11"),
			node("node2", "198.18.0.12", func(n *corev1.Node) {
				n.Annotations[v1alpha2.Layer2AnnotationOpenELB] = "198.18.0.42"
				n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "::ffff:198.18.0.43"})
				n.Spec.PodCIDRs = []string{"198.18.0.64/30"}
			}),
		},
		Reports: []Report{
			report("node1", []string{"198.18.0.1"},
				v1alpha1.NIC{Name: "eth0", Addresses: []string{"198.18.0.11/24", "198.18.0.30/24"}}),
			report("node3", nil,
				v1alpha1.NIC{Name: "eth1", Addresses: []string{"198.51.100.7/28"}}),
		},
		APIServer:    []netip.Addr{ip("198.18.0.5")},
		ControlPlane: []ControlPlane{{IP: ip("198.18.0.6"), Source: "test"}},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.0.128/30")},
		PodCIDRs:     []netip.Prefix{netip.MustParsePrefix("198.18.0.96/30")},
	}
}

func TestCheck(t *testing.T) {
	p := New(lab())
	for _, c := range []struct {
		ip, named string
		pool      string // the pool that holds it, "" for none
		class     Class  // set: refused for this class
		refused   string // else, when set: refused with this text
	}{
		{"198.18.0.100", "", "main", "", ""},
		{"198.18.0.100", "main", "main", "", ""},
		{"::ffff:198.18.0.100", "", "main", "", ""},
		{"198.18.0.11", "", "main", ClassNode, ""},          // InternalIP
		{"::ffff:198.18.0.11", "", "main", ClassNode, ""},   // the same, mapped
		{"198.18.0.42", "", "main", ClassNode, ""},          // OpenELB layer2 annotation
		{"198.18.0.43", "", "main", ClassNode, ""},          // mapped ExternalIP
		{"198.18.0.30", "", "main", ClassNIC, ""},           // secondary address no Node names
		{"198.18.0.1", "", "main", ClassGateway, ""},        // default gateway
		{"198.18.0.5", "", "main", ClassAPIServer, ""},      // endpoint
		{"198.18.0.6", "", "main", ClassAPIServer, ""},      // kubeconfig server
		{"198.18.0.129", "", "main", ClassServiceCIDR, ""},  // ClusterIP range
		{"198.18.0.65", "", "main", ClassPodCIDR, ""},       // node's pod CIDR
		{"198.18.0.97", "", "main", ClassPodCIDR, ""},       // cluster pod CIDR
		{"198.18.0.0", "", "main", ClassSubnet, ""},         // network address
		{"198.18.0.255", "", "main", ClassSubnet, ""},       // broadcast, and main is older than edge
		{"198.18.0.251", "edge", "main", ClassPool, ""},     // overlap: main is older
		{"198.18.0.251", "", "main", "", ""},                // ...and main gives it
		{"203.0.113.3", "", "bgp", "", "not a layer2 pool"}, // bgp pool holds it
		{"198.18.1.5", "", "", "", "in no pool"},            // the reversed range holds nothing
		{"198.51.100.3", "", "mapped", "", ""},              // a mapped CIDR is IPv4
		{"198.51.100.0", "", "mapped", ClassSubnet, ""},     // network address of node3's eth1
		{"198.51.100.7", "", "mapped", ClassNIC, ""},        // node3's eth1, reported only
		{"198.18.0.100", "other", "main", "", "not in Eip other"},
		{"192.0.2.1", "", "", "", "in no pool"},
	} {
		v := p.Check(ip(c.ip), c.named)
		got := ""
		if v.Pool != nil {
			got = v.Pool.Name
		}
		if got != c.pool {
			t.Errorf("Check(%s, %q): pool %q, want %q", c.ip, c.named, got, c.pool)
		}
		switch {
		case c.class != "":
			if !v.Refused || v.Reason.Class != c.class {
				t.Errorf("Check(%s, %q) = %+v, want refused as %s", c.ip, c.named, v, c.class)
			}
		case c.refused != "":
			if !v.Refused || !strings.Contains(v.Reason.Text, c.refused) {
				t.Errorf("Check(%s, %q) = %+v, want refused with %q", c.ip, c.named, v, c.refused)
			}
		case v.Refused:
			t.Errorf("Check(%s, %q) refused: %s", c.ip, c.named, v.Reason)
		}
	}
}

func TestUsingKnownIPsWaivesSubnetEdgesOnly(t *testing.T) {
	s := lab()
	s.Pools = []Pool{eip("edge", "198.18.0.250-198.18.0.255", 0, func(e *v1alpha2.Eip) { e.Spec.UsingKnownIPs = true })}
	p := New(s)
	if v := p.Check(ip("198.18.0.255"), ""); v.Refused {
		t.Errorf("broadcast in a usingKnownIPs pool refused: %s", v.Reason)
	}
	s.Reports[0].Gateways = []netip.Addr{ip("198.18.0.254")}
	p = New(s)
	if v := p.Check(ip("198.18.0.254"), ""); !v.Refused || v.Reason.Class != ClassGateway {
		t.Errorf("a gateway in a usingKnownIPs pool: %+v, want refused", v)
	}
}

func TestDisabledNewerPoolDoesNotTakeTheOlderPoolsAddresses(t *testing.T) {
	s := Snapshot{Pools: []Pool{
		eip("a-new", "198.18.0.100-198.18.0.120", 5, func(e *v1alpha2.Eip) { e.Spec.Disable = true }),
		eip("z-old", "198.18.0.100-198.18.0.109", 0),
	}}
	p := New(s)
	v := p.Check(ip("198.18.0.105"), "")
	if v.Refused || v.Pool.Name != "z-old" || !v.Pool.Announced() {
		t.Fatalf("Check = %+v, want held and announced by the older z-old", v)
	}
	if v := p.Check(ip("198.18.0.115"), ""); v.Refused || v.Pool.Name != "a-new" || v.Pool.Announced() {
		t.Fatalf("Check = %+v, want a-new's own address, not announced while disabled", v)
	}
}

func TestRefusals(t *testing.T) {
	p := New(lab())
	main, _ := p.Pool("main")
	var got []string
	for _, r := range p.Refusals(main) {
		got = append(got, r.Range.String()+" "+string(r.Reason.Class))
	}
	want := []string{
		"198.18.0.0 subnet", "198.18.0.1 gateway", "198.18.0.5 apiserver", "198.18.0.6 apiserver",
		"198.18.0.11 node", "198.18.0.12 node", "198.18.0.30 nic", "198.18.0.42 node", "198.18.0.43 node",
		"198.18.0.64-198.18.0.67 pod-cidr", "198.18.0.96-198.18.0.99 pod-cidr",
		"198.18.0.128-198.18.0.131 service-cidr", "198.18.0.255 subnet",
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("Refusals(main):\n got %v\nwant %v", got, want)
	}

	edge, _ := p.Pool("edge")
	rs := p.Refusals(edge)
	if len(rs) != 1 || rs[0].Range.String() != "198.18.0.250-198.18.0.255" || rs[0].Reason.Class != ClassPool {
		t.Errorf("Refusals(edge) = %v, want the whole range held by main", rs)
	}

	// A pool about to be created is younger than all.
	cand := eip("new", "198.18.0.8-198.18.0.12", 99)
	rs = p.Refusals(&cand)
	var texts []string
	for _, r := range rs {
		texts = append(texts, r.Range.String()+" "+r.Reason.Text)
	}
	joined := strings.Join(texts, "; ")
	for _, w := range []string{"198.18.0.11 is the InternalIP of node node1", "198.18.0.8-198.18.0.12 overlaps Eip main"} {
		if !strings.Contains(joined, w) {
			t.Errorf("Refusals(new) = %s, want %q", joined, w)
		}
	}
}

func TestControlPlaneSources(t *testing.T) {
	ci := ControlPlaneFromClusterInfo(map[string]string{"kubeconfig": `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: AAAA
    server: https://198.18.0.6:6443
  name: ""
- cluster:
    server: https://api.example:6443
`})
	if len(ci) != 1 || ci[0].IP != ip("198.18.0.6") {
		t.Errorf("cluster-info: %v", ci)
	}
	kf := FromKubeadmConfig(map[string]string{"ClusterConfiguration": `apiVersion: kubeadm.k8s.io/v1beta4
controlPlaneEndpoint: "[2001:db8::6]:6443"
networking:
  serviceSubnet: 198.18.128.0/20,2001:db8:1::/112
  podSubnet: 198.19.0.0/16
`})
	if len(kf.ControlPlane) != 1 || kf.ControlPlane[0].IP != ip("2001:db8::6") || len(kf.ServiceCIDRs) != 2 || len(kf.PodCIDRs) != 1 {
		t.Errorf("kubeadm-config: %+v", kf)
	}
	if got := FromKubeadmConfig(map[string]string{"ClusterConfiguration": "controlPlaneEndpoint: 198.18.0.7"}); len(got.ControlPlane) != 1 || got.ControlPlane[0].IP != ip("198.18.0.7") {
		t.Errorf("endpoint without a port: %+v", got)
	}
	if got := FromKubeadmConfig(map[string]string{"ClusterConfiguration": ": not yaml ["}); len(got.ControlPlane) != 0 {
		t.Errorf("bad YAML: %+v", got)
	}
}

func TestChooseNIC(t *testing.T) {
	r := report("node3", nil,
		v1alpha1.NIC{Name: "eth0", Addresses: []string{"198.18.0.13/24"}},
		v1alpha1.NIC{Name: "eth1", Addresses: []string{"198.51.100.7/28", "198.18.1.13/24"}})
	routes := func(ip netip.Addr) (string, error) {
		switch {
		case netip.MustParsePrefix("192.0.2.0/24").Contains(ip):
			return "eth1", nil // behind a gateway on eth1
		case netip.MustParsePrefix("203.0.113.0/24").Contains(ip):
			return "", errors.New("network is unreachable")
		case netip.MustParsePrefix("198.51.100.128/25").Contains(ip):
			return "eth9", nil
		}
		return "eth0", nil
	}
	for _, c := range []struct {
		name      string
		iface     string
		primaries []string
		route     RouteLookup
		want      string // "" for an error
		err       string
	}{
		{"primary on eth0", "", []string{"198.18.0.13"}, nil, "eth0", ""},
		{"layer2 address first", "", []string{"198.18.1.13", "198.18.0.13"}, nil, "eth1", ""},
		{"layer2 address held nowhere falls back to the InternalIP", "", []string{"198.18.7.7", "198.18.0.13"}, nil, "eth0", ""},
		{"named NIC", "eth1", []string{"198.18.0.13"}, nil, "eth1", ""},
		{"named NIC missing", "eth9", nil, nil, "", "has no interface eth9"},
		{"neither address held", "", []string{"192.0.2.1"}, nil, "", "no interface holds"},
		{"no addresses at all", "", nil, nil, "", "neither a layer2 address nor an InternalIP"},
		{"can_reach by subnet", "can_reach:198.51.100.1", nil, nil, "eth1", ""},
		{"can_reach mapped", "can_reach:::ffff:198.51.100.1", nil, nil, "eth1", ""},
		{"can_reach off every subnet without routes", "can_reach:192.0.2.1", nil, nil, "", "no NIC's subnet holds"},
		{"can_reach through a gateway with routes", "can_reach:192.0.2.1", nil, routes, "eth1", ""},
		{"can_reach on a subnet follows the route table", "can_reach:198.51.100.1", nil, routes, "eth0", ""},
		{"can_reach unreachable", "can_reach:203.0.113.1", nil, routes, "", "network is unreachable"},
		{"can_reach through a NIC not in the list", "can_reach:198.51.100.200", nil, routes, "", "which this node does not have"},
		{"can_reach nonsense", "can_reach:nonsense", nil, routes, "", "want an IP"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var prim []netip.Addr
			for _, p := range c.primaries {
				prim = append(prim, ip(p))
			}
			n, err := ChooseNIC(r.NICs, c.iface, prim, c.route)
			switch {
			case c.want != "" && (err != nil || n.Name != c.want):
				t.Errorf("ChooseNIC(%q, %v) = %q, %v; want %q", c.iface, prim, n.Name, err, c.want)
			case c.want == "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Errorf("ChooseNIC(%q, %v) = %q, %v; want an error with %q", c.iface, prim, n.Name, err, c.err)
			}
			if c.route == nil {
				if got, ok := r.NICFor(c.iface, prim...); ok != (c.want != "") || got.Name != c.want {
					t.Errorf("NICFor(%q, %v) = %q, %v; want ChooseNIC's answer %q", c.iface, prim, got.Name, ok, c.want)
				}
			}
		})
	}
}

func TestFold(t *testing.T) {
	a := Reason{ClassPool, "a"}
	b := Reason{ClassNode, "b"}
	r := func(f, l string) addr.Range { return addr.Range{First: ip(f), Last: ip(l)} }
	got := fold([]Reserved{{r("192.0.2.5", "192.0.2.5"), a}, {r("192.0.2.1", "192.0.2.4"), a}, {r("192.0.2.3", "192.0.2.3"), b}, {r("192.0.2.9", "192.0.2.9"), a}})
	var s []string
	for _, x := range got {
		s = append(s, x.Range.String()+" "+x.Reason.Text)
	}
	if w := "192.0.2.1-192.0.2.5 a, 192.0.2.3 b, 192.0.2.9 a"; strings.Join(s, ", ") != w {
		t.Errorf("fold = %v, want %s", s, w)
	}
}

func TestAdmits(t *testing.T) {
	open := eip("open", "192.0.2.0/28", 0)
	named := eip("named", "192.0.2.16/28", 0, func(e *v1alpha2.Eip) { e.Spec.Namespaces = []string{"team"} })
	labelled := eip("labelled", "192.0.2.32/28", 0, func(e *v1alpha2.Eip) { e.Spec.NamespaceSelector = map[string]string{"lb": "fast"} })
	for _, c := range []struct {
		pool   Pool
		ns     string
		labels map[string]string
		want   bool
	}{
		{open, "any", nil, true},
		{named, "team", nil, true},
		{named, "other", nil, false},
		{labelled, "other", map[string]string{"lb": "fast"}, true},
		{labelled, "other", map[string]string{"lb": "slow"}, false},
	} {
		if got := c.pool.Admits(c.ns, c.labels); got != c.want {
			t.Errorf("%s.Admits(%s, %v) = %v, want %v", c.pool.Name, c.ns, c.labels, got, c.want)
		}
	}
}

func TestReportFromNodeNICs(t *testing.T) {
	r := ReportFromNodeNICs(&v1alpha1.NodeNICs{
		ObjectMeta: metav1.ObjectMeta{Name: "node1"},
		Status: v1alpha1.NodeNICsStatus{
			NICs:      []v1alpha1.NIC{{Name: "eth0", Addresses: []string{"::ffff:198.18.0.11/120", "junk"}}},
			Gateways:  []string{"::ffff:198.18.0.1", "nonsense"},
			Conflicts: []v1alpha1.AddressConflict{{Address: "198.18.0.40", MAC: "02:00:00:00:00:01"}},
			Speaker: &v1alpha1.SpeakerStatus{Addresses: []v1alpha1.AnnouncedAddress{
				{Address: "::ffff:198.18.0.50", Interface: "eth0"}, {Address: "bad", Interface: "eth0"},
			}},
		},
	})
	if r.Published {
		t.Error("a report without updatedAt counts as published")
	}
	if len(r.NICs) != 1 || len(r.NICs[0].Prefixes) != 1 || r.NICs[0].Prefixes[0] != netip.MustParsePrefix("198.18.0.11/24") {
		t.Errorf("NICs = %+v, want eth0 with 198.18.0.11/24 unmapped", r.NICs)
	}
	if len(r.Gateways) != 1 || r.Gateways[0] != ip("198.18.0.1") {
		t.Errorf("Gateways = %v, want [198.18.0.1]", r.Gateways)
	}
	if len(r.Conflicts) != 1 || r.Conflicts[0].Node != "node1" || r.Conflicts[0].IP != ip("198.18.0.40") {
		t.Errorf("Conflicts = %+v", r.Conflicts)
	}
	if len(r.Announced) != 1 || r.Announced[ip("198.18.0.50")] != "eth0" {
		t.Errorf("Announced = %v, want 198.18.0.50 on eth0", r.Announced)
	}
}

func TestServesUnclassed(t *testing.T) {
	def := func(e *v1alpha2.Eip) {
		e.Annotations = map[string]string{v1alpha2.DefaultEipAnnotation: "true"}
	}
	serve := func(v string) func(*v1alpha2.Eip) {
		return func(e *v1alpha2.Eip) { e.Annotations[v1alpha2.ServeUnclassedAnnotation] = v }
	}
	bgp := func(e *v1alpha2.Eip) { e.Spec.Protocol = v1alpha2.ProtocolBGP }
	for _, tc := range []struct {
		name  string
		pools []Pool
		want  bool
	}{
		{"no pools", nil, false},
		{"a default pool that asks", []Pool{eip("lan", "198.18.0.100-198.18.0.109", 1, def, serve("true"))}, true},
		{"a default pool that opts out", []Pool{eip("lan", "198.18.0.100-198.18.0.109", 1, def, serve("false"))}, false},
		{"a default pool that says nothing (OpenELB's)", []Pool{eip("lan", "198.18.0.100-198.18.0.109", 1, def)}, false},
		{"asked by a pool that is not the default", []Pool{eip("lan", "198.18.0.100-198.18.0.109", 1, func(e *v1alpha2.Eip) {
			e.Annotations = map[string]string{v1alpha2.ServeUnclassedAnnotation: "true"}
		})}, false},
		{"asked by a bgp default pool", []Pool{eip("lan", "198.18.0.100-198.18.0.109", 1, def, serve("true"), bgp)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Snapshot{Pools: tc.pools})
			if got := p.ServesUnclassed(); got != tc.want {
				t.Errorf("ServesUnclassed = %v, want %v", got, tc.want)
			}
			svc := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
			if got := p.Serves(svc); got != tc.want {
				t.Errorf("Serves(a Service with no class) = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNodeSelector(t *testing.T) {
	rack := func(sel *metav1.LabelSelector) func(*v1alpha2.Eip) {
		return func(e *v1alpha2.Eip) { e.Spec.NodeSelector = sel }
	}
	labelled := func(l map[string]string) func(*corev1.Node) { return func(n *corev1.Node) { n.Labels = l } }
	nodes := []Node{
		node("a", "198.18.0.11", labelled(map[string]string{"rack": "1"})),
		node("b", "198.18.0.12", labelled(map[string]string{"rack": "2"})),
		node("c", "198.18.0.13"),
	}
	for _, tc := range []struct {
		name    string
		sel     *metav1.LabelSelector
		want    []string
		wantErr bool
	}{
		{"no selector: every node", nil, []string{"a", "b", "c", "unknown"}, false},
		{"empty selector: every known node", &metav1.LabelSelector{}, []string{"a", "b", "c"}, false},
		{"match labels", &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "1"}}, []string{"a"}, false},
		{"match expressions", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "rack", Operator: metav1.LabelSelectorOpExists}}}, []string{"a", "b"}, false},
		{"unreadable: no node", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "rack", Operator: "Sometimes"}}}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := eip("lan", "198.18.0.100-198.18.0.109", 1, rack(tc.sel))
			if (pl.NodeSelectorErr != nil) != tc.wantErr {
				t.Fatalf("NodeSelectorErr = %v, want an error: %v", pl.NodeSelectorErr, tc.wantErr)
			}
			p := New(Snapshot{Pools: []Pool{pl}, Nodes: nodes})
			var got []string
			for _, n := range []string{"a", "b", "c", "unknown"} {
				if p.Selects(&pl, n) {
					got = append(got, n)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("selected %v, want %v", got, tc.want)
			}
		})
	}
}

// Every reserved class holds in IPv6 as in IPv4, and two are IPv6's own:
// link-local addresses and each subnet's router anycast address, which
// usingKnownIPs does not waive.
func TestCheckIPv6(t *testing.T) {
	p := New(Snapshot{
		Pools: []Pool{
			eip("v6", "2001:db8:1::/112", 0, func(e *v1alpha2.Eip) { e.Spec.UsingKnownIPs = true }),
			eip("v6-later", "2001:db8:1::ff00-2001:db8:1::ffff", 1),
			eip("ll", "fe80::100-fe80::1ff", 2),
		},
		Nodes: []Node{node("node1", "2001:db8:1::11", func(n *corev1.Node) {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "2001:db8:1::12"})
			n.Spec.PodCIDRs = []string{"2001:db8:1::200/120"}
		})},
		Reports: []Report{report("node1", []string{"2001:db8:1::1"},
			v1alpha1.NIC{Name: "eth0", Addresses: []string{"2001:db8:1::11/64", "2001:db8:1::30/64", "fe80::11/64"}})},
		APIServer:    []netip.Addr{ip("2001:db8:1::5")},
		ControlPlane: []ControlPlane{{IP: ip("2001:db8:1::6"), Source: "test"}},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::100/120")},
		PodCIDRs:     []netip.Prefix{netip.MustParsePrefix("2001:db8:1::300/120")},
	})
	for _, c := range []struct {
		ip    string
		class Class // "" for allowed
	}{
		{"2001:db8:1::99", ""},
		{"2001:db8:1::11", ClassNode},
		{"2001:db8:1::12", ClassNode},
		{"2001:db8:1::30", ClassNIC},
		{"2001:db8:1::1", ClassGateway},
		{"2001:db8:1::5", ClassAPIServer},
		{"2001:db8:1::6", ClassAPIServer},
		{"2001:db8:1::105", ClassServiceCIDR},
		{"2001:db8:1::205", ClassPodCIDR},
		{"2001:db8:1::305", ClassPodCIDR},
		{"2001:db8:1::", ClassSubnet}, // subnet-router anycast, despite usingKnownIPs
		{"fe80::105", ClassLinkLocal},
		{"2001:db8:1::ff05", ClassPool}, // named: v6-later's, but v6 is older
	} {
		named := ""
		if c.class == ClassPool {
			named = "v6-later"
		}
		v := p.Check(ip(c.ip), named)
		switch {
		case c.class == "" && v.Refused:
			t.Errorf("%s refused: %s", c.ip, v.Reason)
		case c.class != "" && (!v.Refused || v.Reason.Class != c.class):
			t.Errorf("%s = %+v, want refused as %s", c.ip, v, c.class)
		}
	}
}
