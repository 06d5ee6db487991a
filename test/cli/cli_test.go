// Package cli tests the built binaries as users run them: kubectl-porter
// through the machine's real kubectl, against a lab cluster.
package cli

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porterlb/porter/test/lab"
)

// stampedVersion is injected at link time the way the Makefile does it, so
// the tests see it come back out.
const stampedVersion = "v9.8.7-test"

var (
	env     *lab.Env
	binDir  string
	cluster *lab.Cluster
)

func TestMain(m *testing.M) {
	ldflags := "-X github.com/porterlb/porter/pkg/version.gitVersion=" + stampedVersion +
		" -X github.com/porterlb/porter/pkg/version.gitCommit=0123456789abcdef"
	os.Exit(lab.Main(m, lab.EnvOptions{
		Build:   []string{"github.com/porterlb/porter/cmd/kubectl-porter", "github.com/porterlb/porter/cmd/porter-speaker"},
		LDFlags: ldflags,
	}, func(e *lab.Env) { env, cluster, binDir = e, e.Cluster, e.BinDir }))
}

// kubectl runs the real kubectl with the built plugin on its PATH.
func kubectl(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := env.Kubectl(context.Background(), args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func TestKubectlFindsThePlugin(t *testing.T) {
	out, stderr, err := kubectl(t, "plugin", "list")
	if err != nil {
		t.Fatalf("kubectl plugin list: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, filepath.Join(binDir, "kubectl-porter")) {
		t.Fatalf("kubectl plugin list does not show kubectl-porter:\n%s", out)
	}
}

func TestVersionJSONThroughKubectl(t *testing.T) {
	out, stderr, err := kubectl(t, "porter", "version", "-o", "json")
	if err != nil {
		t.Fatalf("kubectl porter version -o json: %v\n%s", err, stderr)
	}
	var v struct {
		ClientVersion struct {
			Version, GitCommit, GoVersion, Platform string
		}
		ServerVersion *struct{ GitVersion string }
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if v.ClientVersion.Version != stampedVersion || v.ClientVersion.GitCommit != "0123456789abcdef" {
		t.Errorf("client version %+v, want the link-time stamp %s", v.ClientVersion, stampedVersion)
	}
	if v.ServerVersion == nil || !strings.HasPrefix(v.ServerVersion.GitVersion, "v1.37.") {
		t.Errorf("server version %+v, want the lab's v1.37", v.ServerVersion)
	}
}

func TestVersionClientOnlyNeedsNoCluster(t *testing.T) {
	cmd := exec.Command(filepath.Join(binDir, "kubectl-porter"), "version", "--client", "--kubeconfig", "/nonexistent")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("version --client: %v\n%s", err, out)
	}
	if want := "Client Version: " + stampedVersion + " (0123456789ab)"; !strings.HasPrefix(string(out), want) {
		t.Fatalf("version --client printed %q, want it to start with %q", out, want)
	}
}

func TestVersionUnreachableServerFails(t *testing.T) {
	cmd := exec.Command(filepath.Join(binDir, "kubectl-porter"), "version", "--server", "https://127.0.0.1:1", "--insecure-skip-tls-verify")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("version against a closed port succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "Client Version: "+stampedVersion) || !strings.Contains(string(out), "error: get API server version") {
		t.Fatalf("want the client version and a clear error, got:\n%s", out)
	}
}

func TestBadOutputFormatIsRefused(t *testing.T) {
	_, stderr, err := kubectl(t, "porter", "version", "-o", "xml")
	if err == nil || !strings.Contains(stderr, `unknown output format "xml"`) {
		t.Fatalf("want a refusal naming the format, got err %v, stderr %q", err, stderr)
	}
}

func TestBinariesAreStatic(t *testing.T) {
	for _, b := range []string{"kubectl-porter", "porter-speaker"} {
		f, err := elf.Open(filepath.Join(binDir, b))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has a dynamic loader (PT_INTERP); want a static binary", b)
			}
		}
		_ = f.Close()
	}
}

func TestSpeakerVersion(t *testing.T) {
	out, err := exec.Command(filepath.Join(binDir, "porter-speaker"), "--version").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "porter-speaker "+stampedVersion+" ") {
		t.Fatalf("porter-speaker --version printed %q", out)
	}
}

func TestSpeakerConnectsAndStopsOnSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "porter-speaker"), "--kubeconfig", cluster.Kubeconfig, "--node-name", "speaker-node")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	started := false
	for lines.Scan() {
		if strings.Contains(lines.Text(), "speaker started") {
			started = true
			if !strings.Contains(lines.Text(), "apiServer=v1.37.") || !strings.Contains(lines.Text(), "node=speaker-node") {
				t.Errorf("start line lacks the API server version or node: %s", lines.Text())
			}
			break
		}
	}
	if !started {
		t.Fatal("speaker never logged that it started")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("speaker exit after SIGTERM: %v", err)
	}
}

func TestSpeakerRequiresNodeName(t *testing.T) {
	out, err := exec.Command(filepath.Join(binDir, "porter-speaker"), "--kubeconfig", cluster.Kubeconfig).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--node-name is required") {
		t.Fatalf("want a refusal naming --node-name, got %v: %s", err, out)
	}
}

func TestEipWithoutTheCRDSaysWhatToDo(t *testing.T) {
	_, stderr, err := kubectl(t, "porter", "eip", "list")
	if err == nil || !strings.Contains(stderr, "the Eip API (eips.network.kubesphere.io) is not installed in this cluster; run `kubectl porter init` first") {
		t.Fatalf("want advice to run init, got %v: %s", err, stderr)
	}
}
