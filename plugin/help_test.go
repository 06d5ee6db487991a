package plugin

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Every command a user can run explains itself: a one-line summary and at
// least one example, and help names it as kubectl runs it.
func TestEveryCommandHasSummaryAndExample(t *testing.T) {
	root := NewRootCommand(genericiooptions.NewTestIOStreamsDiscard())
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || strings.HasPrefix(c.Name(), "__") {
			return
		}
		if c.Runnable() {
			if c.Short == "" || strings.Contains(c.Short, "\n") {
				t.Errorf("%q: want a one-line Short", c.CommandPath())
			}
			if strings.TrimSpace(c.Example) == "" {
				t.Errorf("%q: no example", c.CommandPath())
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)

	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"eip", "create", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kubectl porter eip create") {
		t.Errorf("help does not read 'kubectl porter ...':\n%s", out.String())
	}
}

func TestCompletionScriptsAreForTheKubectlPluginBinary(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		var out bytes.Buffer
		root := NewRootCommand(genericiooptions.IOStreams{Out: &out, ErrOut: &out})
		root.SetArgs([]string{"completion", shell})
		if err := root.Execute(); err != nil {
			t.Fatalf("%s: %v", shell, err)
		}
		if !strings.Contains(out.String(), "kubectl-porter") {
			t.Errorf("%s completion does not complete kubectl-porter", shell)
		}
	}
}
