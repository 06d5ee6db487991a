package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The helper process below is this test binary run again: it makes a sandbox
// with a namespace and processes in it, then dies the way the test asks.
const helperEnv = "PORTER_SANDBOX_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

func helper(mode string) int {
	s, err := New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ns, err := s.NetnsName("crash")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		fmt.Fprintln(os.Stderr, err, string(out))
		return 2
	}
	inNS := exec.Command("ip", "netns", "exec", ns, "sleep", "600")
	byPath := exec.Command("sh", "-c", "sleep 600", "lab-process", filepath.Join(s.Dir(), "clusters", "x"))
	for _, c := range []*exec.Cmd{inNS, byPath} {
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	fmt.Printf("%s %s %d %d\n", s.Dir(), ns, inNS.Process.Pid, byPath.Process.Pid)
	switch mode {
	case "panic":
		panic("helper panics on purpose")
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	return 0
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces; CI runs as root")
	}
}

func useRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	t.Setenv("PORTER_LAB_STATE", root)
	return root
}

func TestCloseSweepsEverything(t *testing.T) {
	requireRoot(t)
	useRoot(t)
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := s.NetnsName("close")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ns, NetnsPrefix) {
		t.Fatalf("namespace %q lacks prefix %q", ns, NetnsPrefix)
	}
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	proc := exec.Command("ip", "netns", "exec", ns, "sleep", "600")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() {
		_ = proc.Wait() // killed by the sweep: the error is expected
		close(waited)
	}()

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("process in the sandbox's namespace survived Close")
	}
	assertGone(t, s.Dir(), ns)
}

func TestWatchdogSweepsAfterOwnerDies(t *testing.T) {
	requireRoot(t)
	for _, mode := range []string{"panic", "kill"} {
		t.Run(mode, func(t *testing.T) {
			useRoot(t)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+mode)
			out, _ := cmd.Output()
			f := strings.Fields(string(out))
			if len(f) != 4 {
				t.Fatalf("helper printed %q, want dir, namespace and two pids", out)
			}
			dir, ns := f[0], f[1]
			deadline := time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := os.Stat(dir); os.IsNotExist(err) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			assertGone(t, dir, ns)
			// SIGKILL is delivered at once but a process takes a moment
			// to exit; only one still running after that is a leak.
			deadline = time.Now().Add(5 * time.Second)
			for _, pid := range f[2:] {
				for !exited(pid) {
					if time.Now().After(deadline) {
						t.Errorf("process %s outlived its sandbox", pid)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
}

func TestSweepStaleKeepsLiveOwners(t *testing.T) {
	root := useRoot(t)
	me, err := processIdentity(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(root, "live")
	dead := filepath.Join(root, "dead")
	reused := filepath.Join(root, "reused")
	for dir, owner := range map[string]string{
		live:   me,
		dead:   "999999999 1",
		reused: fmt.Sprintf("%d 1", os.Getpid()), // our pid, another start time
	} {
		if err := os.MkdirAll(filepath.Join(dir, "netns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := SweepStale(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("sandbox of a live owner was swept: %v", err)
	}
	for _, d := range []string{dead, reused} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("stale sandbox %s was kept", filepath.Base(d))
		}
	}
}

func TestStartTimeParsesOwnProcess(t *testing.T) {
	a, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if a == "" || strings.Trim(a, "0123456789") != "" {
		t.Fatalf("start time %q is not a number", a)
	}
	if _, err := startTime(999999999); err == nil {
		t.Fatal("start time of a nonexistent process: want an error")
	}
}

// exited reports whether every thread of pid has exited: the process is
// gone, or a zombie waiting to be reaped.
func exited(pid string) bool {
	tasks, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		return true
	}
	for _, tk := range tasks {
		st, err := os.ReadFile("/proc/" + pid + "/task/" + tk.Name() + "/stat")
		if err == nil && !strings.Contains(string(st), ") Z ") && !strings.Contains(string(st), ") X ") {
			return false
		}
	}
	return true
}

func assertGone(t *testing.T, dir, ns string) {
	t.Helper()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("sandbox directory %s still exists", dir)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), ns) {
		t.Errorf("network namespace %s still exists", ns)
	}
}

// A Sandbox nobody references any more must not be swept while its owner
// runs: only the owner's exit or Close ends it.
func TestUnreachableSandboxIsNotSwept(t *testing.T) {
	requireRoot(t)
	useRoot(t)
	dir, release := func() (string, int) {
		s, err := New()
		if err != nil {
			t.Fatal(err)
		}
		return s.Dir(), s.release
	}()
	for range 3 {
		runtime.GC()
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("sandbox swept while its owner runs: %v", err)
	}
	if err := syscall.Close(release); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("sandbox not swept after its pipe closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
