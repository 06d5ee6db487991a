package dataplane

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/controller"
	"github.com/porterlb/porter/test/lab"
)

// controllerSet runs porter-controller replicas in the cluster's own
// network namespace, as the Deployment's pods would run off the nodes
// under test, each with the controller's ServiceAccount.
type controllerSet struct {
	env        *lab.Env
	kubeconfig string

	mu    sync.Mutex
	procs map[string]*controllerProc
	runs  int
}

type controllerProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startControllers(ctx context.Context, e *lab.Env, names ...string) (*controllerSet, error) {
	kc, err := e.Cluster.ServiceAccountKubeconfig(ctx, "porter-system", "porter-controller")
	if err != nil {
		return nil, err
	}
	cs := &controllerSet{env: e, kubeconfig: kc, procs: map[string]*controllerProc{}}
	for _, n := range names {
		if err := cs.start(n); err != nil {
			cs.stop()
			return nil, err
		}
	}
	return cs, nil
}

func (cs *controllerSet) start(name string) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.runs++
	log := filepath.Join(cs.env.Sandbox.Dir(), fmt.Sprintf("controller-%s-%d.log", name, cs.runs))
	f, err := os.Create(log)
	if err != nil {
		return fmt.Errorf("create controller log: %w", err)
	}
	cmd := cs.env.Cluster.Command(context.Background(), filepath.Join(cs.env.BinDir, "porter-controller"),
		"--kubeconfig", cs.kubeconfig, "--identity", name, "--health-address", "",
		"--lease-duration", "4s", "--lease-renew-deadline", "3s", "--lease-retry-period", "500ms")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start controller %s: %w", name, err)
	}
	p := &controllerProc{cmd: cmd, log: log, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	cs.procs[name] = p
	return nil
}

// kill ends name's replica with SIGKILL: it releases nothing.
func (cs *controllerSet) kill(name string) error {
	cs.mu.Lock()
	p := cs.procs[name]
	cs.mu.Unlock()
	if p == nil {
		return fmt.Errorf("no controller %s", name)
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return nil
}

func (cs *controllerSet) leader(ctx context.Context) (string, error) {
	l, err := cs.env.Cluster.Client.CoordinationV1().Leases("porter-system").Get(ctx, controller.LeaseName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read the controller Lease: %w", err)
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return "", fmt.Errorf("the controller Lease has no holder")
	}
	return *l.Spec.HolderIdentity, nil
}

func (cs *controllerSet) stop() {
	cs.mu.Lock()
	procs := cs.procs
	cs.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func (cs *controllerSet) logs() string {
	matches, _ := filepath.Glob(filepath.Join(cs.env.Sandbox.Dir(), "controller-*.log"))
	sort.Strings(matches)
	var out string
	for _, m := range matches {
		b, _ := os.ReadFile(m)
		out += fmt.Sprintf("==> %s <==\n%s\n", m, b)
	}
	return out
}
