package plugin

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

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
	// client-go's default of 5 requests a second, after a burst of 10,
	// held status's 33 reads to seconds: a command makes a few dozen
	// requests and exits, and the API server's own fairness (APF) is what
	// protects it from clients.
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(protobuf(cfg))
	if err != nil {
		return nil, fmt.Errorf("create Kubernetes client: %w", err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create dynamic client: %w", err)
	}
	return &clients{kube: cs, dyn: dc, eips: eips.New(dc)}, nil
}

// protobuf has built-in kinds sent as protobuf, which decodes several times
// faster than JSON: status lists every node and Service of the cluster.
// Custom resources have no protobuf form; the dynamic client keeps JSON.
func protobuf(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return c
}
