package facts

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

// fakeInformer is an informer over a watch the test feeds: the cache and
// its handlers are client-go's own.
func fakeInformer(t *testing.T, obj runtime.Object, list runtime.Object) (cache.SharedIndexInformer, *watch.FakeWatcher) {
	t.Helper()
	w := watch.NewFakeWithChanSize(16, false)
	lw := &cache.ListWatch{
		ListWithContextFunc:  func(context.Context, metav1.ListOptions) (runtime.Object, error) { return list, nil },
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return w, nil },
	}
	inf := cache.NewSharedIndexInformer(listOnly{lw}, obj, 0, cache.Indexers{})
	return inf, w
}

// listOnly makes the reflector list, then watch: the fake watch cannot
// stream the initial list as a real API server does.
type listOnly struct{ *cache.ListWatch }

func (listOnly) IsWatchListSemanticsUnSupported() bool { return true }

func TestPolicyIsFreshWhenAChangeIsTold(t *testing.T) {
	eipInf, eipW := fakeInformer(t, &v1alpha2.Eip{}, &v1alpha2.EipList{})
	nodeInf, nodeW := fakeInformer(t, &corev1.Node{}, &corev1.NodeList{})
	nicsInf, _ := fakeInformer(t, &v1alpha1.NodeNICs{}, &v1alpha1.NodeNICsList{})
	sliceInf, _ := fakeInformer(t, &discoveryv1.EndpointSlice{}, &discoveryv1.EndpointSliceList{})
	f, err := New(Informers{Eips: eipInf, Nodes: nodeInf, NodeNICs: nicsInf, EndpointSlices: sliceInf})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	calls := make(chan struct{}, 16)
	// What a consumer reads in answer to a change must include it, though
	// every handler runs on its own goroutine.
	if _, err := f.OnChange(func() {
		p := f.Policy()
		mu.Lock()
		if pool, ok := p.PoolOf(netip.MustParseAddr("198.18.0.100")); ok {
			seen = append(seen, pool.Name)
		} else {
			seen = append(seen, "")
		}
		mu.Unlock()
		calls <- struct{}{}
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, i := range f.all() {
		go i.RunWithContext(ctx)
	}
	if !cache.WaitForCacheSync(ctx.Done(), f.HasSynced) {
		t.Fatal("caches did not sync")
	}
	wait := func(what string) {
		t.Helper()
		select {
		case <-calls:
		case <-time.After(5 * time.Second):
			t.Fatalf("no change told for %s", what)
		}
	}
	eip := &v1alpha2.Eip{
		ObjectMeta: metav1.ObjectMeta{Name: "main", UID: "u1", ResourceVersion: "1"},
		Spec:       v1alpha2.EipSpec{Address: "198.18.0.100-198.18.0.109", Protocol: v1alpha2.ProtocolLayer2},
	}
	eipW.Add(eip)
	wait("a new pool")

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u2", ResourceVersion: "1"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.100"}}}}
	nodeW.Add(node)
	wait("a new node")
	if r, ok := f.Policy().Reserved(netip.MustParseAddr("198.18.0.100")); !ok || r.Class != "node" {
		t.Errorf("the node's address is not reserved: %v %v", r, ok)
	}

	// A heartbeat changes nothing the policy reads: no call, same policy.
	before := f.Policy()
	hb := node.DeepCopy()
	hb.ResourceVersion = "2"
	hb.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	nodeW.Modify(hb)
	select {
	case <-calls:
		t.Error("a node heartbeat was told as a change")
	case <-time.After(300 * time.Millisecond):
	}
	if f.Policy() != before {
		t.Error("a heartbeat rebuilt the policy")
	}

	renamed := eip.DeepCopy()
	renamed.ResourceVersion = "2"
	renamed.Spec.Address = "198.18.0.110-198.18.0.119"
	eipW.Modify(renamed)
	wait("a changed pool")

	mu.Lock()
	defer mu.Unlock()
	want := []string{"main", "main", ""}
	if len(seen) != len(want) {
		t.Fatalf("consumers saw %q, want %q", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("consumer %d saw pool %q for 198.18.0.100, want %q", i, seen[i], want[i])
		}
	}
}

func TestTransformDecodesPortersKindsOnce(t *testing.T) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&v1alpha2.Eip{
		TypeMeta:   metav1.TypeMeta{APIVersion: "network.kubesphere.io/v1alpha2", Kind: "Eip"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec:       v1alpha2.EipSpec{Address: "198.18.0.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Transform(&unstructured.Unstructured{Object: u})
	if err != nil {
		t.Fatal(err)
	}
	e, ok := got.(*v1alpha2.Eip)
	if !ok {
		t.Fatalf("Transform gave %T, want *v1alpha2.Eip", got)
	}
	if e.Spec.Address != "198.18.0.1" || e.ManagedFields != nil {
		t.Errorf("decoded %+v", e)
	}
	n := &corev1.Node{Status: corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"x"}}}}}
	if out, _ := Transform(n); out.(*corev1.Node).Status.Images != nil {
		t.Error("node images kept")
	}
}
