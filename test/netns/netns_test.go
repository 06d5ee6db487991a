package netns

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/porterlb/porter/test/sandbox"
)

func TestDoDialAndListenStayInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces; CI runs as root")
	}
	t.Setenv("PORTER_LAB_STATE", t.TempDir())
	sb, err := sandbox.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Error(err)
		}
	})
	ns, err := sb.NetnsName("t")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, argv := range [][]string{{"ip", "netns", "add", ns}, {"ip", "-n", ns, "link", "set", "lo", "up"}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", argv, err, out)
		}
	}

	// A listener in the namespace is reachable from it and not from here.
	l, err := Listen(ns, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello from "+ns)
			c.Close()
		}
	}()
	addr := l.Addr().String()

	conn, err := DialContext(ns)(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial inside namespace: %v", err)
	}
	b, _ := io.ReadAll(conn)
	conn.Close()
	if string(b) != "hello from "+ns {
		t.Fatalf("read %q", b)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s is reachable from the host namespace; the listener leaked out", addr)
	}

	// Commands see the namespace's own links only.
	out, err := Command(ctx, ns, "ip", "-o", "link").Output()
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; lines != 1 || !strings.Contains(string(out), "lo:") {
		t.Fatalf("namespace links:\n%s\nwant only lo", out)
	}

	// The calling thread is back in the host namespace afterwards.
	var inside string
	if err := Do(ns, func() error {
		ifs, err := net.Interfaces()
		inside = ifaceNames(ifs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ifs, _ := net.Interfaces()
	if inside != "lo" || ifaceNames(ifs) == "lo" {
		t.Fatalf("inside: %q, host: %q; want only lo inside and more outside", inside, ifaceNames(ifs))
	}
}

func TestDoMissingNamespace(t *testing.T) {
	err := Do("plab-does-not-exist", func() error { return nil })
	if err == nil || !strings.Contains(err.Error(), "plab-does-not-exist") {
		t.Fatalf("err = %v, want one naming the namespace", err)
	}
}

func ifaceNames(ifs []net.Interface) string {
	var n []string
	for _, i := range ifs {
		n = append(n, i.Name)
	}
	return strings.Join(n, ",")
}
