package membership

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestJudge(t *testing.T) {
	c := Cluster{
		Nodes:     map[string]bool{"node1": true, "node2": true, "node3": true, "node4": true},
		Ready:     map[string]bool{"node2": true, "node4": true},
		Published: map[string]string{"node1": "198.18.0.11:7947", "node2": "198.18.0.12:7947", "node4": "198.18.0.14:7947"},
		Self:      "node1",
	}
	for _, tc := range []struct {
		name string
		m    Member
		ok   bool
		why  string
	}{
		{"a ready node's speaker", Member{"node2", "198.18.0.12:7947"}, true, ""},
		{"itself, before its pod is ready", Member{"node1", "198.18.0.11:7947"}, true, ""},
		{"a name that is no Node", Member{"not-a-node", "198.18.0.99:7947"}, false, "no Node of that name"},
		{"a Node without a ready speaker", Member{"node3", "198.18.0.13:7947"}, false, "no ready porter-speaker pod"},
		{"a Node's name from another address", Member{"node4", "198.18.0.99:7947"}, false, "published member address 198.18.0.14:7947"},
		{"the right address on another port", Member{"node2", "198.18.0.12:7948"}, false, "published member address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := Judge(tc.m, c)
			if ok != tc.ok || tc.why != "" && !contains(why, tc.why) {
				t.Errorf("Judge(%v) = %v %q, want %v %q", tc.m, ok, why, tc.ok, tc.why)
			}
		})
	}
	c.Ready["node3"] = true
	if ok, why := Judge(Member{"node3", "198.18.0.13:7947"}, c); ok || !contains(why, "published no member address") {
		t.Errorf("a ready node with nothing published: %v %q", ok, why)
	}
	known, unknown := Split([]Member{{"node2", "198.18.0.12:7947"}, {"zz", "192.0.2.1:7947"}, {"aa", "192.0.2.2:7947"}}, c)
	if !known["node2"] || len(known) != 1 || len(unknown) != 2 || unknown[0].Name != "aa" {
		t.Errorf("Split = %v %v", known, unknown)
	}
	if s := unknown[1].String(); s != "zz (192.0.2.1:7947): no Node of that name" {
		t.Errorf("String = %q", s)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestReadyNodes(t *testing.T) {
	pod := func(node string, ready corev1.ConditionStatus) *corev1.Pod {
		p := &corev1.Pod{Spec: corev1.PodSpec{NodeName: node}}
		if ready != "" {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: ready}}
		}
		return p
	}
	got := ReadyNodes([]*corev1.Pod{pod("node1", corev1.ConditionTrue), pod("node2", corev1.ConditionFalse), pod("node3", ""), pod("", corev1.ConditionTrue)})
	if len(got) != 1 || !got["node1"] {
		t.Errorf("ReadyNodes = %v, want node1 only", got)
	}
}
