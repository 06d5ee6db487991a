package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/discovery"

	porterversion "github.com/porterlb/porter/pkg/version"
)

// serverVersionTimeout bounds the API call so `version` answers promptly
// even when the cluster is unreachable.
const serverVersionTimeout = 5 * time.Second

type versionOutput struct {
	ClientVersion porterversion.Info `json:"clientVersion"`
	ServerVersion *version.Info      `json:"serverVersion,omitempty"`
}

func newVersionCommand(kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var (
		clientOnly bool
		output     string
	)
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin version, and the API server's",
		Example: `  # Plugin and API server versions
  kubectl porter version

  # Only the plugin, without contacting the cluster
  kubectl porter version --client

  # Machine-readable
  kubectl porter version --client -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateOutput(output, outputJSON, outputYAML); err != nil {
				return err
			}
			out := versionOutput{ClientVersion: porterversion.Get()}
			var serverErr error
			if !clientOnly {
				out.ServerVersion, serverErr = serverVersion(cmd.Context(), kube)
			}
			if output != "" {
				if err := printObject(streams.Out, output, out); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(streams.Out, "Client Version: %s\n", out.ClientVersion)
				if out.ServerVersion != nil {
					fmt.Fprintf(streams.Out, "Server Version: %s\n", out.ServerVersion.GitVersion)
				}
			}
			return serverErr
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "Print only the plugin version; do not contact the cluster")
	addOutputFlag(cmd, &output, outputJSON, outputYAML)
	return cmd
}

func serverVersion(ctx context.Context, kube *genericclioptions.ConfigFlags) (*version.Info, error) {
	cfg, err := kube.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.Timeout = serverVersionTimeout
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create discovery client: %w", err)
	}
	raw, err := dc.RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return nil, fmt.Errorf("get API server version: %w", err)
	}
	var v version.Info
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("decode API server version: %w", err)
	}
	return &v, nil
}
