package plugin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/porterlb/porter/plugin/steps"
)

// checklist prints step results as a checklist: styled on a colour
// terminal, plain text when the output is not one or NO_COLOR is set.
type checklist struct {
	w                           io.Writer
	done, already, failed, dim  lipgloss.Style
	skipped, planned, hint, bad lipgloss.Style
}

func newChecklist(w io.Writer) *checklist {
	r := lipgloss.NewRenderer(w)
	if os.Getenv("NO_COLOR") != "" {
		r.SetColorProfile(termenv.Ascii)
	}
	return &checklist{
		w:       w,
		done:    r.NewStyle().Foreground(lipgloss.Color("2")).Bold(true),
		already: r.NewStyle().Foreground(lipgloss.Color("4")),
		failed:  r.NewStyle().Foreground(lipgloss.Color("1")).Bold(true),
		bad:     r.NewStyle().Foreground(lipgloss.Color("1")),
		dim:     r.NewStyle().Faint(true),
		skipped: r.NewStyle().Faint(true),
		planned: r.NewStyle().Foreground(lipgloss.Color("3")),
		hint:    r.NewStyle().Italic(true),
	}
}

// Marks: ✓ done, • already so (or skipped), ~ would change, - declined,
// ✗ failed.
func (c *checklist) print(res steps.Result) {
	var mark string
	switch res.Outcome {
	case steps.OutcomeDone:
		mark = c.done.Render("✓")
	case steps.OutcomeAlready:
		mark = c.already.Render("•")
	case steps.OutcomeSkipped:
		mark = c.skipped.Render("•")
	case steps.OutcomePlanned:
		mark = c.planned.Render("~")
	case steps.OutcomeDeclined:
		mark = c.planned.Render("-")
	default:
		mark = c.failed.Render("✗")
	}
	msg := res.Message
	switch res.Outcome {
	case steps.OutcomeSkipped:
		msg = "skipped: " + msg
	case steps.OutcomeDeclined:
		msg = "declined: " + msg
	}
	lines := strings.Split(msg, "\n")
	fmt.Fprintf(c.w, "%s %-20s %s\n", mark, res.Step, lines[0])
	for _, l := range lines[1:] {
		fmt.Fprintf(c.w, "  %-20s %s\n", "", c.bad.Render(l))
	}
	if res.Diff != "" && res.Outcome != steps.OutcomeAlready {
		for _, l := range strings.Split(strings.TrimRight(res.Diff, "\n"), "\n") {
			fmt.Fprintf(c.w, "    %s\n", c.dim.Render(l))
		}
	}
	if res.Hint != "" {
		fmt.Fprintf(c.w, "  %-20s %s\n", "", c.hint.Render("hint: "+res.Hint))
	}
}

func (c *checklist) progress(step, msg string) {
	fmt.Fprintf(c.w, "  %-20s %s\n", step, c.dim.Render(msg))
}

// report prints res and returns it.
func (c *checklist) report(res steps.Result) steps.Result {
	c.print(res)
	return res
}

// hintOf is the hint a Hinted error carries.
func hintOf(err error) string {
	var h *steps.Hinted
	if errors.As(err, &h) {
		return h.Hint
	}
	return ""
}
