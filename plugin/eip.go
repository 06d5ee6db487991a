package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/porterlb/porter/pkg/addr"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/pkg/guard"
	"github.com/porterlb/porter/plugin/setup"
	"github.com/porterlb/porter/plugin/steps"
)

func newEipCommand(kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "eip",
		Aliases: []string{"eips", "pool"},
		Short:   "Manage Eip address pools",
		Long: `Manage Eip address pools (eips.network.kubesphere.io), the pools Porter gives
LoadBalancer Services their IPs from.

Before a pool is created it is checked against the cluster: a pool that holds a
node's address, the API server's, a Service or pod CIDR, or another pool's
addresses is refused, because announcing such an address by ARP takes that
address's owner off the network.`,
	}
	cmd.AddCommand(
		newEipCreateCommand(kube, streams),
		newEipListCommand(kube, streams),
		newEipGetCommand(kube, streams),
		newEipDeleteCommand(kube, streams),
	)
	return cmd
}

type eipCreateOptions struct {
	address, iface, protocol, dryRun, output string
	namespaces                               []string
	namespaceSelector                        map[string]string
	nodeSelector                             map[string]string
	priority                                 int
	disable, isDefault, usingKnownIPs, force bool
	serveUnclassed                           bool
	guard                                    guardOptions
}

func newEipCreateCommand(kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := eipCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME --address RANGE",
		Short: "Create an Eip address pool, after checking it is safe to announce",
		Example: `  # A layer 2 pool of three addresses on the NIC that reaches the gateway
  kubectl porter eip create lan-pool --address 192.0.2.200-192.0.2.202 --interface can_reach:192.0.2.1

  # The default pool, for Services that name none
  kubectl porter eip create main --address 192.0.2.0/28 --interface eth0 --default

  # Only for Services in two namespaces, lower priority than others
  kubectl porter eip create team --address 198.51.100.10 --namespaces web,api --priority 10

  # See what would be created, without writing anything
  kubectl porter eip create lan-pool --address 192.0.2.200-192.0.2.202 --dry-run=client -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEipCreate(cmd.Context(), kube, streams, args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.address, "address", "", "The pool: one IP, a CIDR, or a range FIRST-LAST (required)")
	f.StringVar(&o.iface, "interface", "", "NIC to announce on: a name such as eth0, or can_reach:IP for the NIC that routes to IP")
	f.StringVar(&o.protocol, "protocol", v1alpha2.ProtocolLayer2, "How addresses are announced: layer2 (Porter announces only layer2 pools), bgp or vip")
	f.StringSliceVar(&o.namespaces, "namespaces", nil, "Only serve Services in these namespaces (comma-separated)")
	f.StringToStringVar(&o.namespaceSelector, "namespace-selector", nil, "Only serve Services in namespaces with these labels, e.g. team=web")
	f.StringToStringVar(&o.nodeSelector, "node-selector", nil, "Only nodes with these labels answer for the pool's addresses, e.g. rack=r1 (default: every node)")
	f.IntVar(&o.priority, "priority", 0, "Preference among pools that could serve a Service: lower is preferred")
	f.BoolVar(&o.disable, "disable", false, "Create the pool disabled: no new allocations")
	f.BoolVar(&o.isDefault, "default", false, "Make this the default pool, for Services that name none")
	f.BoolVar(&o.serveUnclassed, "serve-services-without-class", false, "With --default: serve LoadBalancer Services that name no class and carry no Porter annotation, as the cluster's load balancer")
	f.BoolVar(&o.usingKnownIPs, "using-known-ips", false, "Allow the subnet's network and broadcast addresses, known to be free here")
	f.BoolVar(&o.force, "force", false, "Create a pool whose only problems may be deliberate (e.g. outside the NIC's subnet); never overrides node or API server conflicts")
	addDryRunFlag(cmd, &o.dryRun)
	addGuardFlags(cmd, &o.guard)
	addOutputFlag(cmd, &o.output, outputJSON, outputYAML)
	_ = cmd.MarkFlagRequired("address")
	_ = cmd.RegisterFlagCompletionFunc("protocol", cobra.FixedCompletions([]string{v1alpha2.ProtocolLayer2, v1alpha2.ProtocolBGP, v1alpha2.ProtocolVIP}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func addDryRunFlag(cmd *cobra.Command, dryRun *string) {
	cmd.Flags().StringVar(dryRun, "dry-run", steps.Write.String(), `"none" writes; "client" only prints what would be sent; "server" has the API server check the write without persisting it`)
	cmd.Flags().Lookup("dry-run").NoOptDefVal = steps.Client.String()
	_ = cmd.RegisterFlagCompletionFunc("dry-run", cobra.FixedCompletions([]string{steps.Write.String(), steps.Client.String(), steps.Server.String()}, cobra.ShellCompDirectiveNoFileComp))
}

// buildEip validates the flags and returns the Eip they describe.
func (o eipCreateOptions) buildEip(name string) (*v1alpha2.Eip, error) {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, fmt.Errorf("invalid Eip name %q: %s", name, strings.Join(errs, "; "))
	}
	switch o.protocol {
	case v1alpha2.ProtocolLayer2, v1alpha2.ProtocolBGP, v1alpha2.ProtocolVIP:
	default:
		return nil, fmt.Errorf("invalid --protocol %q: choose layer2, bgp or vip", o.protocol)
	}
	if ipText, ok := strings.CutPrefix(o.iface, v1alpha2.CanReachPrefix); ok {
		if _, err := netip.ParseAddr(ipText); err != nil {
			return nil, fmt.Errorf("invalid --interface %q: can_reach needs an IP, e.g. can_reach:192.0.2.1", o.iface)
		}
	}
	for _, ns := range o.namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("invalid namespace %q in --namespaces: %s", ns, strings.Join(errs, "; "))
		}
	}
	if _, err := addr.Parse(o.address); err != nil {
		return nil, fmt.Errorf("invalid --address: %w", err)
	}
	eip := &v1alpha2.Eip{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha2.GroupVersion.String(), Kind: "Eip"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha2.EipSpec{
			Address:           strings.TrimSpace(o.address),
			Protocol:          o.protocol,
			Interface:         o.iface,
			Disable:           o.disable,
			UsingKnownIPs:     o.usingKnownIPs,
			Priority:          o.priority,
			Namespaces:        o.namespaces,
			NamespaceSelector: o.namespaceSelector,
		},
	}
	if len(o.nodeSelector) > 0 {
		eip.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: o.nodeSelector}
		if _, err := metav1.LabelSelectorAsSelector(eip.Spec.NodeSelector); err != nil {
			return nil, fmt.Errorf("--node-selector: %w", err)
		}
	}
	if o.serveUnclassed && !o.isDefault {
		return nil, errors.New("--serve-services-without-class needs --default: only the default pool serves Services that name no class")
	}
	if o.isDefault {
		eip.Annotations = map[string]string{v1alpha2.DefaultEipAnnotation: "true"}
	}
	if o.serveUnclassed {
		eip.Annotations[v1alpha2.ServeUnclassedAnnotation] = "true"
	}
	return eip, nil
}

func runEipCreate(ctx context.Context, kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams, name string, o eipCreateOptions) error {
	if err := validateOutput(o.output, outputJSON, outputYAML); err != nil {
		return err
	}
	if err := o.guard.validate(); err != nil {
		return err
	}
	dry, err := steps.ParseDryRun(o.dryRun)
	if err != nil {
		return err
	}
	eip, err := o.buildEip(name)
	if err != nil {
		return err
	}
	c, err := newClients(kube)
	if err != nil {
		return err
	}
	if _, err := c.eips.Get(ctx, name); err == nil {
		return fmt.Errorf("an Eip named %q already exists; delete it first or choose another name", name)
	}
	if err := setup.CheckPool(ctx, c.kube, c.dyn, c.eips, eip, o.force, streams.ErrOut); err != nil {
		return err
	}

	// A new layer2 pool starts being announced at once: it runs under the
	// lockout guard.
	var lg *lockoutGuard
	if dry == steps.Write && eip.Spec.Protocol == v1alpha2.ProtocolLayer2 && !eip.Spec.Disable {
		lg = &lockoutGuard{cs: c.kube, dyn: c.dyn, opts: o.guard, progress: func(m string) { fmt.Fprintln(streams.ErrOut, m) }}
		if err := lg.add(ctx, "creating Eip "+name, func(p *guard.Plan) { p.DisableEips = append(p.DisableEips, name) }, eipsStand(c.dyn, name)); err != nil {
			return err
		}
	}
	created := eip
	if dry != steps.Client {
		if created, err = c.eips.Create(ctx, eip, dry == steps.Server); err != nil {
			if lg != nil && lg.armed != nil {
				_ = lg.armed.Drop(ctx, c.kube)
			}
			return err
		}
	}
	if err := lg.settle(ctx); err != nil {
		return err
	}
	if o.output != "" {
		return printObject(streams.Out, o.output, created)
	}
	fmt.Fprintf(streams.Out, "eip.network.kubesphere.io/%s created%s\n", name, dryRunSuffix(dry))
	return nil
}

func dryRunSuffix(dry steps.DryRun) string {
	switch dry {
	case steps.Client:
		return " (dry run)"
	case steps.Server:
		return " (server dry run)"
	}
	return ""
}

func newEipListCommand(kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var (
		output    string
		watchFlag bool
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List Eip address pools",
		Example: `  kubectl porter eip list
  kubectl porter eip list -o json

  # Keep printing changes, as kubectl get -w does
  kubectl porter eip list --watch`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateOutput(output, outputJSON, outputYAML); err != nil {
				return err
			}
			c, err := newClients(kube)
			if err != nil {
				return err
			}
			list, err := c.eips.List(cmd.Context())
			if err != nil {
				return err
			}
			sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
			if output != "" && watchFlag {
				return errors.New("--watch prints tables only; drop -o")
			}
			if output != "" {
				list.APIVersion, list.Kind = "v1", "List"
				for i := range list.Items {
					list.Items[i].APIVersion, list.Items[i].Kind = v1alpha2.GroupVersion.String(), "Eip"
				}
				return printObject(streams.Out, output, list)
			}
			if len(list.Items) == 0 && !watchFlag {
				fmt.Fprintln(streams.ErrOut, "No Eips found.")
				return nil
			}
			if err := printEipTable(streams.Out, list.Items, true); err != nil {
				return err
			}
			if !watchFlag {
				return nil
			}
			return watchEips(cmd.Context(), c, streams.Out, list.ResourceVersion)
		},
	}
	addOutputFlag(cmd, &output, outputJSON, outputYAML)
	cmd.Flags().BoolVarP(&watchFlag, "watch", "w", false, "After listing, print a row for every change until interrupted (table output only)")
	return cmd
}

// watchEips prints a row per change, as `kubectl get -w` does. A deleted
// pool's row ends in "(deleted)".
func watchEips(ctx context.Context, c *clients, w io.Writer, rv string) error {
	wi, err := c.eips.Watch(ctx, rv)
	if err != nil {
		return err
	}
	defer wi.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-wi.ResultChan():
			if !ok {
				return errors.New("watch of Eips ended by the server; run the command again")
			}
			if ev.Type == watch.Error {
				return fmt.Errorf("watch Eips: %w", apierrors.FromObject(ev.Object))
			}
			e, err := eips.Decode(ev.Object)
			if err != nil {
				return err
			}
			if err := printEipTable(w, []v1alpha2.Eip{*e}, false); err != nil {
				return err
			}
			if ev.Type == watch.Deleted {
				fmt.Fprintln(w, "  (deleted)")
			}
		}
	}
}

func newEipGetCommand(kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:               "get NAME",
		Short:             "Show one Eip address pool",
		Example:           `  kubectl porter eip get lan-pool -o yaml`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeEipNames(kube),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateOutput(output, outputJSON, outputYAML); err != nil {
				return err
			}
			c, err := newClients(kube)
			if err != nil {
				return err
			}
			eip, err := c.eips.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output != "" {
				eip.APIVersion, eip.Kind = v1alpha2.GroupVersion.String(), "Eip"
				return printObject(streams.Out, output, eip)
			}
			if err := printEipTable(streams.Out, []v1alpha2.Eip{*eip}, true); err != nil {
				return err
			}
			for _, cf := range eip.Status.Conflicts {
				fmt.Fprintf(streams.Out, "Conflict: %s: %s\n", cf.Address, cf.Reason)
			}
			return nil
		},
	}
	addOutputFlag(cmd, &output, outputJSON, outputYAML)
	return cmd
}

func printEipTable(w io.Writer, items []v1alpha2.Eip, header bool) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	if header {
		fmt.Fprintln(tw, "NAME\tADDRESS\tPROTOCOL\tINTERFACE\tUSED/TOTAL\tREADY\tDISABLED\tDEFAULT")
	}
	for _, e := range items {
		total := e.Status.PoolSize
		if total == 0 {
			if r, err := addr.Parse(e.Spec.Address); err == nil {
				total = int(r.Size().Int64())
			}
		}
		used := e.Status.Usage
		if n := len(e.Status.Used); n > used {
			used = n
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%t\t%t\t%t\n", e.Name, e.Spec.Address, orDash(e.Spec.Protocol), orDash(e.Spec.Interface),
			used, total, e.Status.Ready, e.Spec.Disable, e.IsDefault())
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newEipDeleteCommand(kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var (
		force  bool
		dryRun string
	)
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an Eip address pool that no Service uses",
		Long: `Delete an Eip address pool. While LoadBalancer Services hold addresses of the
pool, delete refuses and lists them; --force deletes the pool anyway, and
those Services lose their addresses.`,
		Example: `  kubectl porter eip delete lan-pool
  kubectl porter eip delete lan-pool --dry-run=server`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeEipNames(kube),
		RunE: func(cmd *cobra.Command, args []string) error {
			dry, err := steps.ParseDryRun(dryRun)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			c, err := newClients(kube)
			if err != nil {
				return err
			}
			eip, err := c.eips.Get(ctx, args[0])
			if err != nil {
				return err
			}
			holders, err := servicesHolding(ctx, c, eip)
			if err != nil {
				return err
			}
			if len(holders) > 0 && !force {
				return fmt.Errorf("pool %q still serves %d Service(s); nothing was changed:\n  - %s\nmove or delete them first, or use --force to delete the pool anyway", eip.Name, len(holders), strings.Join(holders, "\n  - "))
			}
			if len(holders) > 0 {
				fmt.Fprintf(streams.ErrOut, "Warning: forced: these Services lose their addresses: %s\n", strings.Join(holders, ", "))
			}
			if dry != steps.Client {
				if err := c.eips.Delete(ctx, eip.Name, eip.ResourceVersion, dry == steps.Server); err != nil {
					return err
				}
			}
			fmt.Fprintf(streams.Out, "eip.network.kubesphere.io/%s deleted%s\n", eip.Name, dryRunSuffix(dry))
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "Delete even while Services hold the pool's addresses")
	addDryRunFlag(cmd, &dryRun)
	return cmd
}

// servicesHolding lists "namespace/name (ip)" for every Service that holds
// an address of eip: those its status records, and any LoadBalancer whose
// ingress IP lies in the pool.
func servicesHolding(ctx context.Context, c *clients, eip *v1alpha2.Eip) ([]string, error) {
	held := map[string]bool{}
	for ip, svc := range eip.Status.Used {
		held[svc+" ("+ip+")"] = true
	}
	if r, err := addr.Parse(eip.Spec.Address); err == nil {
		svcs, err := c.kube.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list Services: %w", err)
		}
		for _, s := range svcs.Items {
			if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
				continue
			}
			for _, in := range s.Status.LoadBalancer.Ingress {
				if ip, err := netip.ParseAddr(in.IP); err == nil && r.Contains(ip) {
					held[s.Namespace+"/"+s.Name+" ("+ip.String()+")"] = true
				}
			}
		}
	}
	out := make([]string, 0, len(held))
	for h := range held {
		out = append(out, h)
	}
	sort.Strings(out)
	return out, nil
}

func completeEipNames(kube *genericclioptions.ConfigFlags) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return completeFromCluster(kube, func(ctx context.Context, c *clients) ([]string, error) {
		list, err := c.eips.List(ctx)
		if err != nil {
			return nil, err
		}
		names := make([]string, 0, len(list.Items))
		for _, e := range list.Items {
			names = append(names, e.Name+"\t"+e.Spec.Address)
		}
		return names, nil
	})
}
