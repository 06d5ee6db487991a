package v1alpha2

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedFilesAreFresh regenerates the deepcopy code and the CRD into
// a temporary directory and fails when the committed copies differ: run
// `make generate` after changing the types.
func TestGeneratedFilesAreFresh(t *testing.T) {
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(root, "hack", "generate.sh"), filepath.Join(tmp, "obj"), filepath.Join(tmp, "crd"))
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen: %v\n%s", err, out)
	}
	for fresh, committed := range map[string]string{
		filepath.Join(tmp, "obj", "zz_generated.deepcopy.go"):        "zz_generated.deepcopy.go",
		filepath.Join(tmp, "crd", "network.kubesphere.io_eips.yaml"): filepath.Join(root, "manifests", "crd", "network.kubesphere.io_eips.yaml"),
	} {
		want, err := os.ReadFile(fresh)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(committed)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is stale: run `make generate`", committed)
		}
	}
}
