// Command dist packs the cross-compiled kubectl-porter binaries into release
// archives, reproducibly (fixed modification times, owners and order), and
// renders the krew plugin manifest with each archive's address and sha256.
//
//	go run ./hack/dist -version v0.1.0 -in dist/build -out dist
package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// Platform is one archive, as the krew manifest template sees it.
type Platform struct {
	OS, Arch, URI, SHA256, Bin string
}

func main() {
	var (
		version  = flag.String("version", "", "release version, e.g. v0.1.0")
		in       = flag.String("in", "dist/build", "directory holding OS-ARCH/kubectl-porter[.exe]")
		out      = flag.String("out", "dist", "where archives and porter.yaml go")
		baseURL  = flag.String("base-url", "https://github.com/porterlb/porter/releases/download", "release download URL; the version is appended")
		mtime    = flag.String("mtime", "", "RFC 3339 time stamped on every archive entry (default: the epoch)")
		manifest = flag.String("manifest", "krew/porter.yaml", "krew manifest template")
		extra    = flag.String("files", "LICENSE,krew/kubectl_complete-porter", "files added to every archive beside the binary")
	)
	flag.Parse()
	if err := run(*version, *in, *out, *baseURL, *mtime, *manifest, strings.Split(*extra, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
}

var platforms = [][2]string{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"}, {"windows", "arm64"},
}

func run(version, in, out, baseURL, mtime, manifest string, extra []string) error {
	if version == "" {
		return fmt.Errorf("-version is required")
	}
	stamp := time.Unix(0, 0).UTC()
	if mtime != "" {
		t, err := time.Parse(time.RFC3339, mtime)
		if err != nil {
			return fmt.Errorf("-mtime: %w", err)
		}
		stamp = t.UTC()
	}
	var plats []Platform
	for _, p := range platforms {
		goos, arch := p[0], p[1]
		bin := "kubectl-porter"
		if goos == "windows" {
			bin += ".exe"
		}
		files := []file{{name: bin, path: filepath.Join(in, goos+"-"+arch, bin), mode: 0o755}}
		for _, e := range extra {
			mode := int64(0o644)
			if strings.HasPrefix(filepath.Base(e), "kubectl_complete-") {
				mode = 0o755
			}
			files = append(files, file{name: filepath.Base(e), path: e, mode: mode})
		}
		name := fmt.Sprintf("kubectl-porter_%s_%s_%s.tar.gz", version, goos, arch)
		pack := packTarGz
		if goos == "windows" {
			name = strings.TrimSuffix(name, ".tar.gz") + ".zip"
			pack = packZip
		}
		data, err := pack(files, stamp)
		if err != nil {
			return fmt.Errorf("pack %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		sum := sha256.Sum256(data)
		plats = append(plats, Platform{OS: goos, Arch: arch, Bin: bin, SHA256: hex.EncodeToString(sum[:]),
			URI: strings.TrimRight(baseURL, "/") + "/" + version + "/" + name})
		fmt.Printf("%s  %s\n", hex.EncodeToString(sum[:]), name)
	}
	tmpl, err := template.ParseFiles(manifest)
	if err != nil {
		return fmt.Errorf("read manifest template: %w", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, struct {
		Version   string
		Platforms []Platform
	}{version, plats}); err != nil {
		return fmt.Errorf("render manifest: %w", err)
	}
	// The template's own comments are about the template.
	var lines []string
	for l := range strings.SplitSeq(buf.String(), "\n") {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return os.WriteFile(filepath.Join(out, "porter.yaml"), []byte(strings.Join(lines, "\n")), 0o644)
}

type file struct {
	name, path string
	mode       int64
}

func packTarGz(files []file, stamp time.Time) ([]byte, error) {
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	gz.ModTime = stamp
	tw := tar.NewWriter(gz)
	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(data)), ModTime: stamp,
			Uid: 0, Gid: 0, Uname: "root", Gname: "root", Format: tar.FormatPAX, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func packZip(files []file, stamp time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return nil, err
		}
		hdr := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: stamp}
		hdr.SetMode(os.FileMode(f.mode))
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			return nil, err
		}
		if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
