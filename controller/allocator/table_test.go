package allocator

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/porterlb/porter/pkg/addr"
	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/lbservice"
)

func pool(t *testing.T, name, r string) Pool {
	t.Helper()
	rg, err := addr.Parse(r)
	if err != nil {
		t.Fatal(err)
	}
	return Pool{Pool: addrpolicy.Pool{Name: name, Range: rg}}
}

var ip = netip.MustParseAddr

func TestAssignDefaultAndExhaustion(t *testing.T) {
	tb := NewTable()
	p := pool(t, "demo", "198.18.0.200-198.18.0.202")
	p.Default = true
	p.Excluded = map[netip.Addr]string{ip("198.18.0.201"): "is the InternalIP of node a"}
	tb.SetPools([]Pool{p})

	got1, _, err := tb.Assign(Request{Key: "ns/a", Namespace: "ns"})
	if err != nil || got1 != ip("198.18.0.200") {
		t.Fatalf("first: %v %v", got1, err)
	}
	got2, _, err := tb.Assign(Request{Key: "ns/b", Namespace: "ns"})
	if err != nil || got2 != ip("198.18.0.202") {
		t.Fatalf("second skips the node address: %v %v", got2, err)
	}
	if _, _, err := tb.Assign(Request{Key: "ns/c", Namespace: "ns"}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("third: %v, want exhausted", err)
	}
	// Reconciling a holder again keeps its address.
	again, _, err := tb.Assign(Request{Key: "ns/a", Namespace: "ns", Current: got1})
	if err != nil || again != got1 {
		t.Fatalf("re-assign: %v %v", again, err)
	}
	if ip, ok := tb.Release("ns/a"); !ok || ip != got1 {
		t.Fatalf("release: %v %v", ip, ok)
	}
	got3, _, err := tb.Assign(Request{Key: "ns/c", Namespace: "ns"})
	if err != nil || got3 != got1 {
		t.Fatalf("after release: %v %v", got3, err)
	}
	if u := tb.Used(tb.Pools()[0]); len(u) != 2 || u["198.18.0.200"] != "ns/c" || u["198.18.0.202"] != "ns/b" {
		t.Fatalf("used %v", u)
	}
}

func TestAssignRequested(t *testing.T) {
	tb := NewTable()
	p := pool(t, "demo", "198.18.0.0/24")
	p.Default = true
	p.Excluded = map[netip.Addr]string{ip("198.18.0.11"): "is the InternalIP of node a"}
	tb.SetPools([]Pool{p})

	if got, _, err := tb.Assign(Request{Key: "ns/a", Namespace: "ns", RequestedIP: ip("198.18.0.100")}); err != nil || got != ip("198.18.0.100") {
		t.Fatalf("requested: %v %v", got, err)
	}
	if _, _, err := tb.Assign(Request{Key: "ns/b", Namespace: "ns", RequestedIP: ip("198.18.0.100")}); !errors.Is(err, ErrInUse) {
		t.Fatalf("second ask for the same IP: %v", err)
	}
	if _, _, err := tb.Assign(Request{Key: "ns/b", Namespace: "ns", RequestedIP: ip("198.18.0.11")}); !errors.Is(err, ErrRefused) {
		t.Fatalf("node address: %v", err)
	}
	if _, _, err := tb.Assign(Request{Key: "ns/b", Namespace: "ns", RequestedIP: ip("203.0.113.9")}); !errors.Is(err, ErrNoPool) {
		t.Fatalf("outside every pool: %v", err)
	}
	// Changing the requested IP moves the Service and frees the old one.
	if got, _, err := tb.Assign(Request{Key: "ns/a", Namespace: "ns", RequestedIP: ip("198.18.0.101"), Current: ip("198.18.0.100")}); err != nil || got != ip("198.18.0.101") {
		t.Fatalf("move: %v %v", got, err)
	}
	if h := tb.Holder(ip("198.18.0.100")); h != "" {
		t.Fatalf("old address still held by %s", h)
	}
}

func TestPoolChoice(t *testing.T) {
	tb := NewTable()
	def := pool(t, "default", "198.18.0.200-198.18.0.209")
	def.Default = true
	team := pool(t, "team", "198.18.0.210-198.18.0.219")
	team.Namespaces = []string{"team"}
	sel := pool(t, "labelled", "198.18.0.220-198.18.0.229")
	sel.Selector = labels.SelectorFromSet(labels.Set{"lb": "fast"})
	sel.Priority = -1
	off := pool(t, "off", "198.18.0.230-198.18.0.239")
	off.Disabled = true
	tb.SetPools([]Pool{def, team, sel, off})

	cases := []struct {
		req  Request
		want string
		err  error
	}{
		{Request{Key: "other/s", Namespace: "other"}, "default", nil},
		{Request{Key: "team/s", Namespace: "team"}, "team", nil},
		{Request{Key: "x/s", Namespace: "x", NSLabels: labels.Set{"lb": "fast"}}, "labelled", nil},
		{Request{Key: "team/t", Namespace: "team", NSLabels: labels.Set{"lb": "fast"}}, "labelled", nil},
		{Request{Key: "other/n", Namespace: "other", Pool: "team"}, "", ErrNoPool},
		{Request{Key: "other/m", Namespace: "other", Pool: "missing"}, "", ErrNoPool},
		{Request{Key: "other/d", Namespace: "other", Pool: "off"}, "", ErrExhausted},
	}
	for _, c := range cases {
		_, p, err := tb.Assign(c.req)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: err %v, want %v", c.req.Key, err, c.err)
			}
			continue
		}
		if err != nil || p.Name != c.want {
			t.Errorf("%s: pool %v err %v, want %s", c.req.Key, p, err, c.want)
		}
	}
}

func TestClaimRefusesDoubleHolders(t *testing.T) {
	tb := NewTable()
	if !tb.Claim("ns/a", ip("198.18.0.5"), lbservice.Sharing{}) {
		t.Fatal("first claim refused")
	}
	if tb.Claim("ns/b", ip("198.18.0.5"), lbservice.Sharing{}) {
		t.Fatal("second holder of one address accepted")
	}
	if tb.Holder(ip("198.18.0.5")) != "ns/a" {
		t.Fatal("holder changed")
	}
}

func TestUnassignLetsARetryGetTheSameAddress(t *testing.T) {
	tb := NewTable()
	p := pool(t, "demo", "198.18.0.200-198.18.0.209")
	p.Default = true
	tb.SetPools([]Pool{p})
	got, _, err := tb.Assign(Request{Key: "ns/a", Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	tb.Unassign("ns/a", got)
	again, _, err := tb.Assign(Request{Key: "ns/a", Namespace: "ns"})
	if err != nil || again != got {
		t.Fatalf("retry got %s (%v), want %s", again, err, got)
	}
}

func TestSameSeesOnlyChangesThatAllocate(t *testing.T) {
	base := func() []Pool {
		a, b := pool(t, "a", "198.51.100.0-198.51.100.9"), pool(t, "b", "203.0.113.0-203.0.113.9")
		a.Excluded = map[netip.Addr]string{netip.MustParseAddr("198.51.100.1"): "is the InternalIP of node n1"}
		b.Priority = 1
		return []Pool{a, b}
	}
	tbl := NewTable()
	tbl.SetPools(base())
	if !tbl.Same(base()) {
		t.Fatal("the same pools read as changed")
	}
	for name, change := range map[string]func([]Pool){
		"a node took an address":  func(p []Pool) { p[0].Excluded = map[netip.Addr]string{netip.MustParseAddr("198.51.100.2"): "x"} },
		"a conflict on the wire":  func(p []Pool) { p[1].Conflicts = map[netip.Addr]string{netip.MustParseAddr("203.0.113.3"): "aa:bb"} },
		"a pool was disabled":     func(p []Pool) { p[0].Disabled = true },
		"a range grew":            func(p []Pool) { p[1] = pool(t, "b", "203.0.113.0-203.0.113.20"); p[1].Priority = 1 },
		"a namespace restriction": func(p []Pool) { p[0].Namespaces = []string{"web"} },
		"a pool is gone":          func(p []Pool) { p[1] = pool(t, "c", "203.0.113.0-203.0.113.9"); p[1].Priority = 1 },
	} {
		p := base()
		change(p)
		if tbl.Same(p) {
			t.Errorf("%s: read as unchanged", name)
		}
	}
	if tbl.Same(base()[:1]) {
		t.Error("a removed pool read as unchanged")
	}
}

// Released addresses are not handed out again at once, so a client's
// cached ARP entry or connection does not reach a new Service. A pool
// deleted and made anew under the same name is a new pool, and starts
// from its first address.
func TestCursorBelongsToOnePool(t *testing.T) {
	for _, tc := range []struct {
		name     string
		renewed  bool
		seenGone bool
		want     netip.Addr
	}{
		{"the same pool moves on", false, false, ip("198.18.0.101")},
		{"a pool made anew starts over", true, true, ip("198.18.0.100")},
		{"a pool made anew before its deletion was seen starts over", true, false, ip("198.18.0.100")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := NewTable()
			p := pool(t, "main", "198.18.0.100-198.18.0.109")
			p.Default, p.Created = true, time.Unix(1000, 0)
			tb.SetPools([]Pool{p})
			if got, _, err := tb.Assign(Request{Key: "ns/a", Namespace: "ns"}); err != nil || got != ip("198.18.0.100") {
				t.Fatalf("first: %v %v", got, err)
			}
			tb.Release("ns/a")
			if tc.seenGone {
				tb.SetPools(nil)
			}
			if tc.renewed {
				p.Created = time.Unix(2000, 0)
			}
			tb.SetPools([]Pool{p})
			if got, _, err := tb.Assign(Request{Key: "ns/b", Namespace: "ns"}); err != nil || got != tc.want {
				t.Fatalf("next: %v %v, want %s", got, err, tc.want)
			}
		})
	}
}

func TestSharing(t *testing.T) {
	share := func(key string, ports ...string) lbservice.Sharing {
		return lbservice.Sharing{Key: key, Ports: ports}
	}
	tb := NewTable()
	p := pool(t, "lan", "198.18.0.100-198.18.0.103")
	p.Default = true
	tb.SetPools([]Pool{p})
	assign := func(key string, s lbservice.Sharing, requested netip.Addr) (netip.Addr, error) {
		got, _, err := tb.Assign(Request{Key: key, Namespace: "ns", Share: s, RequestedIP: requested})
		return got, err
	}
	web, err := assign("ns/web", share("k", "TCP/80"), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	// A Service with the same key and other ports joins it, unasked.
	if got, err := assign("ns/tls", share("k", "TCP/443"), netip.Addr{}); err != nil || got != web {
		t.Errorf("ns/tls got %v %v, want to share %s", got, err, web)
	}
	// The same port goes elsewhere when it names no address...
	if got, err := assign("ns/web2", share("k", "TCP/80"), netip.Addr{}); err != nil || got == web {
		t.Errorf("ns/web2 got %v %v, want an address of its own", got, err)
	}
	// ...and waits, with the reason, when it asks for the shared one.
	if _, err := assign("ns/clash", share("k", "TCP/443"), web); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "both use TCP/443") {
		t.Errorf("ns/clash: %v, want in use: both use TCP/443", err)
	}
	if _, err := assign("ns/stranger", share("other", "TCP/8080"), web); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "keys differ") {
		t.Errorf("ns/stranger: %v, want in use: keys differ", err)
	}
	if u := tb.Used(tb.Pools()[0]); u[web.String()] != "ns/web,ns/tls" {
		t.Errorf("used %v", u)
	}
	// Released by one, the address stays with the other.
	tb.Release("ns/web")
	if h := tb.Holders(web); !slices.Equal(h, []string{"ns/tls"}) {
		t.Errorf("holders after a release %v", h)
	}
	tb.Release("ns/tls")
	if h := tb.Holders(web); len(h) != 0 {
		t.Errorf("holders after both released %v", h)
	}
}
