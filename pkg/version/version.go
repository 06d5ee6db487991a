// Package version reports the build's version, which the Makefile injects at
// link time from `git describe`.
package version

import (
	"fmt"
	"runtime"
)

// These are overwritten by the linker (-X). They are variables only because
// the linker cannot set constants; nothing in the program writes them.
var (
	gitVersion = "v0.0.0-dev"
	gitCommit  = ""
	buildDate  = ""
)

// Info describes one build. Its JSON form is part of the plugin's output
// contract (`kubectl porter version -o json`), so fields are only ever added.
type Info struct {
	Version   string `json:"version"`
	GitCommit string `json:"gitCommit,omitempty"`
	BuildDate string `json:"buildDate,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the version of the running binary.
func Get() Info {
	return Info{
		Version:   gitVersion,
		GitCommit: gitCommit,
		BuildDate: buildDate,
		GoVersion: runtime.Version(),
		Platform:  fmt.Sprintf("%s/%s", runtime.GOOS, runtime.GOARCH),
	}
}

// String is the one-line form used by `--version` flags.
func (i Info) String() string {
	s := i.Version
	if i.GitCommit != "" {
		s += " (" + shortCommit(i.GitCommit) + ")"
	}
	return s + " " + i.GoVersion + " " + i.Platform
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}
