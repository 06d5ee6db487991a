package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestGetReportsRuntime(t *testing.T) {
	i := Get()
	if i.Version == "" {
		t.Fatal("Version is empty; the default must be non-empty so an unstamped build is recognisable")
	}
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion = %q, want %q", i.GoVersion, runtime.Version())
	}
	if want := runtime.GOOS + "/" + runtime.GOARCH; i.Platform != want {
		t.Errorf("Platform = %q, want %q", i.Platform, want)
	}
}

func TestStringShortensCommit(t *testing.T) {
	i := Info{Version: "v1.2.3", GitCommit: "0123456789abcdef0123", GoVersion: "go1.26.8", Platform: "linux/amd64"}
	got := i.String()
	want := "v1.2.3 (0123456789ab) go1.26.8 linux/amd64"
	if got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	i.GitCommit = ""
	if got := i.String(); strings.Contains(got, "(") {
		t.Errorf("String() without commit = %q, want no commit part", got)
	}
}
