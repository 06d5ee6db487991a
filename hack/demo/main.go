// Command demo runs Porter's whole story on one machine, against real
// parts: a real control plane with kwok nodes, three lab nodes in network
// namespaces on a virtual LAN (one with a second NIC), a client on that
// LAN, kube-proxy as kubeadm leaves it (IPVS, strictARP off), and
// porter-speaker running as a real process for each pod of its DaemonSet.
// It runs `kubectl porter init` through the machine's kubectl, shows a
// refused pool, serves a LoadBalancer Service to the client, kills the
// serving speaker with SIGKILL and measures the outage the client sees.
//
// Run it with `make demo`, as root. DEMO_KEEP=1 leaves the lab running
// until Ctrl-C, with the commands to poke at it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/kubeproxy"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/test/backend"
	"github.com/porterlb/porter/test/daemons"
	"github.com/porterlb/porter/test/lab"
	"github.com/porterlb/porter/test/netlab"
)

const (
	pool        = "demo=198.18.0.200-198.18.0.210"
	serviceName = "demo"
	// badRange holds node1's address, 198.18.0.11.
	badRange = "198.18.0.5-198.18.0.20"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Stdout, os.Getenv("DEMO_KEEP") == "1"))
}

// demo is the state the stages share.
type demo struct {
	out         io.Writer
	env         *lab.Env
	kubeProxy   *daemons.Runner
	speakers    *daemons.Runner
	controllers *daemons.Runner
	vip         netip.Addr
	served      string
	logDir      string
}

type stage struct {
	title string
	run   func(*demo, context.Context) error
}

func run(ctx context.Context, out io.Writer, keep bool) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(out, "The demo builds network namespaces and veth pairs: run it as root (sudo make demo).")
		return 1
	}
	d := &demo{out: out}
	stages := []stage{
		{"Build Porter and start the lab", (*demo).startLab},
		{"kube-proxy as kubeadm leaves it: IPVS mode, strictARP off", (*demo).installKubeProxy},
		{"kubectl porter init", (*demo).init},
		{"Safety: a pool that holds a node's address is refused", (*demo).refuse},
		{"A LoadBalancer Service gets an address from the pool", (*demo).service},
		{"The client on the LAN connects to that address", (*demo).fetch},
		{"kill -9 the serving node's speaker while the client keeps connecting", (*demo).failover},
		{"kubectl porter status", (*demo).status},
	}
	total := len(stages) + 1
	code := 0
	for i, s := range stages {
		fmt.Fprintf(out, "\n━━ %d/%d  %s\n", i+1, total, s.title)
		start := time.Now()
		if err := s.run(d, ctx); err != nil {
			fmt.Fprintf(out, "\n✗ DEMO FAILED at stage %d/%d (%s):\n  %v\n", i+1, total, s.title, err)
			d.showLogs()
			code = 1
			break
		}
		fmt.Fprintf(out, "   (%s)\n", time.Since(start).Round(100*time.Millisecond))
	}
	if code == 0 && keep && ctx.Err() == nil {
		d.instructions()
		<-ctx.Done()
	}
	fmt.Fprintf(out, "\n━━ %d/%d  Tear down\n", total, total)
	if d.env != nil {
		if d.speakers != nil {
			d.speakers.Stop()
		}
		if d.controllers != nil {
			d.controllers.Stop()
		}
		if d.kubeProxy != nil {
			d.kubeProxy.Stop()
		}
		if err := d.env.Close(context.Background()); err != nil {
			fmt.Fprintf(out, "✗ tear down: %v\n", err)
			code = 1
		} else {
			fmt.Fprintln(out, "   the cluster, the network namespaces and every process are gone")
		}
	}
	if code == 0 {
		fmt.Fprintln(out, "\nDemo complete.")
	}
	return code
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "   "+format+"\n", args...)
}

// kubectl runs the machine's kubectl, showing the command and its output
// as the user would see them.
func (d *demo) kubectl(ctx context.Context, args ...string) error {
	fmt.Fprintf(d.out, "\n$ kubectl %s\n", strings.Join(args, " "))
	cmd := d.env.Kubectl(ctx, args...)
	cmd.Stdout, cmd.Stderr = d.out, d.out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func (d *demo) startLab(ctx context.Context) error {
	d.say("building kubectl-porter, porter-speaker and porter-controller, starting kube-apiserver, etcd, the controller manager, the scheduler and kwok")
	env, err := lab.NewEnv(ctx, lab.EnvOptions{
		Net:   &netlab.Options{Nodes: 3, SecondNICNodes: []string{"node3"}},
		Build: []string{"github.com/porterlb/porter/cmd/kubectl-porter", "github.com/porterlb/porter/cmd/porter-speaker", "github.com/porterlb/porter/cmd/porter-controller"},
	})
	if err != nil {
		return fmt.Errorf("start the lab: %w", err)
	}
	d.env = env
	d.logDir = filepath.Join(env.Sandbox.Dir(), "logs")
	ap, err := env.Cluster.APIServer()
	if err != nil {
		return err
	}
	d.say("LAN 198.18.0.0/24; API server at %s", ap)
	for _, n := range env.Net.Nodes {
		if _, err := env.Cluster.CreateNode(ctx, lab.Node{Name: n.Name, InternalIP: n.IP}); err != nil {
			return fmt.Errorf("register %s: %w", n.Name, err)
		}
		nics := fmt.Sprintf("%s %s", netlab.NIC1, n.IP)
		if n.IP2.IsValid() {
			nics += fmt.Sprintf(", %s %s (a second LAN)", netlab.NIC2, n.IP2)
		}
		d.say("%-7s %s", n.Name, nics)
		if _, err := backend.Serve(n); err != nil {
			return err
		}
	}
	d.say("%-7s %s %s", "client", netlab.NIC1, env.Net.Client.IP)
	d.say("each node runs a backend on :%d that answers with the node's name", backend.Port)
	return nil
}

func (d *demo) installKubeProxy(ctx context.Context) error {
	c := d.env.Cluster
	if err := c.InstallKubeProxy(ctx, lab.KubeProxy{Mode: "ipvs"}); err != nil {
		return err
	}
	// kube-proxy applies strictARP when it starts: the process standing
	// for each kube-proxy pod reads the ConfigMap then, so init's restart
	// is what really turns it on.
	var err error
	d.kubeProxy, err = daemons.Start(ctx, daemons.Options{
		Client: c.Client, Net: d.env.Net,
		Namespace: "kube-system", Selector: "k8s-app=kube-proxy",
		LogDir: filepath.Join(d.logDir, "kube-proxy"),
		Command: func(*corev1.Pod) ([]string, error) {
			cm, err := c.Client.CoreV1().ConfigMaps("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("read the kube-proxy ConfigMap: %w", err)
			}
			cfg, err := kubeproxy.Parse(cm.Data["config.conf"])
			if err != nil {
				return nil, err
			}
			script := "echo strictARP off; exec sleep infinity"
			if cfg.StrictARP {
				script = "sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 && exec sleep infinity"
			}
			return []string{"sh", "-c", script}, nil
		},
	})
	if err != nil {
		return err
	}
	if _, err := c.WaitDaemonSet(ctx, "kube-system", "kube-proxy", time.Minute); err != nil {
		return err
	}
	if err := d.kubectl(ctx, "-n", "kube-system", "get", "daemonset", "kube-proxy"); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\n$ kubectl -n kube-system get configmap kube-proxy -o yaml | grep -E 'mode|strictARP'\n")
	cm, err := c.Client.CoreV1().ConfigMaps("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, l := range strings.Split(cm.Data["config.conf"], "\n") {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "mode:") || strings.HasPrefix(t, "strictARP:") {
			fmt.Fprintln(d.out, l)
		}
	}
	return d.speakersFollowDaemonSet(ctx)
}

// speakersFollowDaemonSet starts the stand-in kubelet for porter-speaker
// and porter-controller: each pod init's DaemonSet and Deployment make
// becomes a real process, with its ServiceAccount's permissions.
func (d *demo) speakersFollowDaemonSet(ctx context.Context) error {
	var err error
	if d.speakers, err = daemons.Speakers(ctx, d.env, filepath.Join(d.logDir, "speakers")); err != nil {
		return err
	}
	d.controllers, err = daemons.Controllers(ctx, d.env, filepath.Join(d.logDir, "controllers"))
	return err
}

func (d *demo) init(ctx context.Context) error {
	d.say("each speaker pod the DaemonSet makes runs as a real porter-speaker process on its lab node, and each controller pod as a porter-controller")
	return d.kubectl(ctx, "porter", "init", "--eip", pool, "--yes")
}

func (d *demo) refuse(ctx context.Context) error {
	args := []string{"porter", "eip", "create", "bad", "--address", badRange}
	fmt.Fprintf(d.out, "\n$ kubectl %s\n", strings.Join(args, " "))
	out, err := d.env.Kubectl(ctx, args...).CombinedOutput()
	_, _ = d.out.Write(out)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return fmt.Errorf("eip create %s was not refused: %w", badRange, err)
	}
	if !strings.Contains(string(out), "node1") {
		return errors.New("the refusal does not name node1")
	}
	if _, err := d.env.Cluster.Client.CoreV1().Namespaces().Get(ctx, "porter-system", metav1.GetOptions{}); err != nil {
		return err
	}
	d.say("refused (exit %d), and nothing was created", exit.ExitCode())
	return nil
}

func (d *demo) service(ctx context.Context) error {
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
  namespace: default
  annotations:
    %s: porter
    %s: demo
spec:
  type: LoadBalancer
  selector: {app: demo}
  ports:
  - {name: http, port: %d, protocol: TCP}
`, serviceName, lbservice.LBAnnotation, lbservice.PoolAnnotation, backend.Port)
	fmt.Fprintf(d.out, "\n$ kubectl apply -f - <<EOF\n%sEOF\n", manifest)
	cmd := d.env.Kubectl(ctx, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	cmd.Stdout, cmd.Stderr = d.out, d.out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("create Service %s: %w", serviceName, err)
	}
	err := poll(ctx, 30*time.Second, func() (bool, error) {
		s, err := d.env.Cluster.Client.CoreV1().Services("default").Get(ctx, serviceName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		d.vip = lbservice.IngressIP(s)
		return d.vip.IsValid(), nil
	})
	if err != nil {
		return fmt.Errorf("wait for Service %s to get an address: %w", serviceName, err)
	}
	if err := d.kubectl(ctx, "get", "service", serviceName); err != nil {
		return err
	}
	// IPVS kube-proxy puts every Service address on each node; with
	// strictARP the nodes' kernels stay silent about it, and only Porter's
	// chosen speaker answers ARP.
	for _, n := range d.env.Net.Nodes {
		if err := backend.Hold(ctx, n, d.vip); err != nil {
			return err
		}
	}
	d.say("kube-proxy's part: %s is held on every node's lo; the kernels do not answer ARP for it (strictARP)", d.vip)
	return nil
}

func (d *demo) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	node, err := backend.ServedBy(ctx, d.env.Net.Client, d.vip, func(string) bool { return true })
	if err != nil {
		return err
	}
	d.served = node
	fmt.Fprintf(d.out, "\nclient$ connect %s:%d\n", d.vip, backend.Port)
	d.say("served by %s", node)
	an, err := d.announcer(ctx, func(n string) bool { return n == node })
	if err != nil {
		return err
	}
	d.say("the Service says: %s: %q", lbservice.AnnouncerAnnotation, an)
	mac, err := d.env.Net.Client.Neighbor(ctx, d.vip)
	if err == nil {
		d.say("the client's ARP table: %s is at %s, %s's %s", d.vip, mac, node, netlab.NIC1)
	}
	return nil
}

// announcer waits until the Service's announcer annotation names a node ok
// accepts, and returns the annotation.
func (d *demo) announcer(ctx context.Context, ok func(string) bool) (string, error) {
	var value string
	err := poll(ctx, 15*time.Second, func() (bool, error) {
		s, err := d.env.Cluster.Client.CoreV1().Services("default").Get(ctx, serviceName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		an, found := lbservice.ParseAnnouncer(s)
		value = s.Annotations[lbservice.AnnouncerAnnotation]
		return found && ok(an.Node), nil
	})
	if err != nil {
		return "", fmt.Errorf("wait for the announcer annotation (last %q): %w", value, err)
	}
	return value, nil
}

func (d *demo) failover(ctx context.Context) error {
	proc := d.speakers.Proc(d.served)
	if proc == nil {
		return fmt.Errorf("no speaker process on %s", d.served)
	}
	d.say("the client connects to %s:%d every 10 ms", d.vip, backend.Port)
	p := backend.StartProber(d.env.Net.Client, d.vip, 10*time.Millisecond)
	time.Sleep(time.Second)
	fmt.Fprintf(d.out, "\n%s$ kill -9 %d   # porter-speaker\n", d.served, proc.Pid())
	at := time.Now()
	if err := proc.Signal(syscall.SIGKILL); err != nil {
		p.Stop()
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	next, err := backend.ServedBy(wctx, d.env.Net.Client, d.vip, func(n string) bool { return n != d.served })
	cancel()
	if err != nil {
		p.Stop()
		return fmt.Errorf("no other node took over: %w", err)
	}
	time.Sleep(time.Second)
	events := p.Stop()
	gap, failed := backend.Outage(events, at)
	var takeover time.Duration
	for _, e := range events {
		if e.OK && e.Node == next && e.At.After(at) {
			takeover = e.At.Sub(at)
			break
		}
	}
	d.say("%s took over %s after the kill (its gratuitous ARP moved the client)", next, takeover.Round(time.Millisecond))
	d.say("the node itself still answered ARP, so the others waited out --starved-grace (3s) first: from outside, a dead speaker on a live node looks like a starved one, and a starved one must keep its addresses")
	d.say("longest gap between the client's successful connects: %s; %d of %d connects failed",
		gap.Round(time.Millisecond), failed, len(events))
	if failed == 0 {
		d.say("(%s's kernel still holds the address and its backend still answers: only the speaker died)", d.served)
	}
	if last := backend.LastNode(events); last != next {
		return fmt.Errorf("the client ended on %s, not %s", last, next)
	}
	an, err := d.announcer(ctx, func(n string) bool { return n == next })
	if err != nil {
		return err
	}
	d.say("the Service says: %s: %q", lbservice.AnnouncerAnnotation, an)
	return nil
}

func (d *demo) status(ctx context.Context) error {
	d.say("%s's speaker is dead, but kwok keeps its pod Ready; status finds it through the other speakers:", d.served)
	args := []string{"porter", "status"}
	fmt.Fprintf(d.out, "\n$ kubectl %s\n", strings.Join(args, " "))
	out, _ := d.env.Kubectl(ctx, args...).CombinedOutput()
	_, _ = d.out.Write(out)
	if want := "no other speaker sees " + d.served; !strings.Contains(string(out), want) {
		return fmt.Errorf("status does not say %q", want)
	}
	d.say("a kubelet would restart the container; here the pod is deleted and the DaemonSet replaces it:")
	if err := d.kubectl(ctx, "-n", "porter-system", "delete", "pod", "-l", "app.kubernetes.io/name=porter-speaker",
		"--field-selector", "spec.nodeName="+d.served); err != nil {
		return err
	}
	// `status --wait` stops at the first run without a failed check; the
	// new speaker's first report may still carry a warning, so wait for a
	// clean one.
	d.say("waiting until every speaker sees every other")
	err := poll(ctx, 90*time.Second, func() (bool, error) {
		out, _ = d.env.Kubectl(ctx, "porter", "status").CombinedOutput()
		return strings.Contains(string(out), "Porter is healthy\n"), nil
	})
	fmt.Fprintf(d.out, "\n$ kubectl porter status\n")
	_, _ = d.out.Write(out)
	if err != nil {
		return fmt.Errorf("status not healthy within 90s: %w", err)
	}
	return nil
}

// showLogs prints what explains a failed stage: the speakers' logs and
// the control plane's.
func (d *demo) showLogs() {
	if d.speakers != nil {
		fmt.Fprintf(d.out, "\nporter-speaker logs (last 25 lines each):\n%s", d.speakers.Logs(25))
	}
	if d.controllers != nil {
		fmt.Fprintf(d.out, "\nporter-controller logs (last 25 lines each):\n%s", d.controllers.Logs(25))
	}
	if d.kubeProxy != nil {
		fmt.Fprintf(d.out, "\nkube-proxy stand-in logs:\n%s", d.kubeProxy.Logs(5))
	}
	if d.env != nil && d.env.Cluster != nil {
		fmt.Fprintf(d.out, "\ncontrol plane logs:%s\n", d.env.Cluster.LogTails())
	}
}

func (d *demo) instructions() {
	lanNS, client := d.env.Net.LAN, d.env.Net.Client.Netns
	kc := fmt.Sprintf("ip netns exec %s env KUBECONFIG=%s PATH=%s:$PATH", lanNS, d.env.Cluster.Kubeconfig, d.env.BinDir)
	fmt.Fprintf(d.out, `
━━ DEMO_KEEP=1: the lab keeps running until you press Ctrl-C here.
   In another shell, as root:

   # kubectl, with the plugin on PATH (the API server lives in the LAN namespace)
   %[1]s kubectl get svc,eips,nodes
   %[1]s kubectl porter status

   # the client: connect to the Service, look at its ARP table
   ip netns exec %[2]s bash -c 'exec 3<>/dev/tcp/%[3]s/%[4]d; cat <&3'
   ip netns exec %[2]s ip neigh

   # a node: its NICs, and a speaker to kill (the logs are in %[5]s)
   ip netns exec %[6]s ip addr
   ip netns pids %[6]s
`, kc, client, d.vip, backend.Port, d.logDir, d.env.Net.Nodes[0].Netns)
}

// poll calls cond every 200ms until it is true, fails, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
