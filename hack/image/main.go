// Command image builds porter-speaker's OCI image without a Docker engine:
// the static binary alone on an empty base, for linux/amd64 and
// linux/arm64 as one index, written as a tarball that both `docker load`
// (it carries a manifest.json) and `ctr images import` (an OCI layout)
// read.
//
//	go run . -bin-dir ../../dist/build -version v0.1.0 -out ../../dist/porter-speaker-v0.1.0.tar
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Binaries are the programs the image holds, at its root. One image serves
// both the speaker DaemonSet (its entrypoint) and the controller
// Deployment (command /porter-controller), so one version names both.
var Binaries = []string{"porter-speaker", "porter-controller"}

// User is the image's default user: nobody in particular, not root. The
// DaemonSet runs it as root with only NET_RAW and SYS_NICE, since Kubernetes cannot give
// a capability to a non-root process.
const User = "65532:65532"

// Options say what to build.
type Options struct {
	BinDir   string // holds linux-amd64/porter-speaker and linux-arm64/porter-speaker
	Repo     string
	Version  string
	Revision string
	Created  time.Time
	Out      string
}

func main() {
	var o Options
	var created string
	flag.StringVar(&o.BinDir, "bin-dir", "dist/build", "directory holding linux-ARCH/porter-speaker and linux-ARCH/porter-controller")
	flag.StringVar(&o.Repo, "repo", "ghcr.io/porterlb/porter-speaker", "image repository")
	flag.StringVar(&o.Version, "version", "", "image tag and version label")
	flag.StringVar(&o.Revision, "revision", "", "source revision label")
	flag.StringVar(&created, "created", "", "RFC 3339 creation time (default: the epoch, for reproducible images)")
	flag.StringVar(&o.Out, "out", "", "tarball to write")
	flag.Parse()
	o.Created = time.Unix(0, 0).UTC()
	if created != "" {
		t, err := time.Parse(time.RFC3339, created)
		if err != nil {
			fmt.Fprintln(os.Stderr, "image: -created:", err)
			os.Exit(2)
		}
		o.Created = t.UTC()
	}
	if err := Build(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

var arches = []string{"amd64", "arm64"}

// Build writes the image tarball.
func Build(o Options) error {
	if o.Version == "" || o.Out == "" {
		return fmt.Errorf("-version and -out are required")
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	images := map[string]v1.Image{}
	for _, arch := range arches {
		img, err := image(o, arch)
		if err != nil {
			return fmt.Errorf("linux/%s: %w", arch, err)
		}
		images[arch] = img
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: arch},
		}})
	}
	dir, err := os.MkdirTemp("", "porter-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("start OCI layout: %w", err)
	}
	ref := o.Repo + ":" + o.Version
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.Version,
		"io.containerd.image.name":          ref,
	})); err != nil {
		return fmt.Errorf("write OCI layout: %w", err)
	}
	// docker load reads manifest.json: point it at the amd64 image, whose
	// blobs the layout already holds.
	if err := dockerManifest(dir, images["amd64"], []string{ref, o.Repo + ":latest"}); err != nil {
		return err
	}
	return tarDir(dir, o.Out, o.Created)
}

func image(o Options, arch string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range Binaries {
		bin, err := os.ReadFile(filepath.Join(o.BinDir, "linux-"+arch, name))
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(bin)), ModTime: o.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(bin); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: o.Created}
	cf.Config.Entrypoint = []string{"/porter-speaker"}
	cf.Config.User = User
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "porter-speaker",
		"org.opencontainers.image.description": "Porter's in-cluster parts: porter-speaker (the entrypoint) answers ARP; porter-controller gives pool IPs to Services",
		"org.opencontainers.image.source":      "https://github.com/porterlb/porter",
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.created":     o.Created.Format(time.RFC3339),
	}
	cf.History = []v1.History{{Created: v1.Time{Time: o.Created}, CreatedBy: "porter hack/image: COPY porter-speaker porter-controller /"}}
	return mutate.ConfigFile(img, cf)
}

func dockerManifest(dir string, img v1.Image, tags []string) error {
	cfg, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var paths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		paths = append(paths, "blobs/sha256/"+d.Hex)
	}
	b, err := json.Marshal([]map[string]any{{"Config": "blobs/sha256/" + cfg.Hex, "RepoTags": tags, "Layers": paths}})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644)
}

// tarDir packs dir with fixed times and owners, in name order.
func tarDir(dir, out string, stamp time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && path != dir {
			names = append(names, path)
		}
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, path := range names {
		rel, _ := filepath.Rel(dir, path)
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: stamp, Mode: 0o644, Format: tar.FormatPAX}
		if st.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, src)
		_ = src.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
