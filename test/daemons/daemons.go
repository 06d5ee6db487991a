// Package daemons plays the kubelet for one DaemonSet of a lab cluster:
// kwok only pretends to run pods, so each pod the DaemonSet puts on a lab
// node is mirrored by a real process in that node's network namespace. The
// process starts when the pod appears and gets SIGTERM, then SIGKILL after
// the pod's grace period, when the pod goes. A process therefore lives
// exactly as long as its pod, across uninstall, reinstall and rolling
// updates, as it would on a real node.
package daemons

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/porterlb/porter/test/lab"
	"github.com/porterlb/porter/test/netlab"
)

// Options say which pods to mirror and how to run their processes.
type Options struct {
	Client kubernetes.Interface
	Net    *netlab.Lab
	// Namespace and Selector pick the DaemonSet's pods.
	Namespace, Selector string
	// Command gives the argv for the process that stands for a pod on
	// node. It is called when the pod appears, so it can read what a real
	// container would read at start, such as a ConfigMap.
	Command func(node string) ([]string, error)
	// LogDir receives one log file per process: <node>-<n>.log.
	LogDir string
}

// Proc is one process standing for one pod.
type Proc struct {
	Node string
	Pod  types.UID
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to the process for %s: %w", sig, p.Node, err)
	}
	return nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Logs returns what the process has written so far.
func (p *Proc) Logs() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// stop ends the process: SIGTERM, then SIGKILL after grace.
func (p *Proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	// A stopped process cannot act on SIGTERM until it is continued.
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Runner mirrors the pods until Stop.
type Runner struct {
	opts   Options
	cancel context.CancelFunc

	mu     sync.Mutex
	procs  map[string]*Proc // by node: the current process
	starts map[string]int   // by node: how many processes were started
	all    []*Proc
	wg     sync.WaitGroup
}

// Start begins mirroring. Pods that already exist are mirrored at once.
func Start(ctx context.Context, opts Options) (*Runner, error) {
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Runner{opts: opts, cancel: cancel, procs: map[string]*Proc{}, starts: map[string]int{}}
	f := informers.NewSharedInformerFactoryWithOptions(opts.Client, 0,
		informers.WithNamespace(opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = opts.Selector }))
	inf := f.Core().V1().Pods().Informer()
	// One worker applies events in order, so a pod's start and stop for
	// one node never race each other.
	events := make(chan func(), 1024)
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { events <- func() { r.sync(o) } },
		UpdateFunc: func(_, o any) { events <- func() { r.sync(o) } },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			events <- func() { r.gone(o) }
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch pods: %w", err)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case fn := <-events:
				fn()
			}
		}
	}()
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		r.Stop()
		return nil, errors.New("pod cache did not sync")
	}
	return r, nil
}

func (r *Runner) sync(o any) {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	if pod.DeletionTimestamp != nil {
		r.gone(pod)
		return
	}
	node := pod.Spec.NodeName
	if node == "" || r.opts.Net.Node(node) == nil {
		return
	}
	r.mu.Lock()
	cur := r.procs[node]
	r.mu.Unlock()
	if cur != nil && cur.Pod == pod.UID {
		return
	}
	if cur != nil {
		cur.stop(grace(pod))
	}
	r.start(node, pod.UID)
}

func (r *Runner) gone(o any) {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	r.mu.Lock()
	cur := r.procs[pod.Spec.NodeName]
	if cur != nil && cur.Pod == pod.UID {
		delete(r.procs, pod.Spec.NodeName)
	} else {
		cur = nil
	}
	r.mu.Unlock()
	if cur != nil {
		cur.stop(grace(pod))
	}
}

func (r *Runner) start(node string, pod types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts[node]++
	log := filepath.Join(r.opts.LogDir, fmt.Sprintf("%s-%d.log", node, r.starts[node]))
	p := &Proc{Node: node, Pod: pod, Log: log, done: make(chan struct{})}
	f, err := os.Create(log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "daemons: %s: %v\n", node, err)
		return
	}
	argv, err := r.opts.Command(node)
	if err != nil {
		f.Close()
		fmt.Fprintf(os.Stderr, "daemons: the command for %s: %v\n", node, err)
		return
	}
	p.cmd = r.opts.Net.Node(node).Command(context.Background(), argv...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		fmt.Fprintf(os.Stderr, "daemons: start the process for %s: %v\n", node, err)
		return
	}
	go func() {
		_ = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	r.procs[node] = p
	r.all = append(r.all, p)
}

func grace(pod *corev1.Pod) time.Duration {
	if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		return time.Duration(*s) * time.Second
	}
	return 30 * time.Second
}

// Restart ends node's current process, SIGKILL if it still runs, and
// starts a new one for the same pod, as a kubelet restarts a container.
func (r *Runner) Restart(node string) error {
	r.mu.Lock()
	cur := r.procs[node]
	r.mu.Unlock()
	if cur == nil {
		return fmt.Errorf("no pod on %s to restart", node)
	}
	_ = cur.cmd.Process.Kill()
	<-cur.done
	r.start(node, cur.Pod)
	if p := r.Proc(node); p == nil || p == cur {
		return fmt.Errorf("restart the process for %s failed; see %s", node, r.opts.LogDir)
	}
	return nil
}

// RestartAll ends every node's process, SIGKILL if it still runs, and
// only then starts them all again: none of the new processes saw any of
// the old ones die.
func (r *Runner) RestartAll() error {
	r.mu.Lock()
	cur := maps.Clone(r.procs)
	r.mu.Unlock()
	for _, p := range cur {
		_ = p.cmd.Process.Kill()
	}
	for _, p := range cur {
		<-p.done
	}
	for node, p := range cur {
		r.start(node, p.Pod)
		if q := r.Proc(node); q == nil || q == p {
			return fmt.Errorf("restart the process for %s failed; see %s", node, r.opts.LogDir)
		}
	}
	return nil
}

// Proc is the process standing for node's current pod, or nil.
func (r *Runner) Proc(node string) *Proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.procs[node]
}

// WaitAll waits until every lab node has a running process.
func (r *Runner) WaitAll(ctx context.Context) error {
	for {
		r.mu.Lock()
		n := 0
		for _, p := range r.procs {
			select {
			case <-p.done:
			default:
				n++
			}
		}
		r.mu.Unlock()
		if n == len(r.opts.Net.Nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for a process on each of %d nodes (%d running): %w", len(r.opts.Net.Nodes), n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Logs returns the last tail lines of every process's log, oldest process
// first, each under a heading.
func (r *Runner) Logs(tail int) string {
	r.mu.Lock()
	all := append([]*Proc(nil), r.all...)
	r.mu.Unlock()
	sort.SliceStable(all, func(i, j int) bool { return all[i].Node < all[j].Node })
	var out string
	for _, p := range all {
		lines := strings.Split(strings.TrimRight(p.Logs(), "\n"), "\n")
		lines = lines[max(0, len(lines)-tail):]
		out += fmt.Sprintf("==> %s <==\n%s\n", p.Log, strings.Join(lines, "\n"))
	}
	return out
}

// LogFiles are the log files of every process started, oldest first.
func (r *Runner) LogFiles() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.all))
	for _, p := range r.all {
		out = append(out, p.Log)
	}
	return out
}

// Stop ends the mirroring and every process.
func (r *Runner) Stop() {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	all := append([]*Proc(nil), r.all...)
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(10 * time.Second) }()
	}
	wg.Wait()
}

// Speakers mirrors the porter-speaker DaemonSet of env's cluster. Each
// process authenticates with a fresh token of the speaker's
// ServiceAccount, so it has exactly the permissions of manifests/rbac.yaml,
// and gets the DaemonSet's own arguments plus extra.
func Speakers(ctx context.Context, env *lab.Env, logDir string, extra ...string) (*Runner, error) {
	return Start(ctx, Options{
		Client: env.Cluster.Client, Net: env.Net,
		Namespace: "porter-system", Selector: "app.kubernetes.io/name=porter-speaker",
		LogDir: logDir,
		Command: func(node string) ([]string, error) {
			shared, err := env.Cluster.ServiceAccountKubeconfig(ctx, "porter-system", "porter-speaker")
			if err != nil {
				return nil, err
			}
			// The shared file is rewritten for the next process while this
			// one may still be reading it.
			b, err := os.ReadFile(shared)
			if err != nil {
				return nil, err
			}
			kc := filepath.Join(logDir, node+"-kubeconfig.yaml")
			if err := os.WriteFile(kc, b, 0o600); err != nil {
				return nil, err
			}
			return append([]string{filepath.Join(env.BinDir, "porter-speaker"), "--kubeconfig", kc, "--node-name", node}, extra...), nil
		},
	})
}
