package plugin

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"

	"github.com/spf13/cobra"

	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/plugin/health"
)

func newNICsCommand(kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:               "nics [NODE]",
		ValidArgsFunction: completeNodeNames(kube),
		Short:             "Show the NICs of every node (or one), as the Porter speakers report them",
		Long: `Show each node's network interfaces, as 'ip link' and 'ip addr' would on the
node, from the NodeNICs inventory the Porter speaker on that node publishes.
The PRIMARY column marks the NIC holding the node's InternalIP. Below, each
layer2 pool with the nodes that may answer for its addresses: every node, or
those its nodeSelector picks.`,
		Example: `  kubectl porter nics
  kubectl porter nics orion -o yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateOutput(output, outputJSON, outputYAML); err != nil {
				return err
			}
			cfg, err := kube.ToRESTConfig()
			if err != nil {
				return fmt.Errorf("load kubeconfig: %w", err)
			}
			dc, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("create dynamic client: %w", err)
			}
			items, err := listNodeNICs(cmd.Context(), dc, args)
			if err != nil {
				return err
			}
			if output != "" {
				for i := range items {
					items[i].APIVersion, items[i].Kind = v1alpha1.GroupVersion.String(), "NodeNICs"
				}
				return printObject(streams.Out, output, v1alpha1.NodeNICsList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"}, Items: items})
			}
			if len(items) == 0 {
				fmt.Fprintln(streams.ErrOut, "No NIC inventory found: is the Porter speaker running? (kubectl porter init deploys it)")
				return nil
			}
			if err := printNICsTable(streams.Out, items); err != nil {
				return err
			}
			if len(args) == 0 {
				return printPoolNodes(cmd.Context(), streams.Out, kube)
			}
			return nil
		},
	}
	addOutputFlag(cmd, &output, outputJSON, outputYAML)
	return cmd
}

func listNodeNICs(ctx context.Context, dc dynamic.Interface, names []string) ([]v1alpha1.NodeNICs, error) {
	res := dc.Resource(v1alpha1.NodeNICsResource)
	var items []v1alpha1.NodeNICs
	if len(names) == 1 {
		u, err := res.Get(ctx, names[0], metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no NIC inventory for node %q: is the Porter speaker running there?", names[0])
		}
		if err != nil {
			return nil, fmt.Errorf("get NIC inventory of %s: %w", names[0], err)
		}
		var n v1alpha1.NodeNICs
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &n); err != nil {
			return nil, fmt.Errorf("decode NIC inventory: %w", err)
		}
		return append(items, n), nil
	}
	u, err := res.List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("the NodeNICs API (nodenics.porter.kubesphere.io) is not installed; run `kubectl porter init` first: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("list NIC inventories: %w", err)
	}
	var list v1alpha1.NodeNICsList
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), &list); err != nil {
		return nil, fmt.Errorf("decode NIC inventories: %w", err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

func printNICsTable(w io.Writer, items []v1alpha1.NodeNICs) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNIC\tMAC\tSTATE\tADDRESSES\tPRIMARY")
	for _, n := range items {
		for _, nic := range n.Status.NICs {
			state := "DOWN"
			switch {
			case nic.Up && nic.Carrier:
				state = "UP"
			case nic.Up:
				state = "NO-CARRIER"
			}
			primary := ""
			if nic.HoldsInternalIP {
				primary = "*"
			}
			addrs := strings.Join(nic.Addresses, ",")
			if addrs == "" {
				addrs = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, nic.Name, orDash(nic.MAC), state, addrs, primary)
		}
	}
	return tw.Flush()
}

// printPoolNodes lists each layer2 pool with the nodes that may answer for
// it. Without the Eip API there is nothing to list.
func printPoolNodes(ctx context.Context, w io.Writer, kube *genericclioptions.ConfigFlags) error {
	c, err := newClients(kube)
	if err != nil {
		return err
	}
	list, err := c.eips.List(ctx)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	nodes, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	picked := health.PoolNodes(list.Items, nodes.Items)
	if len(picked) == 0 {
		return nil
	}
	names := make([]string, 0, len(picked))
	for n := range picked {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tNODES")
	for _, name := range names {
		e := list.Items[slices.IndexFunc(list.Items, func(e v1alpha2.Eip) bool { return e.Name == name })]
		nodes := strings.Join(picked[name], ",")
		switch {
		case e.Spec.NodeSelector == nil:
			nodes = "every node"
		case nodes == "":
			nodes = "none (its nodeSelector picks no node)"
		}
		fmt.Fprintf(tw, "%s\t%s\n", name, nodes)
	}
	return tw.Flush()
}
