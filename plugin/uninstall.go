package plugin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/manifests"
	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/plugin/setup"
	"github.com/porterlb/porter/plugin/steps"
)

type uninstallOptions struct {
	dryRun   string
	yes      bool
	force    bool
	keepEips bool
	timeout  time.Duration
	output   string
}

// uninstallReport is the `-o json` shape of uninstall.
type uninstallReport struct {
	DryRun string         `json:"dryRun"`
	Steps  []steps.Result `json:"steps"`
	// Holding lists the Services that held Porter addresses.
	Holding []string `json:"holding,omitempty"`
	Error   string   `json:"error,omitempty"`
}

func newUninstallCommand(kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := uninstallOptions{}
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Take back everything init did, in reverse",
		Long: `uninstall runs the undo of every init step, last step first:

  - removes the speaker and the controller: DaemonSet, Deployment, RBAC,
    admission policies and the porter-system namespace, and
    the Eip and NodeNICs CRDs with every pool (--keep-eips keeps the Eip CRD
    and the pools);
  - removes the node annotations init made, and only those;
  - restores ipvs.strictARP to the value it had before init, restarting
    kube-proxy only if that changes it.

It refuses while LoadBalancer Services hold Porter addresses, since they
would stop being reachable, and lists them; --force goes ahead anyway.
Running init afterwards gives a working installation again.`,
		Example: `  # See what would be removed
  kubectl porter uninstall --dry-run=client

  # Remove Porter but keep the address pools
  kubectl porter uninstall --keep-eips --yes

  # Remove Porter although Services still hold its addresses
  kubectl porter uninstall --force --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUninstall(cmd.Context(), kube, streams, o)
		},
	}
	addDryRunFlag(cmd, &o.dryRun)
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "Remove without asking")
	cmd.Flags().BoolVar(&o.force, "force", false, "Uninstall although Services hold Porter addresses")
	cmd.Flags().BoolVar(&o.keepEips, "keep-eips", false, "Keep the Eip CRD and every pool")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Minute, "How long to wait for kube-proxy's rollout and the namespace to go")
	addOutputFlag(cmd, &o.output, outputJSON)
	return cmd
}

func runUninstall(ctx context.Context, kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams, o uninstallOptions) error {
	if err := validateOutput(o.output, outputJSON); err != nil {
		return err
	}
	dry, err := steps.ParseDryRun(o.dryRun)
	if err != nil {
		return err
	}
	c, err := newClients(kube)
	if err != nil {
		return err
	}
	cs, dc := c.kube, c.dyn
	mapper, err := kube.ToRESTMapper()
	if err != nil {
		return fmt.Errorf("discover API resources: %w", err)
	}
	human := streams.Out
	if o.output != "" {
		human = streams.ErrOut
	}
	report := uninstallReport{DryRun: dry.String()}
	finish := func(runErr error) error {
		if runErr != nil {
			report.Error = runErr.Error()
		}
		if o.output != "" {
			if err := printObject(streams.Out, o.output, report); err != nil {
				return err
			}
			if runErr != nil {
				return exitError{code: 1}
			}
			return nil
		}
		return runErr
	}

	holding, err := portersServices(ctx, cs, c.eips)
	if err != nil {
		return finish(err)
	}
	report.Holding = holding
	if len(holding) > 0 && !o.force {
		return finish(&steps.Hinted{
			Err:  fmt.Errorf("%d Service(s) hold Porter addresses and would become unreachable: %s", len(holding), strings.Join(holding, ", ")),
			Hint: "delete them or change their type first, or rerun with --force",
		})
	}
	if dry == steps.Write && !o.yes {
		ok, err := confirmer(streams, human, false)("uninstall", steps.Plan{Summary: "remove Porter from the cluster (run with --dry-run=client to see each change)"})
		if err != nil {
			return finish(err)
		}
		if !ok {
			return finish(steps.ErrDeclined)
		}
	}

	list := newChecklist(human)
	restart := &setup.RestartKubeProxy{Client: cs, Timeout: o.timeout, Progress: func(m string) { list.progress("restart kube-proxy", m) }}
	speaker := &setup.Speaker{Client: cs, Dynamic: dc, Mapper: mapper, RemoveCRDs: true}
	if o.keepEips {
		speaker.KeepCRDs = []string{"eips.network.kubesphere.io"}
	}
	work := []steps.Step{
		&setup.StrictARP{Client: cs, Restart: restart},
		speaker,
		&setup.NICAnnotations{Client: cs, Dynamic: dc},
	}
	runner := steps.Runner{DryRun: dry, Report: list.print}
	results, runErr := runner.Undo(ctx, work)
	report.Steps = results
	if runErr == nil && dry == steps.Write {
		list.progress("uninstall", "waiting for namespace porter-system to go")
		runErr = waitGone(ctx, cs, o.timeout)
	}
	if runErr != nil {
		return finish(fmt.Errorf("uninstall: %w", runErr))
	}
	if o.output == "" {
		switch dry {
		case steps.Client:
			fmt.Fprintln(human, "dry run: nothing was removed")
		case steps.Server:
			fmt.Fprintln(human, "server dry run: the API server accepted every removal; nothing was removed")
		default:
			fmt.Fprintln(human, "Porter is uninstalled")
		}
	}
	return finish(nil)
}

// portersServices lists the LoadBalancer Services holding a Porter
// address: those Porter serves, as the pools say (Services with no class
// included when the default pool asks for them).
func portersServices(ctx context.Context, cs kubernetes.Interface, ec *eips.Client) ([]string, error) {
	list, err := cs.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Services: %w", err)
	}
	var pools []addrpolicy.Pool
	el, err := ec.List(ctx)
	switch {
	case err == nil:
		for i := range el.Items {
			pools = append(pools, addrpolicy.PoolFromEip(&el.Items[i]))
		}
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("list Eips: %w", err)
	}
	policy := addrpolicy.New(addrpolicy.Snapshot{Pools: pools})
	var out []string
	for i := range list.Items {
		s := &list.Items[i]
		if policy.Serves(s) && lbservice.IngressIP(s).IsValid() {
			out = append(out, lbservice.Key(s)+" ("+lbservice.IngressIP(s).String()+")")
		}
	}
	return out, nil
}

// waitGone waits for the namespace to finish terminating, so that init can
// run again right away.
func waitGone(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, manifests.Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("wait for namespace porter-system to be deleted: %w", err)
	}
	return nil
}
