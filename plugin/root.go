// Package plugin holds the commands of `kubectl porter`.
package plugin

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/klog/v2"

	"github.com/porterlb/porter/plugin/steps"
)

// Execute runs the plugin with args and returns the process exit code. It
// prints errors itself so that every failure has the same "error: " shape.
func Execute(ctx context.Context, args []string, streams genericiooptions.IOStreams) int {
	root := NewRootCommand(streams)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintf(streams.ErrOut, "error: %v\n", err)
		var h *steps.Hinted
		if errors.As(err, &h) && h.Hint != "" {
			fmt.Fprintf(streams.ErrOut, "hint: %s\n", h.Hint)
		}
		return 1
	}
	return 0
}

// exitError carries an exit code for failures already reported to the user.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// NewRootCommand builds the `kubectl porter` command tree.
func NewRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	kube := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:   "porter",
		Short: "Set up Porter, the Layer 2 load balancer for bare-metal Kubernetes",
		Long: `kubectl porter sets up Porter, which gives LoadBalancer Services real IPs from
an address pool and announces them by ARP on the nodes' LAN.

Every step can be previewed with --dry-run, is safe to repeat, and can be
undone.`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl porter",
		},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	kube.AddFlags(root.PersistentFlags())
	// -v as in kubectl: at 6 client-go logs every API request, which is how
	// to see what a command asks of the API server.
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	root.PersistentFlags().AddGoFlag(klogFlags.Lookup("v"))

	root.AddCommand(
		newEipCommand(kube, streams),
		newInitCommand(kube, streams),
		newNICsCommand(kube, streams),
		newRotateKeyCommand(kube, streams),
		newStatusCommand(kube, streams),
		newCompletionCommand(streams),
		newUninstallCommand(kube, streams),
		newVersionCommand(kube, streams),
	)
	return root
}
