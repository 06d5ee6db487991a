package daemon

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestExecuteReportsErrorsAndExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		run      error
		args     []string
		wantCode int
		wantErr  string
	}{
		{"ok", nil, nil, 0, ""},
		{"failed", errors.New("boom"), nil, 1, "error: boom"},
		{"bad flag", nil, []string{"--nope"}, 1, "unknown flag: --nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := &cobra.Command{Use: "x", SilenceErrors: true, SilenceUsage: true, RunE: func(*cobra.Command, []string) error { return tc.run }}
			var stderr bytes.Buffer
			if code := Execute(context.Background(), cmd, tc.args, &stderr); code != tc.wantCode {
				t.Errorf("code %d, want %d", code, tc.wantCode)
			}
			if !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.wantErr)
			}
		})
	}
}

func TestEnvOr(t *testing.T) {
	t.Setenv("PORTER_DAEMON_TEST", "set")
	if got := EnvOr("PORTER_DAEMON_TEST", "def"); got != "set" {
		t.Errorf("EnvOr = %q, want set", got)
	}
	if got := EnvOr("PORTER_DAEMON_TEST_UNSET", "def"); got != "def" {
		t.Errorf("EnvOr = %q, want def", got)
	}
}
