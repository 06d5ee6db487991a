package setup

import (
	"bytes"
	"strings"
	"testing"

	"github.com/porterlb/porter/pkg/addr"
	"github.com/porterlb/porter/pkg/poolcheck"
)

func TestReportFindings(t *testing.T) {
	r, _ := addr.Parse("192.0.2.0/30")
	res := poolcheck.Result{Range: r, Findings: []poolcheck.Finding{
		{Severity: poolcheck.Warning, Message: "a warning"},
		{Severity: poolcheck.Refused, Message: "192.0.2.1 is the InternalIP of node a"},
		{Severity: poolcheck.Forceable, Message: "outside the subnet", Risk: "clients may not ARP"},
	}}
	var w bytes.Buffer
	err := reportFindings(&w, "p", res, false)
	if err == nil {
		t.Fatal("refused pool reported no error")
	}
	msg := err.Error()
	for _, want := range []string{`refusing Eip "p" (192.0.2.0-192.0.2.3); nothing was changed:`, "\n  - 192.0.2.1 is the InternalIP of node a", "\n  - outside the subnet; --force creates it anyway, but clients may not ARP"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if w.String() != "Warning: a warning\n" {
		t.Errorf("warnings printed %q", w.String())
	}

	// Forcing clears only the forceable finding.
	res.Findings = res.Findings[2:]
	w.Reset()
	if err := reportFindings(&w, "p", res, true); err != nil {
		t.Fatalf("forced: %v", err)
	}
	if !strings.Contains(w.String(), "Warning: forced: outside the subnet (clients may not ARP)") {
		t.Errorf("forced warning: %q", w.String())
	}
}
