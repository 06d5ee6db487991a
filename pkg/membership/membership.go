// Package membership decides which gossip members count. Gossip is
// authenticated, but a key can leak; a member counts only where the
// cluster itself vouches for it, through objects only Porter and
// Kubernetes write.
package membership

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// Member is a gossip member as a speaker sees it.
type Member struct {
	Name string
	// Addr is the host:port it gossips from.
	Addr string
}

// Cluster is what the cluster says about its speakers.
type Cluster struct {
	// Nodes are the names of the Nodes.
	Nodes map[string]bool
	// Ready are the nodes that run a ready porter-speaker pod.
	Ready map[string]bool
	// Published is, by node, the member address its speaker published in
	// its NodeNICs.
	Published map[string]string
	// Self is the judging speaker's own node: it vouches for itself, as
	// its pod turns ready only after it has decided once.
	Self string
}

// Unknown is a member that does not count, and why.
type Unknown struct {
	Member
	Reason string
}

func (u Unknown) String() string { return fmt.Sprintf("%s (%s): %s", u.Name, u.Addr, u.Reason) }

// Judge says whether m counts: its name is a Node, that Node runs a ready
// speaker pod, and m gossips from the address that node's speaker
// published.
func Judge(m Member, c Cluster) (ok bool, reason string) {
	switch {
	case !c.Nodes[m.Name]:
		return false, "no Node of that name"
	case m.Name == c.Self:
		return true, ""
	case !c.Ready[m.Name]:
		return false, "its Node runs no ready porter-speaker pod"
	case c.Published[m.Name] == "":
		return false, "its Node's speaker published no member address"
	case c.Published[m.Name] != m.Addr:
		return false, "its Node's speaker published member address " + c.Published[m.Name]
	}
	return true, ""
}

// Split sorts members into those that count, by name, and those that do
// not, sorted by name.
func Split(ms []Member, c Cluster) (known map[string]bool, unknown []Unknown) {
	known = map[string]bool{}
	for _, m := range ms {
		if ok, why := Judge(m, c); ok {
			known[m.Name] = true
		} else {
			unknown = append(unknown, Unknown{Member: m, Reason: why})
		}
	}
	sort.Slice(unknown, func(i, j int) bool { return unknown[i].Name < unknown[j].Name })
	return known, unknown
}

// SpeakerPodSelector selects the speaker DaemonSet's pods.
const SpeakerPodSelector = "app.kubernetes.io/name=porter-speaker"

// ReadyNodes are the nodes that run a ready speaker pod, of pods.
func ReadyNodes(pods []*corev1.Pod) map[string]bool {
	out := map[string]bool{}
	for _, p := range pods {
		if p.Spec.NodeName != "" && podReady(p) {
			out[p.Spec.NodeName] = true
		}
	}
	return out
}

// ReadyNodesOf is ReadyNodes of a list from the API.
func ReadyNodesOf(list *corev1.PodList) map[string]bool {
	pods := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		pods[i] = &list.Items[i]
	}
	return ReadyNodes(pods)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
