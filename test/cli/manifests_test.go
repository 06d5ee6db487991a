package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The manifests install with plain kubectl too, from the same files the
// plugin embeds.
func TestManifestsApplyWithKustomize(t *testing.T) {
	dir, err := filepath.Abs("../../manifests")
	if err != nil {
		t.Fatal(err)
	}
	// A server dry run cannot place namespaced objects in a namespace that
	// does not exist yet, so the namespace goes first, as the README says.
	t.Cleanup(func() { _, _, _ = kubectl(t, "delete", "-k", dir, "--ignore-not-found", "--wait=false") })
	if out, stderr, err := kubectl(t, "apply", "-f", filepath.Join(dir, "namespace.yaml")); err != nil {
		t.Fatalf("apply the namespace: %v\n%s%s", err, out, stderr)
	}
	out, stderr, err := kubectl(t, "apply", "-k", dir, "--dry-run=server")
	if err != nil {
		t.Fatalf("kubectl apply -k --dry-run=server: %v\n%s%s", err, out, stderr)
	}
	for _, want := range []string{"namespace/porter-system", "daemonset.apps/porter-speaker", "service/porter-speaker-metrics", "customresourcedefinition.apiextensions.k8s.io/eips.network.kubesphere.io"} {
		if !strings.Contains(out, want) {
			t.Errorf("server dry run lacks %s:\n%s", want, out)
		}
	}
	if _, err := cluster.Client.AppsV1().DaemonSets("porter-system").Get(context.Background(), "porter-speaker", metav1.GetOptions{}); err == nil {
		t.Fatal("a server dry run created the DaemonSet")
	}
	if out, stderr, err := kubectl(t, "apply", "-k", dir); err != nil {
		t.Fatalf("kubectl apply -k: %v\n%s%s", err, out, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cluster.Client.AppsV1().DaemonSets("porter-system").Get(ctx, "porter-speaker", metav1.GetOptions{}); err != nil {
		t.Fatalf("speaker DaemonSet after apply -k: %v", err)
	}
	if _, err := cluster.Client.CoreV1().Services("porter-system").Get(ctx, "porter-speaker-metrics", metav1.GetOptions{}); err != nil {
		t.Fatalf("metrics Service after apply -k: %v", err)
	}
}
