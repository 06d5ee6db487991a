package manifests

import (
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

func TestEmbeddedFilesMatchTheDirectory(t *testing.T) {
	names := Names()
	if len(names) == 0 {
		t.Fatal("no manifests embedded")
	}
	for _, n := range names {
		embedded, err := Read(n)
		if err != nil {
			t.Fatal(err)
		}
		onDisk, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		if string(embedded) != string(onDisk) {
			t.Errorf("%s: embedded copy differs from the file", n)
		}
	}
}

func TestNamespaceManifestDecodes(t *testing.T) {
	b, err := Read("namespace.yaml")
	if err != nil {
		t.Fatal(err)
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ns, ok := obj.(*corev1.Namespace)
	if !ok || ns.Name != Namespace {
		t.Fatalf("namespace.yaml holds %T %v, want Namespace %s", obj, obj, Namespace)
	}
}

func TestReadMissing(t *testing.T) {
	if _, err := Read("nope.yaml"); err == nil {
		t.Fatal("want an error")
	}
}

func TestEipCRDIsEmbeddedFirst(t *testing.T) {
	names := Names()
	if len(names) < 2 || names[0] != EipCRD {
		t.Fatalf("Names() = %v, want %s first", names, EipCRD)
	}
	b, err := Read(EipCRD)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "name: eips.network.kubesphere.io") {
		t.Fatalf("%s does not define eips.network.kubesphere.io", EipCRD)
	}
}

// The plugin embeds exactly the files kustomization.yaml lists, so `kubectl
// apply -k manifests/` and `kubectl porter init` install the same objects.
func TestKustomizationListsEveryEmbeddedFile(t *testing.T) {
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(k.Resources))
	want := slices.Sorted(slices.Values(Names()))
	if !slices.Equal(got, want) {
		t.Fatalf("kustomization.yaml lists %v; the plugin embeds %v", got, want)
	}
}
