// Package lab runs a real Kubernetes control plane for tests: kube-apiserver,
// kube-controller-manager, kube-scheduler and etcd, started by
// `kwokctl --runtime binary`, with kwok faking the nodes and their pods.
//
// A cluster can run in the host's network namespace on loopback, or inside a
// netlab LAN namespace, where processes in the lab's node namespaces reach
// it at the LAN address.
package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/porterlb/porter/test/netns"
	"github.com/porterlb/porter/test/sandbox"
)

// Binaries are the programs a lab cluster runs, by file name.
var Binaries = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok", "kwokctl"}

// inNetnsPort is the API server's port when the cluster has a namespace to
// itself; on the host, kwokctl picks a free one.
const inNetnsPort = 6443

// Options shape a cluster.
type Options struct {
	// Sandbox owns the cluster's processes and files. Required.
	Sandbox *sandbox.Sandbox
	// BinDir holds Binaries. Default: $PORTER_LAB_BIN, else the
	// repository's .cache/lab/bin.
	BinDir string
	// Netns runs the control plane in this network namespace. Empty: the
	// host's, bound to loopback.
	Netns string
	// APIServerIP is an address of Netns that other namespaces use to
	// reach the API server. It is added to the serving certificate.
	APIServerIP netip.Addr
	// Name tells clusters of one sandbox apart. Default "lab".
	Name string
}

// Cluster is a running lab control plane.
type Cluster struct {
	// Name is the kwokctl cluster name.
	Name string
	// Kubeconfig is a kubeconfig for the admin user, valid where the
	// cluster's processes run (the host or Netns).
	Kubeconfig string
	// Config reaches the API server from the test process, whichever
	// namespace the cluster runs in.
	Config *rest.Config
	Client kubernetes.Interface

	netns       string
	apiServerIP netip.Addr
	port        int
	binDir      string
	kwokDir     string
}

// Start creates a cluster and waits until its API server is ready.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Sandbox == nil {
		return nil, errors.New("lab: Options.Sandbox is required")
	}
	if opts.APIServerIP.IsValid() && opts.Netns == "" {
		return nil, errors.New("lab: APIServerIP needs Netns: on the host the API server listens on loopback only")
	}
	binDir, err := ResolveBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "lab"
	}
	c := &Cluster{
		Name:        "porter-" + opts.Sandbox.ID() + "-" + opts.Name,
		netns:       opts.Netns,
		apiServerIP: opts.APIServerIP,
		binDir:      binDir,
	}
	// Every process kwokctl starts names files under this directory, which
	// is how the sandbox finds them if the test process dies.
	c.kwokDir = filepath.Join(opts.Sandbox.Dir(), "kwok-"+opts.Name)
	if err := os.MkdirAll(c.kwokDir, 0o755); err != nil {
		return nil, fmt.Errorf("create kwok work directory: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop(context.WithoutCancel(ctx)))
		}
	}()

	cfgPath := filepath.Join(c.kwokDir, "kwokctl.yaml")
	if err := os.WriteFile(cfgPath, []byte(c.kwokctlConfig()), 0o644); err != nil {
		return nil, fmt.Errorf("write kwokctl configuration: %w", err)
	}
	args := []string{"create", "cluster",
		"--name", c.Name,
		"--config", cfgPath,
		"--runtime", "binary",
		// An empty --kubeconfig keeps kwokctl away from ~/.kube/config.
		"--kubeconfig", "",
		"--wait", "2m",
		"--kube-apiserver-binary", c.bin("kube-apiserver"),
		"--kube-controller-manager-binary", c.bin("kube-controller-manager"),
		"--kube-scheduler-binary", c.bin("kube-scheduler"),
		"--etcd-binary", c.bin("etcd"),
		"--kwok-controller-binary", c.bin("kwok"),
	}
	if c.netns == "" {
		// kwokctl picks host ports by probing for free ones, so two
		// clusters created at once on the host can pick the same ports.
		// Hold a machine-wide lock until this one has bound its ports.
		unlock, err := lockHostPorts()
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	if out, err := c.kwokctl(ctx, args...); err != nil {
		return nil, fmt.Errorf("create lab cluster %s: %w\n%s%s", c.Name, err, out, c.LogTails())
	}

	c.Kubeconfig = filepath.Join(c.kwokDir, "clusters", c.Name, "kubeconfig.yaml")
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return nil, fmt.Errorf("load lab kubeconfig: %w", err)
	}
	if c.port, err = portOf(c.Config.Host); err != nil {
		return nil, err
	}
	if c.netns != "" {
		c.Config.Dial = netns.DialContext(c.netns)
	}
	// Tests create objects in bursts; client-side throttling only slows
	// them down.
	c.Config.QPS, c.Config.Burst = -1, -1
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, fmt.Errorf("create lab client: %w", err)
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, fmt.Errorf("%w%s", err, c.LogTails())
	}
	return c, nil
}

// lockHostPorts takes the machine-wide lock on choosing host ports.
func lockHostPorts() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "porter-lab-host-ports.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("open host port lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("take host port lock: %w", err)
	}
	// Closing the file releases the lock, also when the process dies.
	return func() { f.Close() }, nil
}

// LogTails returns the end of each component's log, to explain a cluster
// that did not come up.
func (c *Cluster) LogTails() string {
	logs, _ := filepath.Glob(filepath.Join(c.kwokDir, "clusters", c.Name, "logs", "*.log"))
	var b strings.Builder
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "\n--- %s (last %d lines)\n%s", filepath.Base(l), len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}

// Stop deletes the cluster: its processes, ports and files. It is safe to
// call more than once.
func (c *Cluster) Stop(ctx context.Context) error {
	if c.kwokDir == "" {
		return nil
	}
	var errs []error
	// Taken before anything stops: a process that is exiting can no
	// longer be found by its command line.
	procs := procsUnder(c.kwokDir)
	if _, err := os.Stat(filepath.Join(c.kwokDir, "clusters", c.Name)); err == nil {
		if out, err := c.kwokctl(ctx, "delete", "cluster", "--name", c.Name); err != nil {
			errs = append(errs, fmt.Errorf("delete lab cluster %s: %w\n%s", c.Name, err, out))
		}
	}
	// kwokctl stops what it started; kill whatever did not stop with it.
	if err := killUnder(c.kwokDir); err != nil {
		errs = append(errs, err)
	}
	// A killed process has not let go of its ports until its last thread
	// has exited; Stop promises they are free.
	if err := waitExited(procs, 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(c.kwokDir); err != nil {
		errs = append(errs, fmt.Errorf("remove kwok work directory: %w", err))
	}
	c.kwokDir = ""
	return errors.Join(errs...)
}

// Kubectl builds a command that runs the machine's kubectl against the
// cluster, from the namespace the cluster runs in. The kubeconfig comes
// through $KUBECONFIG, as for a user: kubectl refuses flags placed before a
// plugin's name.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) *exec.Cmd {
	cmd := netns.Command(ctx, c.netns, append([]string{"kubectl"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	return cmd
}

// APIServer is the host:port processes in other lab namespaces dial.
func (c *Cluster) APIServer() (netip.AddrPort, error) {
	if !c.apiServerIP.IsValid() {
		return netip.AddrPort{}, errors.New("lab: cluster was started without APIServerIP")
	}
	return netip.AddrPortFrom(c.apiServerIP, uint16(c.port)), nil
}

// LANKubeconfig writes a kubeconfig that reaches the API server at
// APIServer, for processes in the lab's node namespaces, and returns its
// path.
func (c *Cluster) LANKubeconfig() (string, error) {
	cfg, err := c.lanConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.kwokDir, "kubeconfig-lan.yaml")
	if err := writeKubeconfig(cfg, path); err != nil {
		return "", fmt.Errorf("write LAN kubeconfig: %w", err)
	}
	return path, nil
}

// lanConfig is the lab kubeconfig with the API server's LAN address.
// Token kubeconfigs are built from it in memory, not from the file
// LANKubeconfig writes: speakers start at once, and one reading that file
// while another rewrote it got an empty configuration.
func (c *Cluster) lanConfig() (*clientcmdapi.Config, error) {
	ap, err := c.APIServer()
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load lab kubeconfig: %w", err)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + ap.String()
	}
	return cfg, nil
}

// writeKubeconfig writes cfg to path through a file of its own in the
// same directory (made 0600), renamed into place: a process may be
// reading the last one, and another writer may be writing the same path.
func writeKubeconfig(cfg *clientcmdapi.Config, path string) (err error) {
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func (c *Cluster) kwokctlConfig() string {
	bind := "127.0.0.1"
	port := ""
	if c.netns != "" {
		// Alone in its namespace, the cluster may listen everywhere and
		// on a fixed port.
		bind = "0.0.0.0"
		port = "  kubeApiserverPort: " + strconv.Itoa(inNetnsPort) + "\n"
	}
	sans := ""
	if c.apiServerIP.IsValid() {
		sans = "  kubeApiserverCertSANs:\n  - " + c.apiServerIP.String() + "\n"
	}
	// Dual-stack, so that Services may ask for both families: kwok's own
	// IPv4 Service range, and an IPv6 one from the documentation prefix.
	return "apiVersion: config.kwok.x-k8s.io/v1alpha1\n" +
		"kind: KwokctlConfiguration\n" +
		"options:\n" +
		"  runtime: binary\n" +
		"  bindAddress: " + bind + "\n" + port + sans +
		"componentsPatches:\n" +
		"- name: kube-apiserver\n" +
		"  extraArgs:\n" +
		"  - key: service-cluster-ip-range\n" +
		"    value: " + ServiceCIDRs + "\n"
}

// ServiceCIDRs are the lab cluster's Service ranges, IPv4 then IPv6.
const ServiceCIDRs = "10.0.0.0/24,2001:db8:96::/112"

func (c *Cluster) kwokctl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := netns.Command(ctx, c.netns, append([]string{c.bin("kwokctl")}, args...)...)
	cmd.Env = append(os.Environ(), "KWOK_WORKDIR="+c.kwokDir)
	return cmd.CombinedOutput()
}

func (c *Cluster) bin(name string) string { return filepath.Join(c.binDir, name) }

func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			last = err
			return false, nil //nolint:nilerr // polled again until the deadline
		}
		if string(body) != "ok" {
			last = fmt.Errorf("/readyz: %s", body)
			return false, nil
		}
		// Pods cannot be created in a namespace before its default
		// ServiceAccount exists.
		if _, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", getOpts); err != nil {
			last = err
			return false, nil //nolint:nilerr // polled again until the deadline
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for lab API server: %w (last: %w)", err, last)
	}
	return nil
}

// ResolveBinDir finds the lab binaries and checks that all are there.
func ResolveBinDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("PORTER_LAB_BIN")
	}
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".cache", "lab", "bin")
	}
	var missing []string
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("lab binaries missing from %s: %s; build them with `make lab`", dir, strings.Join(missing, ", "))
	}
	return dir, nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module github.com/porterlb/porter\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod of github.com/porterlb/porter above the working directory")
		}
		dir = parent
	}
}

func portOf(host string) (int, error) {
	i := strings.LastIndexByte(host, ':')
	if i < 0 {
		return 0, fmt.Errorf("lab kubeconfig server %q has no port", host)
	}
	p, err := strconv.Atoi(strings.TrimRight(host[i+1:], "/"))
	if err != nil {
		return 0, fmt.Errorf("lab kubeconfig server %q: %w", host, err)
	}
	return p, nil
}

// killUnder kills every process whose command line names a path under dir
// and waits until they are gone.
func killUnder(dir string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := pidsUnder(dir)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v under %s survived SIGKILL", pids, dir)
		}
		for _, pid := range pids {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pidsUnder(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	needle := []byte(dir + "/")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if liveUnder(pid, needle) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// proc names one process across PID reuse: its start time, in clock
// ticks since boot, tells it from a later process with the same PID.
type proc struct {
	pid   int
	start string
}

// procsUnder lists the processes whose command line names a path under dir.
func procsUnder(dir string) []proc {
	var out []proc
	for _, pid := range pidsUnder(dir) {
		if st, ok := statFields(strconv.Itoa(pid)); ok && len(st) > 19 {
			out = append(out, proc{pid: pid, start: st[19]})
		}
	}
	return out
}

// statFields are the fields of /proc/<pid>/stat after the command name,
// the state first.
func statFields(pid string) ([]string, bool) {
	st, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(st, ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(string(st[i+1:])), true
}

// waitExited waits until every thread of each process has exited. A
// process is not gone when its leader is: in a multi-threaded process
// killed by a signal the leader often turns zombie first, while other
// threads, which share the file table, are still tearing down, and its
// listening sockets are still open. Such threads have already dropped
// their memory, so their command line reads empty: the processes must be
// known from before they were stopped.
func waitExited(procs []proc, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var left []int
		for _, p := range procs {
			if !exited(p) {
				left = append(left, p.pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still exiting after %s", left, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exited reports whether p is gone, or nothing of it is left but the
// zombie its parent reaps.
func exited(p proc) bool {
	pid := strconv.Itoa(p.pid)
	st, ok := statFields(pid)
	if !ok || len(st) <= 19 || st[19] != p.start {
		return true // gone, or the PID belongs to another process now
	}
	tasks, err := os.ReadDir(filepath.Join("/proc", pid, "task"))
	if err != nil {
		return true
	}
	for _, t := range tasks {
		ts, ok := statFields(filepath.Join(pid, "task", t.Name()))
		if ok && len(ts) > 0 && ts[0] != "Z" && ts[0] != "X" {
			return false
		}
	}
	return true
}

// liveUnder reports whether some thread of pid still runs a command line
// naming needle. Threads are looked at one by one because the leader of
// a process may be a zombie while other threads still run.
func liveUnder(pid int, needle []byte) bool {
	taskDir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(taskDir)
	if err != nil {
		return false // gone since /proc was listed
	}
	for _, t := range tasks {
		st, err := os.ReadFile(filepath.Join(taskDir, t.Name(), "stat"))
		if err != nil {
			continue // this thread finished between the two reads
		}
		// Z: zombie; X: dead, being released.
		if i := bytes.LastIndexByte(st, ')'); i >= 0 && len(st) > i+2 && (st[i+2] == 'Z' || st[i+2] == 'X') {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(taskDir, t.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, needle) {
			return true
		}
	}
	return false
}

// PauseAPIServer freezes kube-apiserver with SIGSTOP, as when the control
// plane becomes unreachable: connections to it hang. resume thaws it.
func (c *Cluster) PauseAPIServer() (resume func() error, err error) {
	var pid int
	for _, p := range pidsUnder(c.kwokDir) {
		exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(p), "exe"))
		if err == nil && filepath.Base(exe) == "kube-apiserver" {
			pid = p
			break
		}
	}
	if pid == 0 {
		return nil, fmt.Errorf("no kube-apiserver process under %s", c.kwokDir)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return nil, fmt.Errorf("stop kube-apiserver %d: %w", pid, err)
	}
	return func() error {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			return fmt.Errorf("resume kube-apiserver %d: %w", pid, err)
		}
		return nil
	}, nil
}

// ServiceAccountKubeconfig writes a kubeconfig that reaches the API server
// like LANKubeconfig but authenticates as the ServiceAccount
// namespace/name, with a fresh token, so a process run with it has exactly
// that account's permissions. It returns the path.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name string) (string, error) {
	user := namespace + "-" + name
	return c.tokenKubeconfig(ctx, namespace, name, nil, filepath.Join(c.kwokDir, "kubeconfig-"+user+".yaml"))
}

// PodKubeconfig writes to path a kubeconfig like ServiceAccountKubeconfig
// for pod's ServiceAccount, with a token bound to the pod, as the kubelet
// mounts one: the API server then names the pod and its node in every
// request's user extra (authentication.kubernetes.io/node-name).
func (c *Cluster) PodKubeconfig(ctx context.Context, pod *corev1.Pod, path string) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	ref := &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	return c.tokenKubeconfig(ctx, pod.Namespace, sa, ref, path)
}

func (c *Cluster) tokenKubeconfig(ctx context.Context, namespace, name string, bound *authenticationv1.BoundObjectReference, path string) (string, error) {
	cfg, err := c.lanConfig()
	if err != nil {
		return "", err
	}
	expiry := int64(6 * 3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry, BoundObjectRef: bound},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for ServiceAccount %s/%s: %w", namespace, name, err)
	}
	user := namespace + "-" + name
	cfg.AuthInfos = map[string]*clientcmdapi.AuthInfo{user: {Token: tr.Status.Token}}
	for _, kc := range cfg.Contexts {
		kc.AuthInfo = user
	}
	if err := writeKubeconfig(cfg, path); err != nil {
		return "", fmt.Errorf("write kubeconfig for %s: %w", user, err)
	}
	return path, nil
}

// Command runs argv in the cluster's own network namespace, where the
// control plane runs.
func (c *Cluster) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return netns.Command(ctx, c.netns, argv...)
}
