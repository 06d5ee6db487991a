package lab

import (
	"path/filepath"
	"sync"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Speakers start at once, each given a kubeconfig written while others
// are written and read: a reader must always find a whole one, or the
// speaker starts with no configuration at all.
func TestKubeconfigIsAlwaysReadWhole(t *testing.T) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: "https://198.18.0.1:6443"}
	cfg.AuthInfos["lab"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "lab"}
	cfg.CurrentContext = "lab"
	path := filepath.Join(t.TempDir(), "kubeconfig.yaml")
	if err := writeKubeconfig(cfg, path); err != nil {
		t.Fatal(err)
	}

	const workers, rounds = 4, 200
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers*rounds)
	for range workers {
		wg.Go(func() {
			for range rounds {
				if err := writeKubeconfig(cfg, path); err != nil {
					errs <- err
				}
			}
		})
		wg.Go(func() {
			for range rounds {
				got, err := clientcmd.LoadFromFile(path)
				if err != nil {
					errs <- err
					continue
				}
				if c := got.Clusters["lab"]; c == nil || c.Server != cfg.Clusters["lab"].Server {
					t.Errorf("read a kubeconfig without the lab cluster: %+v", got.Clusters)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	matches, err := filepath.Glob(path + ".*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) != 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}
}
