// Package speaker runs porter-speaker as a process in each network lab
// node, against a lab cluster reachable over the lab's LAN, so that what it
// reports about the node's NICs is real.
package speaker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/test/lab"
	"github.com/porterlb/porter/test/netlab"
)

var env *lab.Env

func TestMain(m *testing.M) {
	os.Exit(lab.Main(m, lab.EnvOptions{
		Net:   &netlab.Options{Nodes: 2, SecondNIC: true},
		Build: []string{"github.com/porterlb/porter/cmd/porter-speaker", "github.com/porterlb/porter/cmd/kubectl-porter"},
	}, setup))
}

func setup(e *lab.Env) {
	env = e
	ctx := context.Background()
	crds, _ := filepath.Abs("../../manifests/crd")
	if out, err := e.Cluster.Kubectl(ctx, "apply", "-f", crds).CombinedOutput(); err != nil {
		panic(fmt.Sprintf("install CRDs: %v\n%s", err, out))
	}
	if out, err := e.Cluster.Kubectl(ctx, "wait", "--for", "condition=established", "--timeout=60s", "crd/nodenics.porter.kubesphere.io").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("wait for CRDs: %v\n%s", err, out))
	}
	for _, n := range e.Net.Nodes {
		if _, err := e.Cluster.CreateNode(ctx, lab.Node{Name: n.Name, InternalIP: n.IP}); err != nil {
			panic(err)
		}
	}
}

// startSpeaker runs porter-speaker "on" a lab node until the test ends.
func startSpeaker(t *testing.T, node *netlab.Host) {
	t.Helper()
	kc, err := env.Cluster.LANKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := node.Command(ctx, filepath.Join(env.BinDir, "porter-speaker"), "--kubeconfig", kc, "--node-name", node.Name, "--inventory-interval", "200ms",
		// This package tests the inventory; gossip keys are tested in
		// test/dataplane.
		"--insecure-member")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("speaker on %s:\n%s", node.Name, logs.String())
		}
	})
}

func nodeNICs(t *testing.T, name string, ready func(*v1alpha1.NodeNICs) bool) *v1alpha1.NodeNICs {
	t.Helper()
	dc, err := dynamic.NewForConfig(env.Cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	var got *v1alpha1.NodeNICs
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		u, err := dc.Resource(v1alpha1.NodeNICsResource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // not published yet: poll again
		}
		var n v1alpha1.NodeNICs
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &n); err != nil {
			return false, err
		}
		got = &n
		return ready(&n), nil
	})
	if err != nil {
		t.Fatalf("NodeNICs %s: %v (last %+v)", name, err, got)
	}
	return got
}

func nic(n *v1alpha1.NodeNICs, name string) *v1alpha1.NIC {
	for i := range n.Status.NICs {
		if n.Status.NICs[i].Name == name {
			return &n.Status.NICs[i]
		}
	}
	return nil
}

func TestSpeakerPublishesRealNICs(t *testing.T) {
	node := env.Net.Nodes[0]
	startSpeaker(t, node)
	inv := nodeNICs(t, node.Name, func(n *v1alpha1.NodeNICs) bool { return len(n.Status.NICs) == 2 })

	if inv.Status.Primary != netlab.NIC1 {
		t.Errorf("primary %q, want %s (it holds the InternalIP %s)", inv.Status.Primary, netlab.NIC1, node.IP)
	}
	eth0, eth1 := nic(inv, netlab.NIC1), nic(inv, netlab.NIC2)
	if eth0 == nil || eth1 == nil {
		t.Fatalf("inventory lacks %s or %s: %+v", netlab.NIC1, netlab.NIC2, inv.Status.NICs)
	}
	if eth0.MAC != node.MAC.String() || eth1.MAC != node.MAC2.String() {
		t.Errorf("MACs %s %s, want %s %s", eth0.MAC, eth1.MAC, node.MAC, node.MAC2)
	}
	if !eth0.Up || !eth0.Carrier || !eth0.HoldsInternalIP || eth1.HoldsInternalIP {
		t.Errorf("flags: eth0 %+v eth1 %+v", eth0, eth1)
	}
	// eth0 has its IPv6 address too; link-local addresses are left out.
	if strings.Join(eth0.Addresses, ",") != node.IP.String()+"/24,"+node.IP6.String()+"/64" || strings.Join(eth1.Addresses, ",") != node.IP2.String()+"/24" {
		t.Errorf("addresses eth0 %v eth1 %v", eth0.Addresses, eth1.Addresses)
	}
	if len(inv.OwnerReferences) != 1 || inv.OwnerReferences[0].Kind != "Node" || inv.OwnerReferences[0].Name != node.Name {
		t.Errorf("owner %v, want the Node", inv.OwnerReferences)
	}

	// The speaker notices a cable pulled from the second NIC.
	if err := node.SetCable(context.Background(), netlab.NIC2, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.SetCable(context.Background(), netlab.NIC2, true) })
	nodeNICs(t, node.Name, func(n *v1alpha1.NodeNICs) bool {
		e := nic(n, netlab.NIC2)
		return e != nil && e.Up && !e.Carrier
	})

	// kubectl reads it, and so does kubectl porter nics.
	out, err := env.Cluster.Kubectl(context.Background(), "get", "nodenics", node.Name).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "eth0") {
		t.Fatalf("kubectl get nodenics: %v\n%s", err, out)
	}
	cmd := env.Kubectl(context.Background(), "porter", "nics", node.Name)
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl porter nics: %v\n%s", err, out)
	}
	table := string(out)
	for _, want := range []string{"NODE", node.Name + "  eth0  " + node.MAC.String() + "  UP", "eth1  " + node.MAC2.String() + "  NO-CARRIER  " + node.IP2.String() + "/24"} {
		if !strings.Contains(table, want) {
			t.Errorf("kubectl porter nics lacks %q:\n%s", want, table)
		}
	}
}
