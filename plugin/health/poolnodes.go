package health

import (
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
)

// PoolNodes lists, for each layer2 pool, the nodes its nodeSelector
// picks among nodes, sorted; a pool without one picks every node. It is
// the rule the speakers apply (addrpolicy.Policy.Selects), read here to
// show it.
func PoolNodes(eips []v1alpha2.Eip, nodes []corev1.Node) map[string][]string {
	snap := addrpolicy.Snapshot{}
	for i := range nodes {
		snap.Nodes = append(snap.Nodes, addrpolicy.NodeFromObject(&nodes[i]))
	}
	for i := range eips {
		snap.Pools = append(snap.Pools, addrpolicy.PoolFromEip(&eips[i]))
	}
	policy := addrpolicy.New(snap)
	out := map[string][]string{}
	for _, p := range policy.Pools() {
		if !p.Layer2() {
			continue
		}
		picked := []string{}
		for i := range nodes {
			if policy.Selects(&p, nodes[i].Name) {
				picked = append(picked, nodes[i].Name)
			}
		}
		sort.Strings(picked)
		out[p.Name] = picked
	}
	return out
}
