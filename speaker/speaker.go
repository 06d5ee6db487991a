// Package speaker is porter-speaker, Porter's in-cluster helper.
package speaker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/porterlb/porter/pkg/version"
)

// Options are the speaker's command-line settings.
type Options struct {
	// Kubeconfig is empty inside a cluster, where the pod's service account
	// is used.
	Kubeconfig string
	NodeName   string
	// InventoryInterval is how often the NIC inventory is re-read.
	InventoryInterval time.Duration
}

// Execute runs the speaker with args and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := NewCommand(stdout, stderr)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

// NewCommand builds the porter-speaker command.
func NewCommand(stdout, stderr io.Writer) *cobra.Command {
	var opts Options
	cmd := &cobra.Command{
		Use:           "porter-speaker",
		Short:         "Porter's in-cluster helper: allocates pool IPs and answers ARP for them",
		Version:       version.Get().String(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(stderr, nil))
			return Run(cmd.Context(), log, opts)
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetVersionTemplate("porter-speaker {{.Version}}\n")
	cmd.Flags().StringVar(&opts.Kubeconfig, "kubeconfig", "", "Path to a kubeconfig; empty means the in-cluster service account")
	cmd.Flags().StringVar(&opts.NodeName, "node-name", os.Getenv("NODE_NAME"), "Name of the node this speaker runs on (default $NODE_NAME, set from the downward API)")
	cmd.Flags().DurationVar(&opts.InventoryInterval, "inventory-interval", 10*time.Second, "How often to re-read the node's NICs and republish them when changed")
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
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("create Kubernetes client: %w", err)
	}
	sv, err := cs.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("contact API server: %w", err)
	}
	log.Info("speaker started", "version", version.Get().Version, "node", opts.NodeName, "apiServer", sv.GitVersion)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("create dynamic client: %w", err)
	}
	inv := &inventory{kube: cs, dyn: dyn, nodeName: opts.NodeName, log: log, every: opts.InventoryInterval}
	if inv.every <= 0 {
		inv.every = 10 * time.Second
	}
	err = inv.run(ctx)
	log.Info("speaker stopping", "reason", context.Cause(ctx))
	return err
}
