package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/porterlb/porter/pkg/version"
)

func execute(args ...string) (code int, stdout, stderr string) {
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	code = Execute(context.Background(), args, streams)
	return code, out.String(), errOut.String()
}

func TestVersionClientJSON(t *testing.T) {
	code, out, stderr := execute("version", "--client", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got versionOutput
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if got.ClientVersion != version.Get() {
		t.Errorf("clientVersion = %+v, want %+v", got.ClientVersion, version.Get())
	}
	if got.ServerVersion != nil || strings.Contains(out, "serverVersion") {
		t.Errorf("--client output has a server version: %s", out)
	}
}

func TestVersionClientYAMLMatchesJSONFields(t *testing.T) {
	code, out, stderr := execute("version", "--client", "-o", "yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got map[string]map[string]any
	if err := yaml.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got["clientVersion"]["version"] != version.Get().Version || got["clientVersion"]["goVersion"] == nil {
		t.Fatalf("YAML output %q lacks the JSON field names", out)
	}
}

func TestVersionRejectsUnknownFormatAndArgs(t *testing.T) {
	code, _, stderr := execute("version", "--client", "-o", "xml")
	if code == 0 || !strings.Contains(stderr, `error: unknown output format "xml": choose one of json, yaml`) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = execute("version", "extra")
	if code == 0 || !strings.Contains(stderr, "unknown command") && !strings.Contains(stderr, "accepts 0 arg") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestHelpNamesThePluginAsKubectlSubcommand(t *testing.T) {
	code, out, _ := execute("--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out, "kubectl porter [command]") {
		t.Fatalf("help does not show usage as `kubectl porter`:\n%s", out)
	}
	if !strings.Contains(out, "--kubeconfig") || !strings.Contains(out, "--context") {
		t.Fatalf("help lacks the standard kubectl flags:\n%s", out)
	}
}

func TestPrintObjectRejectsUnknownFormat(t *testing.T) {
	var b bytes.Buffer
	if err := printObject(&b, "toml", struct{}{}); err == nil {
		t.Fatal("want an error")
	}
}
