// Package sandbox owns what a test process creates on the machine: network
// namespaces, lab cluster work directories and the processes running from
// them. Everything is swept when the process ends, however it ends: a
// watchdog process sweeps when the owner closes a pipe, which the kernel does
// for it on exit, panic or SIGKILL. Sandboxes whose owner is gone are also
// swept when the next one is created.
package sandbox

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultRoot is on tmpfs, so a reboot, which also drops every network
// namespace, clears it too.
const DefaultRoot = "/run/porter-lab"

// NetnsPrefix starts the name of every network namespace a sandbox makes, so
// leftovers are easy to find.
const NetnsPrefix = "plab-"

const ownerFile = "owner"

// deleteNetnsFn defines delete_netns NAME: kill the processes in the
// namespace, then delete it if it still exists.
const deleteNetnsFn = `
delete_netns() {
  for pid in $(ip netns pids "$1" 2>/dev/null); do
    kill -9 "$pid" 2>/dev/null
  done
  if ip netns list | grep -q -- "^$1\( \|$\)"; then
    ip netns del "$1"
  fi
}
`

// sweepScript removes one sandbox directory and everything that hangs off it.
// Processes are found by path (every control-plane process names a file in
// its work directory) and by network namespace. It runs in two ways: as a
// watchdog that first waits for its standard input to reach EOF, and
// directly, for stale sandboxes.
const sweepScript = deleteNetnsFn + `
dir=$1
if [ "$2" = wait ]; then
  cat >/dev/null
fi
for pid in $(pgrep -f -- "$dir/"); do
  [ "$pid" = "$$" ] || kill -9 "$pid" 2>/dev/null
done
for f in "$dir"/netns/*; do
  [ -e "$f" ] || continue
  delete_netns "$(basename "$f")"
done
rm -rf "$dir"
`

// Sandbox is one test process's share of the machine.
type Sandbox struct {
	id      string
	dir     string
	release int // write end of the watchdog's pipe; -1 once closed
	reaper  *exec.Cmd
}

// Root is where sandboxes live: PORTER_LAB_STATE, else DefaultRoot for
// root and a per-user directory for anyone else.
func Root() string {
	if r := os.Getenv("PORTER_LAB_STATE"); r != "" {
		return r
	}
	if uid := os.Geteuid(); uid != 0 {
		return filepath.Join(os.TempDir(), "porter-lab-"+strconv.Itoa(uid))
	}
	return DefaultRoot
}

// New sweeps stale sandboxes, then creates one owned by this process and
// starts its watchdog.
func New() (*Sandbox, error) {
	root := Root()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("create sandbox root: %w", err)
	}
	if err := SweepStale(root); err != nil {
		return nil, err
	}
	id, err := randomID()
	if err != nil {
		return nil, err
	}
	// Build the directory under a hidden name and rename it into place, so a
	// sandbox is never visible without its owner file.
	tmp := filepath.Join(root, "."+id)
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(filepath.Join(tmp, "netns"), 0o755); err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	owner, err := processIdentity(os.Getpid())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, ownerFile), []byte(owner), 0o644); err != nil {
		return nil, fmt.Errorf("write sandbox owner: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("publish sandbox: %w", err)
	}

	// The write end is a raw descriptor, not an *os.File: a File's
	// finalizer would close it, and so start the sweep, as soon as the
	// Sandbox became unreachable, while the owner still runs.
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("create watchdog pipe: %w", err)
	}
	r := os.NewFile(uintptr(fds[0]), "sandbox-watchdog")
	reaper := exec.Command("sh", "-c", sweepScript, "porter-lab-watchdog", dir, "wait")
	reaper.Stdin = r
	// Its own process group keeps it alive through a Ctrl-C or a test
	// timeout aimed at the owner's group.
	reaper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := reaper.Start(); err != nil {
		_ = r.Close()
		_ = syscall.Close(fds[1])
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start sandbox watchdog: %w", err)
	}
	_ = r.Close()
	return &Sandbox{id: id, dir: dir, release: fds[1], reaper: reaper}, nil
}

// ID is short and unique among live sandboxes.
func (s *Sandbox) ID() string { return s.id }

// Dir is the sandbox directory. Work directories of processes that must die
// with the sandbox belong under it.
func (s *Sandbox) Dir() string { return s.dir }

// NetnsName records a network namespace for role and returns its name. Call
// it before creating the namespace, so that a crash between the two still
// leaves a record to sweep.
func (s *Sandbox) NetnsName(role string) (string, error) {
	name := NetnsPrefix + s.id + "-" + role
	if err := os.WriteFile(filepath.Join(s.dir, "netns", name), nil, 0o644); err != nil {
		return "", fmt.Errorf("record network namespace %s: %w", name, err)
	}
	return name, nil
}

// Close sweeps everything in the sandbox and waits for the sweep to finish.
func (s *Sandbox) Close() error {
	if s.release < 0 {
		return nil
	}
	err := syscall.Close(s.release)
	s.release = -1
	if werr := s.reaper.Wait(); werr != nil {
		err = errors.Join(err, fmt.Errorf("sandbox watchdog: %w", werr))
	}
	if _, serr := os.Stat(s.dir); serr == nil {
		err = errors.Join(err, fmt.Errorf("sandbox %s still exists after its sweep", s.dir))
	}
	return err
}

// SweepStale removes every sandbox under root whose owner process is gone.
func SweepStale(root string) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("list sandboxes: %w", err)
	}
	var errs []error
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		if strings.HasPrefix(e.Name(), ".") {
			// Half-made: only stale once its maker had ample time.
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
				errs = append(errs, os.RemoveAll(dir))
			}
			continue
		}
		owner, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err == nil && ownerAlive(string(owner)) {
			continue
		}
		out, err := exec.Command("sh", "-c", sweepScript, "porter-lab-sweep", dir, "now").CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep stale sandbox %s: %w: %s", dir, err, bytes.TrimSpace(out)))
		}
	}
	return errors.Join(errs...)
}

func randomID() (string, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make sandbox id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// processIdentity is "pid starttime": the start time tells a live owner from
// an unrelated process that later got the same pid.
func processIdentity(pid int) (string, error) {
	st, err := startTime(pid)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(pid) + " " + st, nil
}

func ownerAlive(identity string) bool {
	fields := strings.Fields(identity)
	if len(fields) != 2 {
		return false
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil {
		return false
	}
	st, err := startTime(pid)
	return err == nil && st == fields[1]
}

func startTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", fmt.Errorf("read process %d status: %w", pid, err)
	}
	// The command name (field 2) may hold spaces and parentheses; fields
	// after its closing parenthesis are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", fmt.Errorf("parse process %d status", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// starttime is field 22 overall, the 20th after the command name.
	if len(f) < 20 {
		return "", fmt.Errorf("parse process %d status: too few fields", pid)
	}
	return f[19], nil
}

// DeleteNetns kills the processes in the namespace name, deletes it and drops
// its record. A namespace that is already gone is not an error.
func (s *Sandbox) DeleteNetns(name string) error {
	script := deleteNetnsFn + `delete_netns "$1"`
	if out, err := exec.Command("sh", "-c", script, "porter-lab-netns-del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("delete network namespace %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	if err := os.Remove(filepath.Join(s.dir, "netns", name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("drop record of network namespace %s: %w", name, err)
	}
	return nil
}
