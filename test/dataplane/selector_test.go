package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/lbservice"
)

// labelNode sets or, with value "", removes a label of a lab node until
// the test ends.
func labelNode(t *testing.T, node, key, value string) {
	t.Helper()
	set := func(v *string) error {
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, key)
		if v != nil {
			patch = fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, key, *v)
		}
		_, err := env.Cluster.Client.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	}
	if err := set(&value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = set(nil) })
}

// A pool with a nodeSelector is answered only from the nodes it picks:
// the address moves among them when its owner dies, and never to a node
// the selector leaves out, though that node is alive and could.
func TestNodeSelectorKeepsAPoolOnItsNodes(t *testing.T) {
	picked := map[string]bool{env.Net.Nodes[0].Name: true, env.Net.Nodes[1].Name: true}
	left := env.Net.Nodes[2].Name
	for n := range picked {
		labelNode(t, n, "porter.test/rack", "r1")
	}
	createPool(t, "racked", "198.18.0.150-198.18.0.153", func(e *v1alpha2.Eip) {
		e.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"porter.test/rack": "r1"}}
	})
	sp := startSpeakersAtRest(t)
	createService(t, "racked", func(s *corev1.Service) { s.Annotations[lbservice.PoolAnnotation] = "racked" })
	ip := waitIP(t, "racked")
	first := ownerOf(t, "racked", ip)
	if !picked[first] {
		t.Fatalf("%s answers for %s, though the pool's nodeSelector leaves it out", first, ip)
	}
	smp := sampleARP(t, []netip.Addr{ip}, 50*time.Millisecond)
	sp[first].signal(t, syscall.SIGKILL)
	sp[first].exited(t, 5*time.Second)
	next := servedBy(t, ip, 15*time.Second, func(n string) bool { return n != first })
	if !picked[next] {
		t.Errorf("after %s died, %s answers for %s, though the nodeSelector leaves it out", first, next, ip)
	}
	time.Sleep(2 * time.Second)
	smp.finish(t)
	for _, m := range smp.moves(ip) {
		if f := strings.Fields(m); strings.Contains(f[1], left) {
			t.Errorf("%s, which the nodeSelector leaves out, answered for %s: %s", left, ip, m)
		}
	}
	t.Logf("%s moved from %s to %s; %s never answered", ip, first, next, left)
}
