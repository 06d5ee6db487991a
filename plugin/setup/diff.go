package setup

import (
	"fmt"
	"strings"
)

// lineDiff is a small unified-style diff for the one-line edits setup makes:
// changed lines with two lines of context, and @@ line numbers.
func lineDiff(name, a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	// Common prefix and suffix bound the changed block.
	p := 0
	for p < len(la) && p < len(lb) && la[p] == lb[p] {
		p++
	}
	s := 0
	for s < len(la)-p && s < len(lb)-p && la[len(la)-1-s] == lb[len(lb)-1-s] {
		s++
	}
	if p == len(la) && p == len(lb) {
		return ""
	}
	const ctx = 2
	start := max(p-ctx, 0)
	endA, endB := len(la)-s, len(lb)-s
	tailA := min(endA+ctx, len(la))
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n@@ -%d +%d @@\n", name, name, start+1, start+1)
	for _, l := range la[start:p] {
		out.WriteString(" " + l + "\n")
	}
	for _, l := range la[p:endA] {
		out.WriteString("-" + l + "\n")
	}
	for _, l := range lb[p:endB] {
		out.WriteString("+" + l + "\n")
	}
	for _, l := range la[endA:tailA] {
		out.WriteString(" " + l + "\n")
	}
	return out.String()
}
