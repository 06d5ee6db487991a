package main

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const testVersion = "v0.0.0-imagetest"

// buildBinaries cross-compiles the real porter-speaker and
// porter-controller for both architectures, as `make image` does.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, arch := range arches {
		out := filepath.Join(dir, "linux-"+arch) + "/"
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X github.com/porterlb/porter/pkg/version.gitVersion="+testVersion, "-o", out, "./cmd/porter-speaker", "./cmd/porter-controller")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the binaries for %s: %v\n%s", arch, err, b)
		}
	}
	return dir
}

func TestImageTarballReadsBackAndRuns(t *testing.T) {
	bins := buildBinaries(t)
	out := filepath.Join(t.TempDir(), "porter-speaker.tar")
	repo := "ghcr.io/porterlb/porter-speaker"
	created := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	if err := Build(Options{BinDir: bins, Repo: repo, Version: testVersion, Revision: "abc123", Created: created, Out: out}); err != nil {
		t.Fatal(err)
	}

	// As docker load reads it: manifest.json and its tags.
	tag, err := name.NewTag(repo + ":" + testVersion)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("read the tarball as docker load does: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cf.Config.Entrypoint, " ") != "/porter-speaker" || cf.Config.User != User || cf.Architecture != "amd64" {
		t.Errorf("config: entrypoint %v user %q arch %s", cf.Config.Entrypoint, cf.Config.User, cf.Architecture)
	}
	for k, want := range map[string]string{"org.opencontainers.image.version": testVersion, "org.opencontainers.image.revision": "abc123", "org.opencontainers.image.source": "https://github.com/porterlb/porter"} {
		if cf.Config.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, cf.Config.Labels[k], want)
		}
	}

	// The DaemonSet's default reference loads from the same tarball.
	latest, err := name.NewTag(repo + ":latest")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tarball.ImageFromPath(out, &latest); err != nil {
		t.Errorf("the tarball lacks %s, the DaemonSet's image: %v", latest, err)
	}

	// The binary from the layer runs.
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v %d", err, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for _, name := range Binaries {
		hdr, err := tr.Next()
		if err != nil || hdr.Name != name || hdr.Mode&0o111 == 0 {
			t.Fatalf("layer entry %+v %v, want %s", hdr, err, name)
		}
		exe := filepath.Join(t.TempDir(), name)
		f, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := exec.CommandContext(ctx, exe, "--version").CombinedOutput()
		cancel()
		if err != nil || !strings.HasPrefix(string(v), name+" "+testVersion) {
			t.Fatalf("extracted %s --version: %v %q", name, err, v)
		}
	}

	// As ctr images import reads it: an OCI layout whose index holds both
	// architectures.
	dir := t.TempDir()
	if err := exec.Command("tar", "-xf", out, "-C", dir).Run(); err != nil {
		t.Fatal(err)
	}
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil || len(im.Manifests) != 1 || im.Manifests[0].Annotations["io.containerd.image.name"] != repo+":"+testVersion {
		t.Fatalf("layout index: %v %+v", err, im)
	}
	inner, err := top.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	mm, err := inner.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var plats []string
	for _, m := range mm.Manifests {
		plats = append(plats, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	if strings.Join(plats, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("platforms %v", plats)
	}

}

// The DaemonSet's default image is one of the tags `make image` writes.
func TestDaemonSetImageIsATagMakeImageWrites(t *testing.T) {
	b, err := os.ReadFile("../../manifests/speaker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "image: ghcr.io/porterlb/porter-speaker:latest\n") {
		t.Fatal("manifests/speaker.yaml does not use ghcr.io/porterlb/porter-speaker:latest, which make image tags")
	}
}
