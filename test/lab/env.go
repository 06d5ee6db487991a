package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
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
}

// EnvOptions shape an Env.
type EnvOptions struct {
	// Net, when set, builds a network lab and runs the cluster inside it.
	Net *netlab.Options
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

// Close stops the cluster and sweeps the sandbox.
func (e *Env) Close(ctx context.Context) error {
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
	if err := env.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "lab teardown:", err)
		code = 1
	}
	return code
}
