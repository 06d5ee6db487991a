package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/porterlb/porter/test/netlab"
	"github.com/porterlb/porter/test/sandbox"
)

// Env is what a test package shares: a sandbox, optionally a network lab,
// and a cluster. With a network lab the cluster runs in its LAN namespace.
type Env struct {
	Sandbox *sandbox.Sandbox
	Net     *netlab.Lab
	Cluster *Cluster
	// BinDir holds the binaries built from EnvOptions.Build.
	BinDir string

	deferred []func(failed bool)
	failed   bool
}

// Defer registers fn to run when the Env closes, before the cluster stops,
// latest first. failed says whether the tests Main ran failed.
func (e *Env) Defer(fn func(failed bool)) { e.deferred = append(e.deferred, fn) }

// EnvOptions shape an Env.
type EnvOptions struct {
	// Net, when set, builds a network lab and runs the cluster inside it.
	Net *netlab.Options
	// Build lists packages (e.g. github.com/porterlb/porter/cmd/porter-speaker)
	// to build into Env.BinDir, linked with LDFlags.
	Build   []string
	LDFlags string
	// Race builds them with the race detector, which reports to their
	// stderr and makes them exit 66 at the end.
	Race bool
}

// NewEnv builds an Env. On error, whatever was built is removed.
func NewEnv(ctx context.Context, opts EnvOptions) (_ *Env, err error) {
	e := &Env{}
	if e.Sandbox, err = sandbox.New(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.Close(context.WithoutCancel(ctx)))
		}
	}()
	if len(opts.Build) > 0 {
		e.BinDir = filepath.Join(e.Sandbox.Dir(), "bin")
		args := []string{"build", "-trimpath", "-ldflags", opts.LDFlags, "-o", e.BinDir + "/"}
		cgo := "CGO_ENABLED=0"
		if opts.Race {
			args, cgo = append(args, "-race"), "CGO_ENABLED=1"
		}
		cmd := exec.CommandContext(ctx, "go", append(args, opts.Build...)...)
		cmd.Env = append(os.Environ(), cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %v: %w\n%s", opts.Build, err, out)
		}
	}
	copts := Options{Sandbox: e.Sandbox}
	if opts.Net != nil {
		if e.Net, err = netlab.New(ctx, e.Sandbox, *opts.Net); err != nil {
			return nil, err
		}
		copts.Netns, copts.APIServerIP = e.Net.LAN, e.Net.LANIP
	}
	if e.Cluster, err = Start(ctx, copts); err != nil {
		return nil, err
	}
	return e, nil
}

// Kubectl runs the machine's kubectl against the cluster with BinDir first
// on PATH, so that `kubectl porter` finds the plugin just built.
func (e *Env) Kubectl(ctx context.Context, args ...string) *exec.Cmd {
	cmd := e.Cluster.Kubectl(ctx, args...)
	cmd.Env = append(cmd.Env, "PATH="+e.BinDir+":"+os.Getenv("PATH"))
	return cmd
}

// Close stops the cluster and sweeps the sandbox.
func (e *Env) Close(ctx context.Context) error {
	for i := len(e.deferred) - 1; i >= 0; i-- {
		e.deferred[i](e.failed)
	}
	e.deferred = nil
	var errs []error
	if e.Cluster != nil {
		errs = append(errs, e.Cluster.Stop(ctx))
	}
	if e.Sandbox != nil {
		errs = append(errs, e.Sandbox.Close())
	}
	return errors.Join(errs...)
}

// Main is the body of a TestMain that shares one Env across a package:
// it builds the Env, hands it to use, runs the tests and tears down. A
// failed teardown fails the run. Packages that need a network lab are
// skipped, with the reason printed, when not run as root.
func Main(m *testing.M, opts EnvOptions, use func(*Env)) int {
	if opts.Net != nil && os.Geteuid() != 0 {
		fmt.Println("skipping every test in this package: the network lab needs root; CI runs as root")
		return 0
	}
	ctx := context.Background()
	env, err := NewEnv(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		return 1
	}
	use(env)
	code := m.Run()
	env.failed = code != 0
	if err := env.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "lab teardown:", err)
		code = 1
	}
	return code
}
