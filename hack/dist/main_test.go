package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Packing the same files twice gives the same bytes, whatever the files'
// own times and owners: releases can be rebuilt and checked.
func TestArchivesAreReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kubectl-porter")
	if err := os.WriteFile(bin, []byte("binary"), 0o700); err != nil {
		t.Fatal(err)
	}
	stamp := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	files := []file{{name: "kubectl-porter", path: bin, mode: 0o755}}
	a, err := packTarGz(files, stamp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(bin, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	b, err := packTarGz(files, stamp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two packs of the same files differ")
	}
	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if !hdr.ModTime.Equal(stamp) || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Mode != 0o755 {
		t.Errorf("entry %+v: want the fixed time, root owner and mode 0755", hdr)
	}
	if body, _ := io.ReadAll(tr); string(body) != "binary" {
		t.Errorf("content %q", body)
	}
	za, err := packZip(files, stamp)
	if err != nil {
		t.Fatal(err)
	}
	zb, err := packZip(files, stamp)
	if err != nil || !bytes.Equal(za, zb) {
		t.Fatalf("zip packs differ: %v", err)
	}
}
