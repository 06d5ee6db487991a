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

//go:embed *.yaml
var files embed.FS

// Namespace is where Porter's in-cluster parts live.
const Namespace = "porter-system"

// Names lists the embedded manifest files in apply order (by name).
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
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
