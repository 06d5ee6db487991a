// Package controller is porter-controller: the one component that writes
// Services and pools. Its replicas elect a leader on a Lease; the leader
// gives pool addresses to Services, keeps the pools' status, records which
// node announces each address, and rolls back a guarded change whose lockout
// guard expired unconfirmed. The speakers keep only data-path rights.
package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"

	"github.com/porterlb/porter/controller/allocator"
	"github.com/porterlb/porter/controller/announcers"
	"github.com/porterlb/porter/manifests"
	"github.com/porterlb/porter/pkg/apiclient"
	"github.com/porterlb/porter/pkg/daemon"
	"github.com/porterlb/porter/pkg/facts"
	"github.com/porterlb/porter/pkg/version"
)

// LeaseName is the Lease the controller's replicas elect their leader on.
const LeaseName = manifests.ControllerLease

// Options are the controller's command-line settings.
type Options struct {
	// Kubeconfig is empty inside a cluster, where the pod's service account
	// is used.
	Kubeconfig string
	Namespace  string
	// Identity names this replica in the Lease.
	Identity      string
	HealthAddress string

	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	Workers       int
	// QPS and Burst bound the controller's API requests. Each new
	// Service costs two writes (its address, then its announcer), so
	// these set how fast a flood of Services is served.
	QPS   float32
	Burst int
}

// NewCommand builds the porter-controller command.
func NewCommand(stdout, stderr io.Writer) *cobra.Command {
	var opts Options
	var verbose bool
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "porter-controller",
		Short: "Porter's controller: gives pool addresses to Services and enforces the lockout guard",
		Long: `porter-controller runs as a Deployment of two replicas in porter-system.

The replicas elect a leader on the porter-allocator Lease. The leader gives
pool addresses to LoadBalancer Services, keeps each Eip's status, records on
each Service which node announces its address, and rolls back a guarded
change (kubectl porter init --guard) whose lockout guard expired unconfirmed.
It alone holds the rights to write Services, Eips and kube-proxy's
configuration; the speakers on every node only answer ARP.`,
		Example: `  # As the Deployment runs it:
  porter-controller

  # Outside a cluster, against a kubeconfig:
  porter-controller --kubeconfig ~/.kube/config --identity laptop`,
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
	cmd.SetVersionTemplate("porter-controller {{.Version}}\n")
	f := cmd.Flags()
	f.StringVar(&opts.Kubeconfig, "kubeconfig", "", "Path to a kubeconfig; empty means the in-cluster service account")
	f.StringVar(&opts.Namespace, "namespace", daemon.EnvOr("POD_NAMESPACE", manifests.Namespace), "Namespace of the Lease and the lockout guard's plans (default $POD_NAMESPACE, else porter-system)")
	f.StringVar(&opts.Identity, "identity", daemon.EnvOr("POD_NAME", host), "This replica's name in the Lease (default $POD_NAME, else the host name)")
	f.StringVar(&opts.HealthAddress, "health-address", ":7474", "Where to serve /healthz and /readyz; empty turns it off")
	f.DurationVar(&opts.LeaseDuration, "lease-duration", 15*time.Second, "How long a leader's Lease lasts unrenewed before another replica takes over")
	f.DurationVar(&opts.RenewDeadline, "lease-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew before it steps down")
	f.DurationVar(&opts.RetryPeriod, "lease-retry-period", 2*time.Second, "How often replicas try to take or renew the Lease")
	f.IntVar(&opts.Workers, "workers", 8, "Services written in parallel")
	f.Float32Var(&opts.QPS, "kube-api-qps", 100, "API requests per second the controller may make, sustained; each new Service costs two")
	f.IntVar(&opts.Burst, "kube-api-burst", 200, "API requests the controller may make at once, above --kube-api-qps")
	f.BoolVarP(&verbose, "verbose", "v", false, "Log debug detail")
	return cmd
}

// Run connects to the API server and serves until ctx is cancelled.
func Run(ctx context.Context, log *slog.Logger, opts Options) error {
	if opts.Identity == "" {
		return errors.New("--identity is required")
	}
	if opts.LeaseDuration <= opts.RenewDeadline || opts.RenewDeadline <= opts.RetryPeriod || opts.RetryPeriod <= 0 {
		return fmt.Errorf("need --lease-duration (%s) > --lease-renew-deadline (%s) > --lease-retry-period (%s) > 0", opts.LeaseDuration, opts.RenewDeadline, opts.RetryPeriod)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", opts.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load client configuration: %w", err)
	}
	cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	clients, err := newClients(cfg)
	if err != nil {
		return err
	}
	sv, err := clients.api.ServerVersion(ctx)
	if err != nil {
		return fmt.Errorf("contact API server: %w", err)
	}
	log.Info("controller started", "version", version.Get().Version, "identity", opts.Identity, "apiServer", sv.GitVersion, "memoryLimit", daemon.MemoryLimit())

	src, err := facts.NewSources(ctx, clients.api, facts.SourceOptions{Transform: facts.Transform})
	if err != nil {
		if ctx.Err() != nil {
			log.Info("controller stopping before it read the cluster", "reason", context.Cause(ctx))
			return nil
		}
		return err
	}
	if src.NoServiceCIDRs {
		log.Info("the API server has no ServiceCIDR API; the Service range is taken from kubeadm-config where there is one")
	}
	namespaces, err := src.Scoped(apiclient.Namespaces, "", nil)
	if err != nil {
		return err
	}
	if err := src.Services.AddIndexers(announcers.Indexers()); err != nil {
		return fmt.Errorf("index Services: %w", err)
	}
	fa, err := facts.New(src.Informers)
	if err != nil {
		return fmt.Errorf("watch the address policy's caches: %w", err)
	}
	infCtx, stopInformers := context.WithCancel(ctx)
	defer stopInformers()
	src.Start(infCtx.Done())
	defer func() {
		stopInformers()
		src.Shutdown()
	}()

	bc := record.NewBroadcaster(record.WithContext(infCtx))
	bc.StartRecordingToSink(eventSink{infCtx, clients.api})
	defer bc.Shutdown()
	rec := bc.NewRecorder(clients.api.Scheme, corev1.EventSource{Component: "porter-controller"})

	synced := func() bool {
		return src.Services.HasSynced() && namespaces.HasSynced() && fa.HasSynced()
	}
	var leading atomic.Bool
	var srv *http.Server
	if opts.HealthAddress != "" {
		srv = serveHealth(opts.HealthAddress, synced, &leading, log)
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = srv.Shutdown(sctx)
			cancel()
		}()
	}

	// One term's allocator and annotation writer are its own, and end with
	// it: a new term rebuilds its table from the API.
	term := func(ctx context.Context) {
		leading.Store(true)
		defer leading.Store(false)
		var wg sync.WaitGroup
		wg.Go(func() {
			a := &allocator.Controller{
				Kube: clients.Kube, Dyn: clients.Dyn,
				Inf:   allocator.Informers{Services: src.Services, Namespaces: namespaces},
				Facts: fa, Recorder: rec, Log: log, Workers: opts.Workers,
			}
			if err := a.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error("allocator", "err", err)
			}
		})
		wg.Go(func() {
			w := &announcers.Writer{Kube: clients.Kube, Services: src.Services, NodeNICs: src.NodeNICs, Facts: fa, Log: log}
			if err := w.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error("announcer annotation", "err", err)
			}
		})
		wg.Wait()
	}
	err = elect(ctx, clients.Kube, opts, term, log)
	log.Info("controller stopping", "reason", context.Cause(ctx), "err", err)
	return err
}

// elect campaigns for the Lease for as long as ctx lasts; losing it (the
// API server gone for a while) only pauses the work. Terms never overlap:
// client-go returns from a lost term, and campaigns again, before the
// term's own callback has returned, so each term holds running until it
// has stopped all its workers, and the next one waits for it.
func elect(ctx context.Context, cs kubernetes.Interface, opts Options, term func(context.Context), log *slog.Logger) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opts.Namespace, Name: LeaseName},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: opts.Identity},
	}
	var running sync.Mutex
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   opts.LeaseDuration,
			RenewDeadline:   opts.RenewDeadline,
			RetryPeriod:     opts.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					running.Lock()
					defer running.Unlock()
					if ctx.Err() != nil {
						return // lost before the previous term had ended
					}
					log.Info("leading", "identity", opts.Identity)
					term(ctx)
				},
				OnStoppedLeading: func() {},
				OnNewLeader: func(id string) {
					log.Info("leader", "identity", id)
				},
			},
		})
		if err != nil {
			return fmt.Errorf("set up leader election: %w", err)
		}
		le.Run(ctx)
	}
	// The last term ends before the controller does.
	running.Lock()
	running.Unlock() //nolint:staticcheck // an empty critical section: waiting is the point
	return nil
}

// serveHealth answers /healthz while the process runs and /readyz once its
// caches have synced; a standby replica is ready too, so that it counts as
// available and takes over at once.
func serveHealth(address string, synced func() bool, leading *atomic.Bool, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !synced() {
			http.Error(w, "not ready: caches not synced", http.StatusServiceUnavailable)
			return
		}
		role := "standby"
		if leading.Load() {
			role = "leading"
		}
		fmt.Fprintf(w, "ok: %s\n", role)
	})
	srv := &http.Server{Addr: address, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve health", "address", address, "err", err)
		}
	}()
	return srv
}

// clients are the controller's connections: the lean client its caches
// read through, and the full ones it writes Services, pools, Leases and
// kube-proxy's configuration with.
type clients struct {
	api  *apiclient.Client
	Kube kubernetes.Interface
	Dyn  dynamic.Interface
}

func newClients(cfg *rest.Config) (clients, error) {
	api, err := apiclient.New(cfg)
	if err != nil {
		return clients{}, err
	}
	pcfg := rest.CopyConfig(cfg)
	pcfg.ContentType = "application/vnd.kubernetes.protobuf"
	pcfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(pcfg)
	if err != nil {
		return clients{}, fmt.Errorf("create Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return clients{}, fmt.Errorf("create dynamic client: %w", err)
	}
	return clients{api: api, Kube: cs, Dyn: dyn}, nil
}

// eventSink writes the broadcaster's Events through the lean client.
type eventSink struct {
	ctx context.Context
	api *apiclient.Client
}

func (s eventSink) Create(e *corev1.Event) (*corev1.Event, error) { return s.api.CreateEvent(s.ctx, e) }
func (s eventSink) Update(e *corev1.Event) (*corev1.Event, error) { return s.api.UpdateEvent(s.ctx, e) }
func (s eventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	return s.api.PatchEvent(s.ctx, e, data)
}
