package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/porterlb/porter/test/sandbox"
)

var sb *sandbox.Sandbox

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("netlab: skipping every test: building network namespaces needs root; CI runs as root")
		os.Exit(0)
	}
	var err error
	if sb, err = sandbox.New(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := sb.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox teardown:", err)
		code = 1
	}
	os.Exit(code)
}

func newLab(t *testing.T, opts Options) *Lab {
	t.Helper()
	l, err := New(context.Background(), sb, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return l
}

// serve answers every TCP connection on h:port with the host's name.
func serve(t *testing.T, h *Host, port int) {
	t.Helper()
	ln, err := h.Listen("tcp", netip.AddrPortFrom(h.IP, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, h.Name)
			c.Close()
		}
	}()
}

func fetch(ctx context.Context, from *Host, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := from.Dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestClientResolvesNodeByARPAndConnects(t *testing.T) {
	ctx := context.Background()
	l := newLab(t, Options{Nodes: 2})
	n := l.Nodes[1]
	if !LAN1.Contains(n.IP) || !LAN1.Contains(l.Client.IP) {
		t.Fatalf("addresses %s, %s outside %s", n.IP, l.Client.IP, LAN1)
	}
	serve(t, n, 8080)

	got, err := fetch(ctx, l.Client, netip.AddrPortFrom(n.IP, 8080).String())
	if err != nil || got != n.Name {
		t.Fatalf("TCP from client to %s: %q, %v", n.Name, got, err)
	}
	mac, err := l.Client.Neighbor(ctx, n.IP)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mac, n.MAC) {
		t.Fatalf("client's neighbour entry for %s is %v, want %s's MAC %v", n.IP, mac, n.Name, n.MAC)
	}
	if bytes.Equal(l.Nodes[0].MAC, n.MAC) {
		t.Fatal("two nodes share a MAC")
	}

	// arping sends a real ARP request on the wire and prints who answered.
	out, err := l.Client.Run(ctx, "arping", "-c", "1", "-w", "2", "-I", NIC1, n.IP.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ToLower(out), n.MAC.String()) {
		t.Fatalf("arping output does not name %s's MAC %s:\n%s", n.Name, n.MAC, out)
	}
}

func TestSecondNICIsASeparateLAN(t *testing.T) {
	ctx := context.Background()
	l := newLab(t, Options{Nodes: 2, SecondNIC: true})
	a, b := l.Nodes[0], l.Nodes[1]
	if !LAN2.Contains(a.IP2) || bytes.Equal(a.MAC, a.MAC2) {
		t.Fatalf("second NIC: %s %v (first %v)", a.IP2, a.MAC2, a.MAC)
	}
	out, err := a.Run(ctx, "arping", "-c", "1", "-w", "2", "-I", NIC2, b.IP2.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ToLower(out), b.MAC2.String()) {
		t.Fatalf("ARP on LAN2 did not reach %s's second NIC %s:\n%s", b.Name, b.MAC2, out)
	}
	// The client is on LAN1 only: no frame from LAN2 reaches it. (Linux
	// answers ARP for any local address on any NIC unless arp_ignore says
	// otherwise, so b may still answer for IP2 from its LAN1 NIC.)
	out, _ = l.Client.Run(ctx, "arping", "-c", "1", "-w", "1", "-I", NIC1, b.IP2.String())
	if strings.Contains(strings.ToLower(out), b.MAC2.String()) {
		t.Fatalf("client heard %s's LAN2 NIC; the LANs are not separate:\n%s", b.Name, out)
	}
}

func TestCableAndLinkDownCutTheNodeOff(t *testing.T) {
	ctx := context.Background()
	l := newLab(t, Options{Nodes: 1})
	n := l.Nodes[0]
	serve(t, n, 8080)
	addr := netip.AddrPortFrom(n.IP, 8080).String()
	reachable := func() bool {
		_, err := fetch(ctx, l.Client, addr)
		return err == nil
	}
	if !reachable() {
		t.Fatal("node unreachable before any change")
	}
	for _, c := range []struct {
		name string
		set  func(bool) error
	}{
		{"cable", func(up bool) error { return n.SetCable(ctx, NIC1, up) }},
		{"link", func(up bool) error { return n.SetLink(ctx, NIC1, up) }},
	} {
		if err := c.set(false); err != nil {
			t.Fatal(err)
		}
		if reachable() {
			t.Errorf("%s down: node still reachable", c.name)
		}
		if err := c.set(true); err != nil {
			t.Fatal(err)
		}
		// The host side re-adds no address on link up, but it keeps
		// them; ports forward at once (forward_delay 0).
		deadline := time.Now().Add(5 * time.Second)
		for !reachable() {
			if time.Now().After(deadline) {
				t.Fatalf("%s up: node still unreachable", c.name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := n.SetCable(ctx, "eth9", false); err == nil {
		t.Fatal("SetCable on a NIC the node lacks: want an error")
	}
}

func TestDoRunsGoCodeInTheNode(t *testing.T) {
	l := newLab(t, Options{Nodes: 1})
	n := l.Nodes[0]
	var names []string
	err := n.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "lo,"+NIC1 {
		t.Fatalf("interfaces in %s: %v, want lo and %s", n.Name, names, NIC1)
	}
	wantErr := errors.New("from inside")
	if err := n.Do(func() error { return wantErr }); !errors.Is(err, wantErr) {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
}

func TestCloseRemovesNamespaces(t *testing.T) {
	l, err := New(context.Background(), sb, Options{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{l.LAN, l.Client.Netns, l.Nodes[0].Netns, l.Nodes[1].Netns}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(string(out), n) {
			t.Errorf("namespace %s survived Close", n)
		}
	}
}

func TestNewRejectsBadSizes(t *testing.T) {
	for _, n := range []int{0, -1, 201} {
		if _, err := New(context.Background(), sb, Options{Nodes: n}); err == nil {
			t.Errorf("Nodes: %d: want an error", n)
		}
	}
}

func TestParseNeighbor(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"198.18.0.11 dev eth0 lladdr 02:00:00:00:00:0b REACHABLE\n", "02:00:00:00:00:0b"},
		{"198.18.0.11 dev eth0 lladdr 02:00:00:00:00:0b STALE", "02:00:00:00:00:0b"},
		{"198.18.0.11 dev eth0  FAILED", ""},
		{"198.18.0.11 dev eth0 lladdr 02:00:00:00:00:0b FAILED", ""},
		{"", ""},
	} {
		mac, err := parseNeighbor(c.in)
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if got := mac.String(); got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}
