package plugin

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/porterlb/porter/plugin/health"
)

type statusOptions struct {
	wait     bool
	timeout  time.Duration
	output   string
	services bool
}

func newStatusCommand(kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := statusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the health of the Porter installation at a glance",
		Long: `status checks the whole installation and marks each check ✓ (ok),
‼ (warning) or × (failed), with a hint saying what to run for each problem:

  kube-proxy   its mode and strictARP, and its rollout
  speaker      the DaemonSet, and the nodes without a ready speaker
  members      whether every speaker sees every other
  nodes        the NIC inventory and layer2 annotation of each node
  pools        each Eip's usage, conflicts and refusals
  services     each Porter Service: pending, or its address, announcing
               node and interface
  other load balancers

It reads the cluster in about a dozen API calls, whatever its size. The exit
code is 1 when any check failed. -o json prints the documented report
(docs/status.md).`,
		Example: `  # The health of the installation
  kubectl porter status

  # Wait until it is healthy, e.g. after init
  kubectl porter status --wait --timeout 2m

  # For scripts and monitoring
  kubectl porter status -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(cmd.Context(), kube, streams, o)
		},
	}
	cmd.Flags().BoolVar(&o.wait, "wait", false, "Wait until no check fails")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 2*time.Minute, "How long --wait waits")
	cmd.Flags().BoolVar(&o.services, "services", true, "List every Porter Service")
	addOutputFlag(cmd, &o.output, outputJSON, outputYAML)
	return cmd
}

func runStatus(ctx context.Context, kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams, o statusOptions) error {
	if err := validateOutput(o.output, outputJSON, outputYAML); err != nil {
		return err
	}
	c, err := newClients(kube)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(o.timeout)
	var rep *health.Report
	for {
		rep, err = health.Gather(ctx, c.kube, c.dyn)
		if err != nil {
			return err
		}
		if !o.wait || rep.Healthy || time.Now().After(deadline) {
			break
		}
		if o.output == "" {
			fmt.Fprintf(streams.ErrOut, "waiting: %s\n", firstFailure(rep))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	if o.output != "" {
		if err := printObject(streams.Out, o.output, rep); err != nil {
			return err
		}
	} else {
		printStatus(streams.Out, rep, o.services)
	}
	if !rep.Healthy {
		return exitError{code: 1}
	}
	return nil
}

func firstFailure(r *health.Report) string {
	for _, c := range r.Categories {
		for _, ch := range c.Checks {
			if ch.State == health.Failed {
				return c.Name + ": " + ch.Detail
			}
		}
	}
	return ""
}

// printStatus renders the report as categories of marked checks, then the
// Services.
func printStatus(w io.Writer, r *health.Report, services bool) {
	c := newChecklist(w)
	for _, cat := range r.Categories {
		fmt.Fprintln(w, cat.Name)
		for _, ch := range cat.Checks {
			var mark string
			switch ch.State {
			case health.OK:
				mark = c.done.Render("✓")
			case health.Warning:
				mark = c.planned.Render("‼")
			default:
				mark = c.failed.Render("×")
			}
			fmt.Fprintf(w, "  %s %-12s %s\n", mark, ch.Name, ch.Detail)
			if ch.Hint != "" && ch.State != health.OK {
				fmt.Fprintf(w, "    %-12s %s\n", "", c.hint.Render("hint: "+ch.Hint))
			}
		}
	}
	if services && len(r.Services) > 0 {
		fmt.Fprintln(w, "")
		fmt.Fprintf(w, "%-32s %-16s %-12s %s\n", "SERVICE", "ADDRESS", "NODE", "INTERFACE")
		for _, s := range r.Services {
			switch {
			case s.Pending:
				fmt.Fprintf(w, "%-32s %-16s %s\n", s.Name, "<pending>", s.Reason)
			case s.Node == "":
				fmt.Fprintf(w, "%-32s %-16s %-12s %s\n", s.Name, s.IP, "-", s.Reason)
			default:
				fmt.Fprintf(w, "%-32s %-16s %-12s %s\n", s.Name, s.IP, s.Node, s.Interface)
			}
		}
	}
	verdict := "healthy"
	switch r.Worst() {
	case health.Failed:
		verdict = "unhealthy"
	case health.Warning:
		verdict = "healthy, with warnings"
	}
	fmt.Fprintf(w, "\nPorter is %s\n", verdict)
}
