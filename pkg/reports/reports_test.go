package reports

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

func report(node string, members ...string) *v1alpha1.NodeNICs {
	n := &v1alpha1.NodeNICs{ObjectMeta: metav1.ObjectMeta{Name: node}}
	if members != nil {
		n.Status.Speaker = &v1alpha1.SpeakerStatus{Members: members}
	}
	return n
}

func TestStale(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reports []*v1alpha1.NodeNICs
		counted func(string) bool
		stale   []string
		fresh   []string
	}{
		{"all see each other", []*v1alpha1.NodeNICs{report("a", "a", "b"), report("b", "a", "b")}, nil, nil, []string{"a", "b"}},
		{"a dead speaker's last report", []*v1alpha1.NodeNICs{report("a", "a", "c"), report("b", "a", "b", "c"), report("c", "a", "c")}, nil, []string{"b"}, []string{"a", "c"}},
		{"a lone speaker is not stale", []*v1alpha1.NodeNICs{report("a", "a"), report("b")}, nil, nil, []string{"a"}},
		{"an uncounted view does not vouch", []*v1alpha1.NodeNICs{report("a", "a", "b"), report("b", "b", "c"), report("c", "a", "c")},
			func(n string) bool { return n != "a" }, []string{"b"}, []string{"c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			byName := map[string]*v1alpha1.NodeNICs{}
			for _, r := range tc.reports {
				byName[r.Name] = r
			}
			l := Live(byName, tc.counted)
			for _, n := range tc.stale {
				if !l.Stale(n) {
					t.Errorf("%s not stale", n)
				}
			}
			for _, n := range tc.fresh {
				if l.Stale(n) {
					t.Errorf("%s stale", n)
				}
			}
		})
	}
}
