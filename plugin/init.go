package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/porterlb/porter/pkg/addr"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	porterversion "github.com/porterlb/porter/pkg/version"
	"github.com/porterlb/porter/plugin/setup"
	"github.com/porterlb/porter/plugin/steps"
)

type initOptions struct {
	dryRun   string
	yes      bool
	timeout  time.Duration
	output   string
	image    string
	iface    string
	eips     []string
	force    bool
	nicsWait time.Duration
	guard    guardOptions
	// serveUnclassed has the first --eip pool serve Services that name
	// no class, when it can be the default pool.
	serveUnclassed bool
}

// initReport is the `-o json` shape of init: stable, fields only added.
type initReport struct {
	DryRun string         `json:"dryRun"`
	Steps  []steps.Result `json:"steps"`
	// Changed counts the steps that wrote (or, in a dry run, would write).
	Changed int    `json:"changed"`
	Error   string `json:"error,omitempty"`
}

func newInitCommand(kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := initOptions{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Set Porter up: preflight, strictARP, kube-proxy restart, speaker and controller, NICs, pools",
		Long: `init does the Porter guide's setup checklist in one command:

  1. preflight: the API server answers, you hold every permission init needs,
     and no other load balancer answers ARP for the same addresses;
  2. strictARP: sets ipvs.strictARP: true in the kube-proxy ConfigMap, changing
     nothing else in it (skipped in iptables or nftables mode, or without
     kube-proxy);
  3. restart kube-proxy, only if strictARP changed, and wait for the rollout;
  4. deploy Porter (namespace porter-system, CRDs, RBAC, admission policies,
     the speaker DaemonSet and the controller Deployment) with server-side
     apply, and wait for a speaker on every node and both controllers;
  5. pick each node's NIC from the inventory the speakers publish (the NIC
     holding the node's InternalIP, or --interface), and annotate nodes with
     more than one NIC, as the guide's manual 'kubectl annotate' step does;
  6. create the --eip pools, through the same checks as 'eip create'. When no
     pool is the default yet and no other load balancer is found, the first
     becomes the default pool and Porter serves every LoadBalancer Service
     that names no class ('kubectl create service loadbalancer' just works);
     --serve-services-without-class=false opts out.

Each step first checks whether it is already done, so running init again
changes nothing, and a run that stopped resumes where it left off. Changes are
shown as a diff and confirmed before they are written.`,
		Example: `  # Preview every change, writing nothing
  kubectl porter init --dry-run=client

  # Have the API server validate the writes without persisting them
  kubectl porter init --dry-run=server

  # Apply without being asked (for scripts)
  kubectl porter init --yes

  # Machine-readable report
  kubectl porter init --yes -o json

  # Everything, with a pool, announcing on eth1 of every node
  kubectl porter init --yes --interface eth1 --eip lan=192.0.2.200-192.0.2.210`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInit(cmd.Context(), kube, streams, o)
		},
	}
	addDryRunFlag(cmd, &o.dryRun)
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "Apply changes without asking")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Minute, "How long to wait for each rollout (kube-proxy, speaker and controller)")
	cmd.Flags().StringVar(&o.image, "image", "ghcr.io/porterlb/porter-speaker:"+porterversion.Get().Version, "Image of the speaker and the controller (one image holds both)")
	cmd.Flags().BoolVar(&o.serveUnclassed, "serve-services-without-class", true, "Make the first --eip pool the default one and serve LoadBalancer Services that name no class, unless another pool is the default or another load balancer is found; false serves only Services that ask for Porter")
	cmd.Flags().StringVar(&o.iface, "interface", "", "NIC to announce on, on every node (default: the NIC holding each node's InternalIP)")
	cmd.Flags().StringArrayVar(&o.eips, "eip", nil, "Create an address pool NAME=RANGE (repeatable), checked as 'eip create' checks it")
	cmd.Flags().BoolVar(&o.force, "force", false, "Create --eip pools whose only problems may be deliberate (see 'eip create --force')")
	cmd.Flags().DurationVar(&o.nicsWait, "nics-wait", time.Minute, "How long to wait for every node's speaker to report its NICs")
	addGuardFlags(cmd, &o.guard)
	addOutputFlag(cmd, &o.output, outputJSON)
	return cmd
}

func runInit(ctx context.Context, kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams, o initOptions) error {
	if err := validateOutput(o.output, outputJSON); err != nil {
		return err
	}
	if err := o.guard.validate(); err != nil {
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
	pools, ranges, err := parseEipFlags(o.eips, o.iface)
	if err != nil {
		return err
	}

	// Human output goes to stdout unless -o json takes it; then progress
	// goes to stderr so stdout stays one JSON document.
	human := streams.Out
	if o.output != "" {
		human = streams.ErrOut
	}
	list := newChecklist(human)

	restart := &setup.RestartKubeProxy{Client: cs, Timeout: o.timeout, Progress: func(m string) { list.progress("restart kube-proxy", m) }}
	lg := &lockoutGuard{cs: cs, dyn: dc, opts: o.guard, progress: func(m string) { list.progress("lockout guard", m) }}
	poolNames := make([]string, 0, len(pools))
	for _, p := range pools {
		poolNames = append(poolNames, p.Name)
	}
	work := []steps.Step{
		guardedStep{Step: &setup.StrictARP{Client: cs, Restart: restart}, g: lg, change: "setting strictARP", undo: strictARPUndo(cs), verify: strictARPStands(cs)},
		restart,
		&setup.Speaker{Client: cs, Dynamic: dc, Mapper: mapper, Image: o.image, Timeout: o.timeout,
			Progress: func(m string) { list.progress("deploy speaker", m) }},
		&setup.NICAnnotations{Client: cs, Dynamic: dc, Interface: o.iface, Wait: o.nicsWait},
		guardedStep{Step: &setup.Eips{Client: cs, Dynamic: dc, Eips: c.eips, Pools: pools, Force: o.force, Warnings: human, ServeUnclassed: o.serveUnclassed},
			g: lg, change: "creating pools " + strings.Join(poolNames, ", "), undo: eipsUndo(poolNames...), verify: eipsStand(dc, poolNames...)},
	}
	all := append([]steps.Step{&setup.Preflight{Client: cs, Dynamic: dc, Steps: work, Pools: ranges}}, work...)

	runner := steps.Runner{DryRun: dry, Report: list.print}
	if dry == steps.Write {
		runner.Confirm = confirmer(streams, human, o.yes)
	}
	results, runErr := runner.Init(ctx, all)
	if dry == steps.Write {
		if err := lg.settle(ctx); err != nil {
			runErr = errors.Join(runErr, err)
			results = append(results, list.report(steps.Result{Step: "lockout guard", Outcome: steps.OutcomeFailed, Message: err.Error(), Hint: hintOf(err)}))
		}
	}

	report := initReport{DryRun: dry.String(), Steps: results}
	for _, r := range results {
		if r.Outcome == steps.OutcomeDone || r.Outcome == steps.OutcomePlanned {
			report.Changed++
		}
	}
	if runErr != nil {
		report.Error = runErr.Error()
	}
	if o.output != "" {
		if err := printObject(streams.Out, o.output, report); err != nil {
			return err
		}
	}
	switch {
	case runErr != nil && o.output != "":
		return exitError{code: 1}
	case runErr != nil:
		fmt.Fprintln(human, initStoppedNote(results))
		return exitError{code: 1}
	case dry == steps.Client:
		fmt.Fprintf(human, "dry run: %d step(s) would change the cluster; nothing was written\n", report.Changed)
	case dry == steps.Server:
		fmt.Fprintf(human, "server dry run: the API server accepted %d change(s); nothing was persisted\n", report.Changed)
	case report.Changed == 0:
		fmt.Fprintln(human, "nothing to do: the cluster is already set up (zero writes)")
	default:
		fmt.Fprintf(human, "done: %d step(s) changed the cluster\n", report.Changed)
	}
	return nil
}

// parseEipFlags reads --eip NAME=RANGE values into pools, validated as
// `eip create` validates its flags.
func parseEipFlags(values []string, iface string) ([]*v1alpha2.Eip, []addr.Range, error) {
	var pools []*v1alpha2.Eip
	var ranges []addr.Range
	seen := map[string]bool{}
	for _, v := range values {
		name, address, ok := strings.Cut(v, "=")
		if !ok || name == "" || address == "" {
			return nil, nil, fmt.Errorf("invalid --eip %q: want NAME=RANGE, e.g. --eip lan=192.0.2.200-192.0.2.210", v)
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("invalid --eip: pool %q is named twice", name)
		}
		seen[name] = true
		eip, err := eipCreateOptions{address: address, protocol: v1alpha2.ProtocolLayer2, iface: iface}.buildEip(name)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid --eip %q: %w", v, err)
		}
		r, _ := addr.Parse(address)
		for i, o := range ranges {
			if o.Overlaps(r) {
				return nil, nil, fmt.Errorf("invalid --eip: pools %s and %s overlap", pools[i].Name, name)
			}
		}
		pools, ranges = append(pools, eip), append(ranges, r)
	}
	return pools, ranges, nil
}

// initStoppedNote says what was done before init stopped, and how to resume.
func initStoppedNote(results []steps.Result) string {
	var done []string
	for _, r := range results {
		if r.Outcome == steps.OutcomeDone {
			done = append(done, r.Step)
		}
	}
	msg := "init stopped; nothing after the failed step was attempted."
	if len(done) > 0 {
		msg = "init stopped after completing: " + strings.Join(done, ", ") + "."
	}
	return msg + " Run `kubectl porter init` again to resume; finished steps are kept."
}

// confirmer shows a step's plan and asks before it is applied: on a
// terminal it prompts, --yes answers for the user, and anywhere else it
// refuses rather than guess.
func confirmer(streams genericiooptions.IOStreams, w io.Writer, yes bool) func(string, steps.Plan) (bool, error) {
	// One reader for every question, so an answer typed ahead is not lost
	// in a discarded buffer.
	answers := bufio.NewReader(streams.In)
	return func(step string, p steps.Plan) (bool, error) {
		if yes {
			return true, nil
		}
		f, isFile := streams.In.(*os.File)
		if !isFile || !term.IsTerminal(int(f.Fd())) {
			return false, &steps.Hinted{
				Err:  fmt.Errorf("%s would %s, and there is no terminal to confirm it on", step, p.Summary),
				Hint: "rerun with --yes to apply, or with --dry-run=client to see every change first",
			}
		}
		fmt.Fprintf(w, "%s will %s\n", step, p.Summary)
		if p.Diff != "" {
			fmt.Fprint(w, p.Diff)
		}
		fmt.Fprint(w, "Apply this change? [y/N] ")
		line, err := answers.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("read answer: %w", err)
		}
		answer := strings.ToLower(strings.TrimSpace(line))
		return answer == "y" || answer == "yes", nil
	}
}
