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
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
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
	// Command gives the argv for the process that stands for pod. It is
	// called when the pod appears, so it can read what a real container
	// would read at start, such as a ConfigMap, or get a token bound to
	// the pod.
	Command func(pod *corev1.Pod) ([]string, error)
	// PerPod mirrors a Deployment: each pod has its own process, keyed by
	// pod name, and several may share a node. Otherwise a node runs one
	// process, keyed by node name, as a DaemonSet's.
	PerPod bool
	// Exec, when set, makes the command where the process runs; by
	// default it runs in the pod's node's network namespace.
	Exec func(ctx context.Context, pod *corev1.Pod, argv []string) *exec.Cmd
	// LogDir receives one log file per process: <node>-<n>.log.
	LogDir string
}

// Proc is one process standing for one pod.
type Proc struct {
	Node string
	// Name is the pod's.
	Name string
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
	procs  map[string]*Proc // by key (node, or pod with PerPod): the current process
	starts map[string]int   // by key: how many processes were started
	pods   map[string]*corev1.Pod
	all    []*Proc
	wg     sync.WaitGroup
}

// Start begins mirroring. Pods that already exist are mirrored at once.
func Start(ctx context.Context, opts Options) (*Runner, error) {
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Runner{opts: opts, cancel: cancel, procs: map[string]*Proc{}, starts: map[string]int{}, pods: map[string]*corev1.Pod{}}
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

func (r *Runner) key(pod *corev1.Pod) string {
	if r.opts.PerPod {
		return pod.Name
	}
	return pod.Spec.NodeName
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
	key := r.key(pod)
	r.mu.Lock()
	cur := r.procs[key]
	r.mu.Unlock()
	if cur != nil && cur.Pod == pod.UID {
		return
	}
	if cur != nil {
		cur.stop(grace(pod))
	}
	r.start(key, pod)
}

func (r *Runner) gone(o any) {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	key := r.key(pod)
	r.mu.Lock()
	cur := r.procs[key]
	if cur != nil && cur.Pod == pod.UID {
		delete(r.procs, key)
	} else {
		cur = nil
	}
	r.mu.Unlock()
	if cur != nil {
		cur.stop(grace(pod))
	}
}

func (r *Runner) start(key string, pod *corev1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	node := pod.Spec.NodeName
	r.starts[key]++
	r.pods[key] = pod
	log := filepath.Join(r.opts.LogDir, fmt.Sprintf("%s-%d.log", key, r.starts[key]))
	p := &Proc{Node: node, Pod: pod.UID, Name: pod.Name, Log: log, done: make(chan struct{})}
	f, err := os.Create(log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "daemons: %s: %v\n", key, err)
		return
	}
	argv, err := r.opts.Command(pod)
	if err != nil {
		f.Close()
		fmt.Fprintf(os.Stderr, "daemons: the command for %s: %v\n", key, err)
		return
	}
	if r.opts.Exec != nil {
		p.cmd = r.opts.Exec(context.Background(), pod, argv)
	} else {
		p.cmd = r.opts.Net.Node(node).Command(context.Background(), argv...)
	}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		fmt.Fprintf(os.Stderr, "daemons: start the process for %s: %v\n", key, err)
		return
	}
	go func() {
		_ = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	r.procs[key] = p
	r.all = append(r.all, p)
}

func grace(pod *corev1.Pod) time.Duration {
	if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		return time.Duration(*s) * time.Second
	}
	return 30 * time.Second
}

// Restart ends the current process of key (a node, or a pod with
// PerPod), SIGKILL if it still runs, and starts a new one for the same
// pod, as a kubelet restarts a container.
func (r *Runner) Restart(node string) error {
	r.mu.Lock()
	cur, pod := r.procs[node], r.pods[node]
	r.mu.Unlock()
	if cur == nil {
		return fmt.Errorf("no pod on %s to restart", node)
	}
	_ = cur.cmd.Process.Kill()
	<-cur.done
	r.start(node, pod)
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
		r.mu.Lock()
		pod := r.pods[node]
		r.mu.Unlock()
		r.start(node, pod)
		if q := r.Proc(node); q == nil || q == p {
			return fmt.Errorf("restart the process for %s failed; see %s", node, r.opts.LogDir)
		}
	}
	return nil
}

// Proc is the process standing for the current pod of key (a node, or a
// pod with PerPod), or nil.
func (r *Runner) Proc(node string) *Proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.procs[node]
}

// Running lists the current processes that have not exited, by key.
func (r *Runner) Running() []*Proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := slices.Sorted(maps.Keys(r.procs))
	var out []*Proc
	for _, k := range keys {
		p := r.procs[k]
		select {
		case <-p.done:
		default:
			out = append(out, p)
		}
	}
	return out
}

// WaitAll waits until every lab node has a running process.
func (r *Runner) WaitAll(ctx context.Context) error {
	return r.WaitN(ctx, len(r.opts.Net.Nodes))
}

// WaitN waits until n processes run.
func (r *Runner) WaitN(ctx context.Context, n int) error {
	for {
		got := len(r.Running())
		if got == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d processes (%d running): %w", n, got, ctx.Err())
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
// process authenticates with a fresh ServiceAccount token bound to its
// pod, as the kubelet mounts it, so it has exactly the permissions of
// manifests/rbac.yaml and the admission policies see its node; and gets
// the DaemonSet's own arguments plus extra.
func Speakers(ctx context.Context, env *lab.Env, logDir string, extra ...string) (*Runner, error) {
	return Start(ctx, Options{
		Client: env.Cluster.Client, Net: env.Net,
		Namespace: "porter-system", Selector: "app.kubernetes.io/name=porter-speaker",
		LogDir: logDir,
		Command: func(pod *corev1.Pod) ([]string, error) {
			kc, err := env.Cluster.PodKubeconfig(ctx, pod, filepath.Join(logDir, pod.Spec.NodeName+"-kubeconfig.yaml"))
			if err != nil {
				return nil, err
			}
			return append(append(ResourceEnv(pod), filepath.Join(env.BinDir, "porter-speaker"), "--kubeconfig", kc, "--node-name", pod.Spec.NodeName), extra...), nil
		},
	})
}

// Controllers mirrors the porter-controller Deployment of env's cluster:
// one process per pod, each with a token bound to its pod. They run in
// the cluster's own network namespace, where a cluster's controllers
// run, so taking a lab node down does not take them with it.
func Controllers(ctx context.Context, env *lab.Env, logDir string, extra ...string) (*Runner, error) {
	return Start(ctx, Options{
		Client: env.Cluster.Client, Net: env.Net,
		Namespace: "porter-system", Selector: "app.kubernetes.io/name=porter-controller",
		LogDir: logDir, PerPod: true,
		Command: func(pod *corev1.Pod) ([]string, error) {
			kc, err := env.Cluster.PodKubeconfig(ctx, pod, filepath.Join(logDir, pod.Name+"-kubeconfig.yaml"))
			if err != nil {
				return nil, err
			}
			return append(append(ResourceEnv(pod), filepath.Join(env.BinDir, "porter-controller"), "--kubeconfig", kc, "--identity", pod.Name,
				// Two replicas share the namespace here, not a port.
				"--health-address", "127.0.0.1:0"), extra...), nil
		},
		Exec: func(ctx context.Context, _ *corev1.Pod, argv []string) *exec.Cmd {
			return env.Cluster.Command(ctx, argv...)
		},
	})
}

// ResourceEnv starts an argv with the pod's environment variables that are
// given as values (GOGC) or that the downward API sets from its
// container's resources (the memory limit the Go runtime's soft limit is
// taken from), as the kubelet would set them: ["env", "NAME=value", ...],
// or nothing when there are none. The others are passed as flags.
func ResourceEnv(pod *corev1.Pod) []string {
	if len(pod.Spec.Containers) == 0 {
		return nil
	}
	c := pod.Spec.Containers[0]
	var out []string
	for _, e := range c.Env {
		ref := e.ValueFrom
		if ref == nil && e.Value != "" {
			out = append(out, e.Name+"="+e.Value)
			continue
		}
		if ref == nil || ref.ResourceFieldRef == nil {
			continue
		}
		var q resource.Quantity
		switch ref.ResourceFieldRef.Resource {
		case "limits.memory":
			q = c.Resources.Limits[corev1.ResourceMemory]
		case "requests.memory":
			q = c.Resources.Requests[corev1.ResourceMemory]
		default:
			continue
		}
		if !q.IsZero() {
			out = append(out, e.Name+"="+strconv.FormatInt(q.Value(), 10))
		}
	}
	if len(out) == 0 {
		return nil
	}
	return append([]string{"env"}, out...)
}
