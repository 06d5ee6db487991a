package health

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

func TestMembers(t *testing.T) {
	nodes := []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, {ObjectMeta: metav1.ObjectMeta{Name: "b"}}, {ObjectMeta: metav1.ObjectMeta{Name: "c"}}}
	allReady := map[string]bool{"a": true, "b": true, "c": true}
	view := func(members ...string) *v1alpha1.NodeNICs {
		return &v1alpha1.NodeNICs{Status: v1alpha1.NodeNICsStatus{Speaker: &v1alpha1.SpeakerStatus{Members: members}}}
	}
	for _, tc := range []struct {
		name   string
		inv    map[string]*v1alpha1.NodeNICs
		ready  map[string]bool
		state  State
		detail string
	}{
		{"all see all", map[string]*v1alpha1.NodeNICs{"a": view("a", "b", "c"), "b": view("a", "b", "c"), "c": view("a", "b", "c")}, allReady, OK, "all 3 speakers see each other"},
		// c's own report is stale: it died still claiming everyone.
		{"dead speaker with a stale report", map[string]*v1alpha1.NodeNICs{"a": view("a", "b"), "b": view("a", "b"), "c": view("a", "b", "c")}, allReady, Warning, "no other speaker sees c"},
		{"partition of one link", map[string]*v1alpha1.NodeNICs{"a": view("a", "b"), "b": view("a", "b", "c"), "c": view("b", "c")}, allReady, Warning, "a (sees 2 of 3), c (sees 2 of 3)"},
		{"a speaker that reports nothing", map[string]*v1alpha1.NodeNICs{"a": view("a", "b"), "b": view("a", "b")}, allReady, Warning, "c (reports nothing)"},
		{"no speaker", nil, map[string]bool{}, Failed, "no speaker runs"},
		{"one speaker alone is not unseen", map[string]*v1alpha1.NodeNICs{"a": view("a")}, map[string]bool{"a": true}, OK, "all 1 speakers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat := members(nodes, tc.inv, tc.ready)
			if len(cat.Checks) != 1 {
				t.Fatalf("checks: %+v", cat.Checks)
			}
			c := cat.Checks[0]
			if c.State != tc.state || !strings.Contains(c.Detail, tc.detail) {
				t.Errorf("got %s %q, want %s containing %q", c.State, c.Detail, tc.state, tc.detail)
			}
		})
	}
}
