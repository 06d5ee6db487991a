package plugin

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// binaryName is what the shell runs; kubectl finds the plugin by it.
const binaryName = "kubectl-porter"

func newCompletionCommand(streams genericiooptions.IOStreams) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script for kubectl-porter",
		Long: `completion prints a script that completes kubectl-porter's commands, flags,
Eip names and node names in your shell.

For 'kubectl porter <TAB>', put the kubectl_complete-porter script shipped
with the plugin on your PATH instead: kubectl 1.26 and later run it to
complete plugin commands.`,
		Example: `  # bash, for this shell
  source <(kubectl porter completion bash)

  # zsh, for every shell
  kubectl porter completion zsh > "${fpath[1]}/_kubectl-porter"

  # fish
  kubectl porter completion fish > ~/.config/fish/completions/kubectl-porter.fish`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			// The scripts complete the program named like the root command;
			// the shell runs the plugin as kubectl-porter.
			use := root.Use
			root.Use = binaryName
			defer func() { root.Use = use }()
			return writeCompletion(root, args[0], streams.Out)
		},
	}
}

func writeCompletion(root *cobra.Command, shell string, w io.Writer) error {
	switch shell {
	case "bash":
		return root.GenBashCompletionV2(w, true)
	case "zsh":
		return root.GenZshCompletion(w)
	case "fish":
		return root.GenFishCompletion(w, true)
	case "powershell":
		return root.GenPowerShellCompletionWithDesc(w)
	}
	return fmt.Errorf("unknown shell %q: choose bash, zsh, fish or powershell", shell)
}

// completeFromCluster completes a command's first argument with what
// names lists from the cluster.
func completeFromCluster(kube *genericclioptions.ConfigFlags, names func(context.Context, *clients) ([]string, error)) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := newClients(kube)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		out, err := names(cmd.Context(), c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeNodeNames completes node names from the cluster.
func completeNodeNames(kube *genericclioptions.ConfigFlags) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return completeFromCluster(kube, func(ctx context.Context, c *clients) ([]string, error) {
		list, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		names := make([]string, 0, len(list.Items))
		for _, n := range list.Items {
			names = append(names, n.Name)
		}
		return names, nil
	})
}
