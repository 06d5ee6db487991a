// Package demo runs `make demo`'s program the way a newcomer does, without
// a terminal, and checks the lines that tell its story, so the README's
// first command cannot rot.
package demo

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// build compiles the demo program once per test.
func build(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the demo builds network namespaces and needs root; CI runs as root")
	}
	bin := filepath.Join(t.TempDir(), "demo")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/porterlb/porter/hack/demo").CombinedOutput(); err != nil {
		t.Fatalf("build the demo: %v\n%s", err, out)
	}
	return bin
}

func TestDemoTellsTheWholeStory(t *testing.T) {
	bin := build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "DEMO_KEEP=")
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("the demo failed: %v\n%s", err, text)
	}
	for _, want := range []string{
		"━━ 1/9  Build Porter and start the lab",
		"node3   eth0 198.18.0.13, eth1 198.18.1.13",
		"strictARP: false",
		"$ kubectl porter init --eip demo=198.18.0.200-198.18.0.210 --yes",
		"✓ strictARP            set ipvs.strictARP: true",
		"✓ restart kube-proxy",
		"✓ deploy speaker",
		"✓ NIC annotations      annotate layer2.porter.kubesphere.io/v1alpha1 on node3=198.18.0.13",
		"✓ address pools        create Eip demo (198.18.0.200-198.18.0.210)",
		`error: refusing Eip "bad"`,
		"198.18.0.11 is the InternalIP of node node1",
		"no other speaker sees",
		"Porter is healthy\n",
		"━━ 9/9  Tear down",
		"Demo complete.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo did not print %q", want)
		}
	}
	if !regexp.MustCompile(`demo\s+LoadBalancer\s+\S+\s+198\.18\.0\.2(0\d|10)\s`).MatchString(text) {
		t.Error("kubectl get service shows no EXTERNAL-IP from the pool")
	}
	served := regexp.MustCompile(`served by (node\d)`).FindStringSubmatch(text)
	took := regexp.MustCompile(`(node\d) took over (\S+) after the kill`).FindStringSubmatch(text)
	if served == nil || took == nil {
		t.Fatalf("no serving node or no takeover in the output:\n%s", text)
	}
	if served[1] == took[1] {
		t.Errorf("%s served before and after its speaker was killed", served[1])
	}
	if d, err := time.ParseDuration(took[2]); err != nil || d <= 0 {
		t.Errorf("takeover of %s", took[2])
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", text)
	}
}

// A stage that fails is named, its logs shown, the lab removed, and the
// exit code is non-zero. The lab's binaries are taken away to make the
// first stage fail.
func TestDemoFailureNamesTheStage(t *testing.T) {
	bin := build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "PORTER_LAB_BIN="+t.TempDir())
	out, err := cmd.CombinedOutput()
	text := string(out)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("the demo did not fail without the lab's binaries: %v\n%s", err, text)
	}
	for _, want := range []string{"✗ DEMO FAILED at stage 1/9 (Build Porter and start the lab)", "kube-apiserver", "━━ 9/9  Tear down"} {
		if !strings.Contains(text, want) {
			t.Errorf("the failed demo did not print %q:\n%s", want, text)
		}
	}
}
