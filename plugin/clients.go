package plugin

import (
	"fmt"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/pkg/eips"
)

// clients are the API clients a command needs, built from the kubectl flags.
type clients struct {
	kube kubernetes.Interface
	dyn  dynamic.Interface
	eips *eips.Client
}

func newClients(kube *genericclioptions.ConfigFlags) (*clients, error) {
	cfg, err := kube.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create Kubernetes client: %w", err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create dynamic client: %w", err)
	}
	return &clients{kube: cs, dyn: dc, eips: eips.New(dc)}, nil
}
