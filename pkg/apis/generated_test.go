// Package apis holds Porter's API groups; this test keeps their generated
// code honest.
package apis

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedFilesAreFresh runs `hack/generate.sh` in a scratch copy of
// the module and fails when a committed generated file differs from, lacks,
// or outlives what it produces: run `make generate` after changing types.
func TestGeneratedFilesAreFresh(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	for _, p := range []string{"go.mod", "go.sum", "hack/generate.sh", "hack/codegen/go.mod", "hack/codegen/go.sum", "pkg/apis"} {
		copyTree(t, filepath.Join(root, p), filepath.Join(tmp, p))
	}
	if err := os.MkdirAll(filepath.Join(tmp, "manifests", "crd"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Drop the committed outputs so that only fresh ones are compared.
	for _, f := range generated(t, tmp) {
		if err := os.Remove(filepath.Join(tmp, f)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", "hack/generate.sh")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/generate.sh: %v\n%s", err, out)
	}
	fresh, committed := generated(t, tmp), generated(t, root)
	if strings.Join(fresh, "\n") != strings.Join(committed, "\n") {
		t.Fatalf("generated files differ: make generate writes\n  %s\nbut the repository has\n  %s", strings.Join(fresh, "\n  "), strings.Join(committed, "\n  "))
	}
	for _, f := range fresh {
		want, _ := os.ReadFile(filepath.Join(tmp, f))
		got, _ := os.ReadFile(filepath.Join(root, f))
		if string(got) != string(want) {
			t.Errorf("%s is stale: run `make generate`", f)
		}
	}
}

// generated lists the generated files under dir, relative to it.
func generated(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"pkg/apis", "manifests/crd"} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if d.Name() == "zz_generated.deepcopy.go" || (sub == "manifests/crd" && strings.HasSuffix(p, ".yaml")) {
				rel, _ := filepath.Rel(dir, p)
				out = append(out, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
