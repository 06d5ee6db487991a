package cli

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/porterlb/porter/test/lab"
)

// `kubectl porter <TAB>` goes through kubectl's plugin completion, which
// runs kubectl_complete-porter from PATH.
func TestKubectlCompletesThePlugin(t *testing.T) {
	script, err := os.ReadFile("../../krew/kubectl_complete-porter")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(binDir, "kubectl_complete-porter"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.CreateNode(context.Background(), lab.Node{Name: "complete-me", InternalIP: netip.MustParseAddr("198.18.3.77")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.DeleteNode(context.Background(), "complete-me") })

	out, stderr, err := kubectl(t, "__complete", "porter", "st")
	if err != nil || !strings.Contains(out, "status") {
		t.Fatalf("kubectl __complete porter st: %v\n%s%s", err, out, stderr)
	}
	out, stderr, err = kubectl(t, "__complete", "porter", "nics", "")
	if err != nil || !strings.Contains(out, "complete-me") {
		t.Fatalf("node names not completed: %v\n%s%s", err, out, stderr)
	}
}
