// Package manifests embeds the Kubernetes objects Porter installs. The YAML
// files beside this one are the only copy: the plugin applies them from here
// and release tooling publishes them as they are.
package manifests

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.yaml crd/*.yaml
var files embed.FS

// EipCRD is the file holding the Eip CustomResourceDefinition, which
// `make generate` writes.
const EipCRD = "crd/network.kubesphere.io_eips.yaml"

// Namespace is where Porter's in-cluster parts live.
const Namespace = "porter-system"

// ControllerLease is the Lease in Namespace that porter-controller's
// replicas elect their leader on. It keeps the name it had when the
// allocator ran in the speakers, so that during an upgrade an old speaker
// and a new controller never allocate at the same time.
const ControllerLease = "porter-allocator"

// Names lists the embedded manifest files by path, in apply order: CRDs
// first, so that objects of their kinds can follow.
func Names() []string {
	var names []string
	_ = fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		// kustomization.yaml lists the others for `kubectl apply -k`; it is
		// not an object.
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") && path != "kustomization.yaml" {
			names = append(names, path)
		}
		return err
	})
	sort.SliceStable(names, func(i, j int) bool {
		ci, cj := strings.HasPrefix(names[i], "crd/"), strings.HasPrefix(names[j], "crd/")
		if ci != cj {
			return ci
		}
		return names[i] < names[j]
	})
	return names
}

// Read returns one embedded manifest file.
func Read(name string) ([]byte, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read embedded manifest %s: %w", name, err)
	}
	return b, nil
}

// Documents returns one embedded manifest file split into its YAML
// documents.
func Documents(name string) ([][]byte, error) {
	b, err := Read(name)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, d := range strings.Split(string(b), "\n---\n") {
		out = append(out, []byte(d))
	}
	return out, nil
}
