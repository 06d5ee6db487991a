// Package speaker is porter-speaker, Porter's data path. Every speaker
// answers ARP for the addresses its node owns. It writes nothing in the
// cluster but its own node's NodeNICs and Events: porter-controller gives
// addresses to Services.
package speaker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/porterlb/porter/manifests"
	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apiclient"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/daemon"
	"github.com/porterlb/porter/pkg/facts"
	"github.com/porterlb/porter/pkg/memberkey"
	"github.com/porterlb/porter/pkg/membership"
	"github.com/porterlb/porter/pkg/version"
	"github.com/porterlb/porter/speaker/announcer"
	"github.com/porterlb/porter/speaker/events"
	"github.com/porterlb/porter/speaker/members"
	"github.com/porterlb/porter/speaker/metrics"
	"github.com/porterlb/porter/speaker/responder"
)

// Options are the speaker's command-line settings.
type Options struct {
	// Kubeconfig is empty inside a cluster, where the pod's service account
	// is used.
	Kubeconfig string
	NodeName   string
	Namespace  string
	// InventoryInterval is how often the NIC inventory is re-read.
	InventoryInterval time.Duration

	BindAddress    string
	MemberPort     int
	ProbeInterval  time.Duration
	RejoinInterval time.Duration
	// InsecureMember lets the speaker gossip without a key when the
	// member-key Secret is missing.
	InsecureMember bool

	MetricsAddress string
	HandoffGrace   time.Duration

	ARPProbe      responder.ProbeConfig
	Reprobe       time.Duration
	GARPRefresh   time.Duration
	TakeoverCheck time.Duration
	StarvedGrace  time.Duration
	HoldDown      time.Duration
	MaxHoldDown   time.Duration
}

// NewCommand builds the porter-speaker command.
func NewCommand(stdout, stderr io.Writer) *cobra.Command {
	var opts Options
	var verbose bool
	cmd := &cobra.Command{
		Use:   "porter-speaker",
		Short: "Porter's data path: answers ARP for the Service addresses its node owns",
		Long: `porter-speaker runs on every node, from the porter-system DaemonSet.

Every speaker answers ARP for the Service addresses its node owns. Which
node owns an address is decided by every speaker alike from the set of live
speakers, which they track among themselves with a fast gossip failure
detector, so that a dead node's addresses move in well under a second and
keep being answered while the API server is unreachable. porter-controller,
not the speaker, gives pool addresses to Services: a speaker may write
nothing in the cluster but its own node's NodeNICs and Events.`,
		Example: `  # As the DaemonSet runs it:
  porter-speaker --node-name=$(NODE_NAME)

  # Outside a cluster, against a kubeconfig:
  porter-speaker --kubeconfig ~/.kube/config --node-name node-a --bind-address 192.0.2.11`,
		Version:       version.Get().String(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return Run(cmd.Context(), daemon.Logger(stderr, verbose), opts)
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetVersionTemplate("porter-speaker {{.Version}}\n")
	f := cmd.Flags()
	f.StringVar(&opts.Kubeconfig, "kubeconfig", "", "Path to a kubeconfig; empty means the in-cluster service account")
	f.StringVar(&opts.NodeName, "node-name", os.Getenv("NODE_NAME"), "Name of the node this speaker runs on (default $NODE_NAME, set from the downward API)")
	f.StringVar(&opts.Namespace, "namespace", daemon.EnvOr("POD_NAMESPACE", manifests.Namespace), "Namespace of Porter's own objects: the speaker pods and the gossip key (default $POD_NAMESPACE, else porter-system)")
	f.DurationVar(&opts.InventoryInterval, "inventory-interval", 10*time.Second, "How often to re-read the node's NICs and republish them when changed")
	f.StringVar(&opts.BindAddress, "bind-address", os.Getenv("POD_IP"), "Address other speakers reach this one at (default $POD_IP, else the node's InternalIP)")
	f.IntVar(&opts.MemberPort, "member-port", 7947, "UDP and TCP port of the speakers' failure detector")
	f.DurationVar(&opts.ProbeInterval, "member-probe-interval", 80*time.Millisecond, "How often each speaker probes a peer; a dead peer is known in about 4 intervals")
	f.DurationVar(&opts.RejoinInterval, "rejoin-interval", 2*time.Second, "How often to contact speakers that are not members, to heal a partition")
	f.BoolVar(&opts.InsecureMember, "insecure-member", false, "Gossip without a key when the Secret "+memberkey.SecretName+" is missing; anyone who reaches the member port can then join")
	f.StringVar(&opts.MetricsAddress, "metrics-address", ":7473", "Where to serve /metrics, /healthz and /readyz; empty turns it off")
	f.DurationVar(&opts.HandoffGrace, "handoff-grace", 500*time.Millisecond, "On shutdown, how long to keep answering after telling the others, so the new owner is ready first")
	f.IntVar(&opts.ARPProbe.Count, "arp-probes", 3, "ARP probes sent before first announcing an address (RFC 5227)")
	f.DurationVar(&opts.ARPProbe.Interval, "arp-probe-interval", 150*time.Millisecond, "Time between ARP probes")
	f.DurationVar(&opts.ARPProbe.Wait, "arp-probe-wait", 200*time.Millisecond, "Time to listen for an answer after the last probe")
	f.DurationVar(&opts.GARPRefresh, "gratuitous-arp-refresh", time.Minute, "How often to announce every owned address again with gratuitous ARP, against switches' MAC and hosts' ARP aging; 0 turns it off")
	f.DurationVar(&opts.TakeoverCheck, "takeover-check", 25*time.Millisecond, "Before taking an address from a member that failed, how long to ask the wire, twice, whether its owner or its node still answers; 0 takes it as soon as gossip says")
	f.DurationVar(&opts.StarvedGrace, "starved-grace", 3*time.Second, "How long a failed member whose node still answers ARP keeps its addresses: its speaker may only be starved of CPU")
	f.DurationVar(&opts.HoldDown, "hold-down", 5*time.Second, "How long a member found failed waits, once it is back, before it takes addresses back; it doubles with each failure in 15 minutes; 0 turns damping off")
	f.DurationVar(&opts.MaxHoldDown, "max-hold-down", 5*time.Minute, "The longest hold-down of a member that keeps failing")
	f.DurationVar(&opts.Reprobe, "reprobe-interval", 30*time.Second, "How long an address found in use waits before it is probed again")
	f.BoolVarP(&verbose, "verbose", "v", false, "Log debug detail, including the failure detector's")
	return cmd
}

// Run connects to the API server and serves until ctx is cancelled.
func Run(ctx context.Context, log *slog.Logger, opts Options) error {
	if opts.NodeName == "" {
		return errors.New("--node-name is required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", opts.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load client configuration: %w", err)
	}
	// The speaker writes little: its NIC report and Events.
	cfg.QPS, cfg.Burst = 20, 40
	// Lists come over the cluster's own network. Compressed, each watch
	// and list costs the speaker an inflate window and the CPU to use it,
	// and the API server the CPU to deflate, on every node.
	cfg.DisableCompression = true
	api, err := apiclient.New(cfg)
	if err != nil {
		return err
	}
	sv, err := api.ServerVersion(ctx)
	if err != nil {
		return fmt.Errorf("contact API server: %w", err)
	}
	log.Info("speaker started", "version", version.Get().Version, "node", opts.NodeName, "apiServer", sv.GitVersion, "memoryLimit", daemon.MemoryLimit())

	// Informers outlive ctx a little: the data path keeps its caches while
	// it hands over.
	infCtx, stopInformers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopInformers()
	src, err := facts.NewSources(ctx, api, facts.SourceOptions{
		Transform: facts.Lean, Unread: facts.LeanUnread, LoadBalancersOnly: true,
		OnAllServices: func(err error) {
			log.Warn("the API server refused to select Services by type; every Service is watched from now on", "err", err)
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			log.Info("speaker stopping before it read the cluster", "reason", context.Cause(ctx))
			return nil
		}
		return err
	}
	if src.NoServiceCIDRs {
		log.Info("the API server has no ServiceCIDR API; the Service range is taken from kubeadm-config where there is one")
	}
	if src.AllServices() {
		log.Info("the API server cannot select Services by type; every Service is watched, and each that is not a LoadBalancer is kept as a small summary")
	}
	fi := src.Informers
	// The speakers' own pods: a gossip member counts only on a node that
	// runs a ready one.
	speakerPods, err := src.Scoped(apiclient.Pods, opts.Namespace, func(o *metav1.ListOptions) { o.LabelSelector = membership.SpeakerPodSelector })
	if err != nil {
		return err
	}
	// Endpoints, trimmed to the nodes that have a ready one, and watched
	// in the namespaces of Local Services only: externalTrafficPolicy
	// Local announces only from those nodes, and no other Service's
	// endpoints matter here.
	sliceInformer := func(ns string) (cache.SharedIndexInformer, error) {
		i := api.Resource(apiclient.EndpointSlices).Informer(ns, nil)
		if err := i.SetTransform(facts.Lean); err != nil {
			return nil, fmt.Errorf("set informer transform: %w", err)
		}
		return i, nil
	}
	nicsInf := fi.NodeNICs
	fa, err := facts.New(fi)
	if err != nil {
		return fmt.Errorf("watch the address policy's caches: %w", err)
	}
	src.Start(infCtx.Done())
	defer func() {
		stopInformers()
		src.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), fi.Nodes.HasSynced) {
		log.Info("speaker stopping before it read the nodes", "reason", context.Cause(ctx))
		return nil
	}
	// A DaemonSet pod's node exists; a speaker started by hand may come
	// before its node registers.
	for i := 0; ; i++ {
		if _, err := nodeFrom(fi.Nodes, opts.NodeName); err == nil {
			break
		}
		if i%100 == 0 {
			log.Info("waiting for this speaker's node to exist", "node", opts.NodeName)
		}
		select {
		case <-ctx.Done():
			log.Info("speaker stopping", "reason", context.Cause(ctx))
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}

	bind := opts.BindAddress
	if bind == "" {
		n, err := nodeFrom(fi.Nodes, opts.NodeName)
		if err != nil {
			return err
		}
		ip := n.InternalIP
		if !ip.IsValid() {
			return fmt.Errorf("node %s has no InternalIP; set --bind-address", opts.NodeName)
		}
		bind = ip.String()
	}
	// The member key's Secret, alone: the speaker may read no other. It
	// starts after the other caches, so it is started here.
	keySecret, err := src.Scoped(apiclient.Secrets, opts.Namespace, facts.ByName(memberkey.SecretName))
	if err != nil {
		return err
	}
	src.Start(infCtx.Done())
	keys, err := waitForKeys(ctx, keySecret, opts, log)
	if err != nil || ctx.Err() != nil {
		return err
	}
	mem, err := members.Start(members.Config{
		Name: opts.NodeName, BindAddr: bind, Port: opts.MemberPort,
		ProbeInterval: opts.ProbeInterval, Keys: keys, Log: log,
	})
	if err != nil {
		return err
	}

	rec := events.New("porter-speaker", opts.NodeName, func(ctx context.Context, e *corev1.Event) error {
		_, err := api.CreateEvent(ctx, e)
		return err
	}, 10*time.Minute, log)
	go rec.Run(infCtx)

	m := metrics.New()
	invKick := make(chan struct{}, 1)
	kickInventory := func() {
		select {
		case invKick <- struct{}{}:
		default:
		}
	}
	an := announcer.New(announcer.Config{
		Node:     opts.NodeName,
		Services: src.Services, EndpointSliceInformer: sliceInformer, Facts: fa, SpeakerPods: speakerPods,
		Changed: kickInventory,
		Members: mem, Metrics: m, Recorder: rec, Log: log,
		Probe: opts.ARPProbe, Reprobe: opts.Reprobe, Refresh: opts.GARPRefresh,
		TakeoverCheck: opts.TakeoverCheck, StarvedGrace: opts.StarvedGrace,
		Damping: membership.Damping{Base: opts.HoldDown, Max: opts.MaxHoldDown, Forget: 15 * time.Minute},
	})

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	done := make(chan error, 4)
	go func() { done <- an.Run(runCtx) }()

	inv := &inventory{
		api: api, nodeName: opts.NodeName, log: log, every: opts.InventoryInterval,
		node: func() (*addrpolicy.DecodedNode, error) { return nodeFrom(fi.Nodes, opts.NodeName) },
		speaker: func() *v1alpha1.SpeakerStatus {
			return &v1alpha1.SpeakerStatus{MemberAddress: mem.Address(), Members: an.KnownMembers(), Announcing: an.Announcing(), Addresses: an.Announced(), MemberKeys: memberkey.Fingerprints(mem.Keys()), UnknownMembers: an.UnknownMembers(), Version: version.Get().Version}
		},
		// Until the announcer has taken them up, the conflicts already
		// published stand, so a restart never wipes them.
		conflicts: func() []v1alpha1.AddressConflict {
			if an.Ready() {
				return an.Conflicts()
			}
			if r, ok := reportFrom(nicsInf, opts.NodeName); ok {
				return r.APIConflicts()
			}
			return nil
		},
		synced: nicsInf.HasSynced,
		kick:   invKick,
		exists: func() bool {
			_, ok, _ := nicsInf.GetStore().GetByKey(opts.NodeName)
			return ok || !nicsInf.HasSynced()
		},
	}
	if inv.every <= 0 {
		inv.every = 10 * time.Second
	}
	go func() { done <- inv.run(runCtx) }()
	if keys != nil {
		if err := followKeys(keySecret, mem, kickInventory, log); err != nil {
			return err
		}
	}
	go rejoin(runCtx, mem, an.Ready, fa.Reports, opts.NodeName, opts.RejoinInterval, inv.kick, log)

	var srv *http.Server
	if opts.MetricsAddress != "" {
		srv = serveHTTP(opts.MetricsAddress, m, an, mem, log)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-done:
	}
	log.Info("speaker stopping", "reason", context.Cause(ctx), "err", runErr)
	// Hand over first, then stop answering: the others take the addresses
	// and send gratuitous ARP while this node still answers, so no client
	// sees a gap.
	stopRun()
	if err := mem.Leave(opts.HandoffGrace); err != nil {
		log.Warn("leave", "err", err)
	}
	time.Sleep(opts.HandoffGrace)
	an.Close()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	return runErr
}

// rejoin keeps contacting the speakers that published a member address
// but are not members: at start, and after a partition heals.
//
// It joins no one before ready says this speaker's caches have synced and
// it has published which pools it can serve: until then, it would only be
// a member that serves nothing.
func rejoin(ctx context.Context, mem *members.Members, ready func() bool, reports func() []addrpolicy.Report, self string, every time.Duration, kick chan struct{}, log *slog.Logger) {
	if every <= 0 {
		every = 2 * time.Second
	}
	for !ready() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	changed := mem.Subscribe()
	last := -1
	for {
		var peers []string
		for _, r := range reports() {
			if r.Node == self || r.MemberAddress == "" {
				continue
			}
			peers = append(peers, r.MemberAddress)
		}
		if len(peers) > 0 {
			if n := mem.Join(peers); n > 0 {
				log.Debug("joined peers", "count", n)
			}
		}
		if live := len(mem.Live()); live != last {
			last = live
			select {
			case kick <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
			select {
			case kick <- struct{}{}:
			default:
			}
		case <-time.After(every):
		}
	}
}

func serveHTTP(address string, m *metrics.Metrics, an *announcer.Announcer, mem *members.Members, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := an.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !an.Ready() {
			http.Error(w, "not ready: caches not synced or first decision not made", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok: %d members, announcing %d\n", len(mem.Live()), an.Announcing())
	})
	srv := &http.Server{Addr: address, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve metrics", "address", address, "err", err)
		}
	}()
	return srv
}

// nodeFrom is the node name, as the speaker's cache holds it (Lean).
func nodeFrom(inf cache.SharedIndexInformer, name string) (*addrpolicy.DecodedNode, error) {
	o, ok, err := inf.GetStore().GetByKey(name)
	if err != nil {
		return nil, fmt.Errorf("read node %s from cache: %w", name, err)
	}
	if !ok {
		return nil, fmt.Errorf("node %s not found", name)
	}
	n, ok := o.(*addrpolicy.DecodedNode)
	if !ok {
		return nil, fmt.Errorf("unexpected %T in the nodes cache", o)
	}
	return n, nil
}

// reportFrom is the node's NIC report, as the speaker's cache holds it
// (Lean).
func reportFrom(inf cache.SharedIndexInformer, name string) (*addrpolicy.DecodedReport, bool) {
	o, ok, err := inf.GetStore().GetByKey(name)
	if err != nil || !ok {
		return nil, false
	}
	r, ok := o.(*addrpolicy.DecodedReport)
	return r, ok
}
