package dataplane

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

const speakerSA = "system:serviceaccount:porter-system:porter-speaker"

// A speaker runs on every node, so what its ServiceAccount may do, every
// node's root may do. Through the real kubectl, as that account: every
// write outside the data path is refused.
func TestSpeakerAccountMayNotWriteOutsideTheDataPath(t *testing.T) {
	ctx := context.Background()
	createPool(t, "rights", "198.18.0.170")
	createService(t, "rights")
	for _, tc := range []struct {
		what string
		args []string
	}{
		{"patch the kube-proxy DaemonSet", []string{"-n", "kube-system", "patch", "daemonset", "kube-proxy", "--type=merge", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"kube-proxy","image":"evil"}]}}}}`}},
		{"patch the kube-proxy ConfigMap", []string{"-n", "kube-system", "patch", "configmap", "kube-proxy", "--type=merge", "-p", `{"data":{"config.conf":""}}`}},
		{"patch a Service", []string{"-n", "default", "patch", "service", "rights", "--type=merge", "-p", `{"metadata":{"annotations":{"x":"y"}}}`}},
		{"patch services/status", []string{"-n", "default", "patch", "service", "rights", "--subresource=status", "--type=merge", "-p", `{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.9"}]}}}`}},
		{"patch an Eip", []string{"patch", "eips.network.kubesphere.io", "rights", "--type=merge", "-p", `{"spec":{"disable":true}}`}},
		{"patch an Eip's status", []string{"patch", "eips.network.kubesphere.io", "rights", "--subresource=status", "--type=merge", "-p", `{"status":{"usage":9}}`}},
		{"take the controller's Lease", []string{"-n", "porter-system", "patch", "lease", "porter-allocator", "--type=merge", "-p", `{"spec":{"holderIdentity":"node1"}}`}},
		{"delete a NodeNICs", []string{"delete", "nodenics", env.Net.Nodes[0].Name}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			out, err := env.Cluster.Kubectl(ctx, append([]string{"--as", speakerSA}, tc.args...)...).CombinedOutput()
			if err == nil {
				t.Fatalf("the speaker's account may %s:\n%s", tc.what, out)
			}
			if !strings.Contains(strings.ToLower(string(out)), "forbidden") {
				t.Errorf("refused, but not as forbidden:\n%s", out)
			}
		})
	}
	// Reads stay allowed: the data path needs them.
	for _, args := range [][]string{
		{"get", "services", "-A"}, {"get", "eips.network.kubesphere.io"}, {"get", "nodes"}, {"get", "namespaces"}, {"get", "endpointslices", "-A"}, {"get", "nodenics"},
	} {
		if out, err := env.Cluster.Kubectl(ctx, append([]string{"--as", speakerSA}, args...)...).CombinedOutput(); err != nil {
			t.Errorf("the speaker's account may not %v:\n%s", args, out)
		}
	}
}

// NodeNICs: RBAC lets a speaker write them, the admission policy only its
// own node's. Through the real kubectl, with the token bound to the speaker
// pod on the first node, as the kubelet would mount it. No speaker runs,
// so nothing else writes these objects meanwhile.
func TestSpeakerWritesOnlyItsOwnNodesNodeNICs(t *testing.T) {
	ctx := context.Background()
	own, other := env.Net.Nodes[0].Name, env.Net.Nodes[1].Name
	for _, n := range []string{own, other} {
		manifest := fmt.Sprintf(`{"apiVersion":"porter.kubesphere.io/v1alpha1","kind":"NodeNICs","metadata":{"name":%q}}`, n)
		cmd := env.Cluster.Kubectl(ctx, "apply", "-f", "-")
		cmd.Stdin = strings.NewReader(manifest)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make sure NodeNICs %s exists: %v\n%s", n, err, out)
		}
	}
	kc := speakerKubeconfigs[own]
	label := func(name string, as ...string) (string, error) {
		args := append(as, "patch", "nodenics", name, "--type=merge", "-p", `{"metadata":{"labels":{"porter-test":"written"}}}`)
		out, err := env.Cluster.Kubectl(ctx, args...).CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		_ = env.Cluster.Kubectl(context.Background(), "label", "nodenics", own, other, "porter-test-").Run()
	})
	// The status, as the speaker writes it: a merge patch of the status
	// subresource, which kubectl cannot send without first reading it
	// (a right the speaker does not have), so through client-go with the
	// same kubeconfig.
	// The test runs outside the lab's namespaces: the API server's address
	// from here, the speaker's token from its kubeconfig.
	kcfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(env.Cluster.Config)
	for _, a := range kcfg.AuthInfos {
		cfg.BearerToken = a.Token
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	status := func(name string) (string, error) {
		_, err := dc.Resource(v1alpha1.NodeNICsResource).Patch(ctx, name, types.MergePatchType,
			[]byte(`{"status":{"gateways":["192.0.2.254"]}}`), metav1.PatchOptions{}, "status")
		if err != nil {
			return err.Error(), err
		}
		return "", nil
	}
	for what, write := range map[string]func(string) (string, error){
		"label":  func(n string) (string, error) { return label(n, "--kubeconfig", kc) },
		"status": status,
	} {
		if out, err := write(other); err == nil {
			t.Errorf("%s: the speaker on %s wrote %s's NodeNICs:\n%s", what, own, other, out)
		} else if !strings.Contains(out, "may write only NodeNICs "+own) {
			t.Errorf("%s: refused, but not by the own-node policy:\n%s", what, out)
		}
		if out, err := write(own); err != nil {
			t.Errorf("%s: the speaker on %s may not write its own NodeNICs:\n%s", what, own, out)
		}
	}
	// The same account without a pod-bound token names no node.
	if out, err := label(own, "--as", speakerSA); err == nil {
		t.Errorf("the speaker's account wrote NodeNICs without naming its node:\n%s", out)
	} else if !strings.Contains(out, "token bound to its pod") {
		t.Errorf("refused, but not by the own-node policy:\n%s", out)
	}
}
