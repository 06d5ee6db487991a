package speaker

import (
	"os/exec"
	"strings"
	"testing"
)

// The speaker runs on every node, so what it links is paid for everywhere:
// client-go's clientset and informer factory register every API group at
// start, which doubled the binary and the memory touched at start. Only
// the groups the data path reads may be linked.
func TestSpeakerLinksOnlyTheAPIGroupsItReads(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/porterlb/porter/cmd/porter-speaker").Output()
	if err != nil {
		t.Fatalf("go list the speaker's packages: %v", err)
	}
	allowed := map[string]bool{"k8s.io/api/core/v1": true, "k8s.io/api/discovery/v1": true, "k8s.io/api/networking/v1": true}
	// The dynamic client decodes every answer into maps: a NIC report
	// applied at 10,000 addresses came back as 10,000 of them.
	banned := []string{"k8s.io/client-go/kubernetes", "k8s.io/client-go/informers", "k8s.io/client-go/listers",
		"k8s.io/client-go/applyconfigurations", "k8s.io/client-go/dynamic"}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 50 {
		t.Fatalf("go list gave %d packages; cannot judge", len(pkgs))
	}
	for _, p := range pkgs {
		if strings.HasPrefix(p, "k8s.io/api/") && !allowed[p] {
			t.Errorf("the speaker links %s, an API group it does not read", p)
		}
		for _, b := range banned {
			if p == b || strings.HasPrefix(p, b+"/") {
				t.Errorf("the speaker links %s, which registers API groups it does not read", p)
			}
		}
	}
}
