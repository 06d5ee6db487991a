// Package reports reads the speakers' NodeNICs reports as a whole: which
// of them still speak for a live speaker. A speaker that died leaves its
// last report standing, with the addresses it answered for; only its
// peers' reports show it is gone. The controller, when it records who
// announces an address, and status, when it shows it, read the reports
// by this one rule.
package reports

import (
	"slices"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

// Liveness is what the reports say of their speakers.
type Liveness struct {
	// Views are the nodes whose reports carry a speaker's view.
	Views []string
	// SeenBy counts, for each node, the other speakers that see it alive.
	SeenBy map[string]int
}

// Live reads the reports, by node name, of the nodes counted in (all of
// them when counted is nil): status counts only nodes with a ready
// speaker pod.
func Live(nics map[string]*v1alpha1.NodeNICs, counted func(node string) bool) Liveness {
	l := Liveness{SeenBy: map[string]int{}}
	for node, n := range nics {
		if n == nil || n.Status.Speaker == nil || counted != nil && !counted(node) {
			continue
		}
		l.Views = append(l.Views, node)
		for _, m := range n.Status.Speaker.Members {
			if m != node {
				l.SeenBy[m]++
			}
		}
	}
	slices.Sort(l.Views)
	return l
}

// Stale reports whether node's report may be its dead speaker's last
// word: there are other views, and none of them sees it alive.
func (l Liveness) Stale(node string) bool {
	return len(l.Views) > 1 && l.SeenBy[node] == 0
}
