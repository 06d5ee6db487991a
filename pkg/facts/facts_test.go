package facts

import (
	"context"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apiclient"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/jsonprune"
	"github.com/porterlb/porter/pkg/lbservice"
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

func TestTransformDropsWhatNoOneReads(t *testing.T) {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: "{}", "keep": "me"}},
		Status: corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"x"}}}},
	}
	out, err := Transform(n)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Node)
	if got.Status.Images != nil || got.ManagedFields != nil || got.Annotations[corev1.LastAppliedConfigAnnotation] != "" || got.Annotations["keep"] != "me" {
		t.Errorf("Transform kept or dropped the wrong fields: %+v", got)
	}
}

// Lean may drop anything the data path does not read, and nothing it
// does: each kind decodes the same before and after.
func TestLeanKeepsWhatTheDataPathReads(t *testing.T) {
	ready, notReady := true, false
	node1, node2 := "node1", "node2"
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node1", UID: "u1", ResourceVersion: "7",
			Labels:      map[string]string{"zone": "a"},
			Annotations: map[string]string{v1alpha2.Layer2Annotation: "192.0.2.10", "big": strings.Repeat("x", 4096)}},
		Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.1.0/24"}},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.1"}, {Type: corev1.NodeExternalIP, Address: "198.51.100.1"}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Images:     []corev1.ContainerImage{{Names: []string{"img"}}},
			Capacity:   corev1.ResourceList{},
		},
	}
	eip := &v1alpha2.Eip{
		ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "pu", ResourceVersion: "3", Labels: map[string]string{"l": "v"}, Annotations: map[string]string{"a": "b"}},
		Spec:       v1alpha2.EipSpec{Address: "198.18.0.0/28", Protocol: "layer2", Interface: "eth0"},
		Status:     v1alpha2.EipStatus{Usage: 1, Used: map[string]string{"198.18.0.1": "default/a"}},
	}
	nics := &v1alpha1.NodeNICs{
		ObjectMeta: metav1.ObjectMeta{Name: "node1", UID: "ru", ResourceVersion: "9"},
		Status: v1alpha1.NodeNICsStatus{
			NICs:      []v1alpha1.NIC{{Name: "eth0", MAC: "02:00:00:00:00:01", Up: true, Carrier: true, Addresses: []string{"192.0.2.1/24"}}},
			Gateways:  []string{"192.0.2.254"},
			Conflicts: []v1alpha1.AddressConflict{{Address: "198.18.0.3", MAC: "02:00:00:00:00:09"}},
			UpdatedAt: metav1.Now(),
			Speaker: &v1alpha1.SpeakerStatus{MemberAddress: "192.0.2.1:7947", Members: []string{"node1", "node2"},
				Addresses: []v1alpha1.AnnouncedAddress{{Address: "198.18.0.1", Interface: "eth0"}}},
		},
	}
	apiSlice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		Endpoints:  []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.5"}}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "web-x", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web", "other": "x"},
			Annotations: map[string]string{"a": "b"}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.5"}, NodeName: &node1, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			{Addresses: []string{"10.244.2.5"}, NodeName: &node2, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}},
		},
	}

	lean := func(o any) any {
		t.Helper()
		out, err := Lean(o)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	wantNode := addrpolicy.NodeFromObject(node)
	leanNode := lean(node.DeepCopy()).(*addrpolicy.DecodedNode)
	if !reflect.DeepEqual(leanNode.Decoded(), wantNode) || leanNode.UID != "u1" || leanNode.ResourceVersion != "7" {
		t.Errorf("node after Lean is %+v, want %+v with its UID and version", leanNode, wantNode)
	}
	nodes, _ := fakeInformer(t, &corev1.Node{}, &corev1.NodeList{})
	if err := nodes.GetStore().Add(leanNode); err != nil {
		t.Fatal(err)
	}
	if got, memo := decodeAll(nodes.GetStore(), nil, addrpolicy.NodeFromObject); len(got) != 1 || !reflect.DeepEqual(got[0], wantNode) || len(memo) != 0 {
		t.Errorf("a decoded node reads as %+v (memo %d), want it as it is, unmemoized", got, len(memo))
	}
	if _, ok, _ := nodes.GetStore().GetByKey("node1"); !ok {
		t.Error("a decoded node is not keyed by its name")
	}
	heartbeat := node.DeepCopy()
	heartbeat.ResourceVersion = "8"
	heartbeat.Status.Conditions[0].LastHeartbeatTime = metav1.Now()
	if Changes(leanNode, lean(heartbeat)) {
		t.Error("a heartbeat changes the decoded node")
	}
	moved := node.DeepCopy()
	moved.Status.Addresses[0].Address = "192.0.2.2"
	if !Changes(leanNode, lean(moved)) {
		t.Error("a new InternalIP does not change the decoded node")
	}
	svc := lean(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}})
	if s, ok := svc.(*lbservice.Summary); !ok || s.Key != "shop/web" {
		t.Errorf("a Service after Lean is %+v, want its summary", svc)
	}
	// Pools and reports are cached as the decoded model alone, keyed by
	// name, and read back as they are, with no memo beside them.
	wantPool := addrpolicy.PoolFromEip(eip.DeepCopy())
	leanPool := lean(eip.DeepCopy()).(*addrpolicy.DecodedPool)
	if !reflect.DeepEqual(leanPool.Decoded(), wantPool) || leanPool.UID != "pu" || leanPool.ResourceVersion != "3" {
		t.Errorf("pool after Lean is %+v, want %+v with its UID and version", leanPool, wantPool)
	}
	pools, _ := fakeInformer(t, &v1alpha2.Eip{}, &v1alpha2.EipList{})
	if err := pools.GetStore().Add(leanPool); err != nil {
		t.Fatal(err)
	}
	if got, memo := decodeAll(pools.GetStore(), nil, addrpolicy.PoolFromEip); len(got) != 1 || !reflect.DeepEqual(got[0], wantPool) || memo != nil {
		t.Errorf("a decoded pool reads as %+v (memo %d), want it as it is, unmemoized", got, len(memo))
	}
	if _, ok, _ := pools.GetStore().GetByKey("p"); !ok {
		t.Error("a decoded pool is not keyed by its name")
	}
	wantReport := addrpolicy.ReportFromNodeNICs(nics)
	wantReport.Announced = nil // status reads it; the data path does not
	leanReport := lean(nics.DeepCopy()).(*addrpolicy.DecodedReport)
	if !reflect.DeepEqual(leanReport.Decoded(), wantReport) || leanReport.UID != "ru" || leanReport.ResourceVersion != "9" {
		t.Errorf("report after Lean is %+v, want %+v with its UID and version", leanReport, wantReport)
	}
	reports, _ := fakeInformer(t, &v1alpha1.NodeNICs{}, &v1alpha1.NodeNICsList{})
	if err := reports.GetStore().Add(leanReport); err != nil {
		t.Fatal(err)
	}
	if got, memo := decodeAll(reports.GetStore(), nil, addrpolicy.ReportFromNodeNICs); len(got) != 1 || !reflect.DeepEqual(got[0], wantReport) || memo != nil {
		t.Errorf("a decoded report reads as %+v (memo %d), want it as it is, unmemoized", got, len(memo))
	}
	if _, ok, _ := reports.GetStore().GetByKey("node1"); !ok {
		t.Error("a decoded report is not keyed by its node's name")
	}
	statusWrite := eip.DeepCopy()
	statusWrite.ResourceVersion = "4"
	statusWrite.Status.Usage = 2
	if Changes(leanPool, lean(statusWrite)) {
		t.Error("a pool status write changes the decoded pool")
	}
	grown := eip.DeepCopy()
	grown.Spec.Address = "198.18.0.0/27"
	if !Changes(leanPool, lean(grown)) {
		t.Error("a wider range does not change the decoded pool")
	}
	gossip := nics.DeepCopy()
	gossip.Status.Speaker.MemberAddress = "192.0.2.1:7948"
	gossip.Status.Speaker.Members = []string{"node1"}
	if Changes(leanReport, lean(gossip)) {
		t.Error("a speaker's gossip status changes the decoded report")
	}
	conflict := nics.DeepCopy()
	conflict.Status.Conflicts = append(conflict.Status.Conflicts, v1alpha1.AddressConflict{Address: "198.18.0.4", MAC: "02:00:00:00:00:0a"})
	if !Changes(leanReport, lean(conflict)) {
		t.Error("a new conflict does not change the decoded report")
	}
	apiInf, _ := fakeInformer(t, &discoveryv1.EndpointSlice{}, &discoveryv1.EndpointSliceList{})
	if err := apiInf.GetStore().Add(lean(apiSlice.DeepCopy())); err != nil {
		t.Fatal(err)
	}
	if got := APIServerAddrs(apiInf); len(got) != 1 || got[0] != netip.MustParseAddr("192.0.2.5") {
		t.Errorf("API server addresses after Lean: %v", got)
	}
	ls := lean(slice.DeepCopy()).(*discoveryv1.EndpointSlice)
	if ls.Labels[discoveryv1.LabelServiceName] != "web" || len(ls.Labels) != 1 || ls.Annotations != nil {
		t.Errorf("slice metadata after Lean: %+v", ls.ObjectMeta)
	}
	if len(ls.Endpoints) != 2 || *ls.Endpoints[0].NodeName != "node1" || !*ls.Endpoints[0].Conditions.Ready ||
		*ls.Endpoints[1].Conditions.Ready || ls.Endpoints[0].Addresses != nil {
		t.Errorf("slice endpoints after Lean: %+v", ls.Endpoints)
	}
	if !isAPIServerSlice(lean(apiSlice.DeepCopy()).(*discoveryv1.EndpointSlice)) {
		t.Error("the API server's slice is no longer known as such after Lean")
	}
}

// What LeanUnread leaves undecoded, Lean never reads: a pool and a report
// with every status field set come out of Lean the same, decoded whole or
// without those fields.
func TestLeanUnreadIsUnread(t *testing.T) {
	eip := &v1alpha2.Eip{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha2.GroupVersion.String(), Kind: "Eip"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "pu", ResourceVersion: "3", Annotations: map[string]string{v1alpha2.DefaultEipAnnotation: "true"}},
		Spec:       v1alpha2.EipSpec{Address: "198.18.0.0/28", Protocol: v1alpha2.ProtocolLayer2, Interface: "eth0"},
		Status: v1alpha2.EipStatus{Occupied: true, Usage: 1, PoolSize: 16, Used: map[string]string{"198.18.0.1": "default/a"},
			FirstIP: "198.18.0.0", LastIP: "198.18.0.15", Ready: true, V4: true,
			Conflicts: []v1alpha2.EipConflict{{Address: "198.18.0.3", Reason: "is answered on the wire by another host", MAC: "02:00:00:00:00:09"}}},
	}
	nics := &v1alpha1.NodeNICs{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "NodeNICs"},
		ObjectMeta: metav1.ObjectMeta{Name: "node1", UID: "ru", ResourceVersion: "9"},
		Status: v1alpha1.NodeNICsStatus{
			NICs:      []v1alpha1.NIC{{Name: "eth0", MAC: "02:00:00:00:00:01", Up: true, Carrier: true, Addresses: []string{"192.0.2.1/24"}}},
			Primary:   "eth0",
			Gateways:  []string{"192.0.2.254"},
			Conflicts: []v1alpha1.AddressConflict{{Address: "198.18.0.3", MAC: "02:00:00:00:00:09"}},
			UpdatedAt: metav1.Now(),
			Speaker: &v1alpha1.SpeakerStatus{MemberAddress: "192.0.2.1:7947", Members: []string{"node1", "node2"}, Announcing: 1,
				Addresses:  []v1alpha1.AnnouncedAddress{{Address: "198.18.0.1", Interface: "eth0"}},
				MemberKeys: []string{"sha256:ab"}, UnknownMembers: []string{"x: no node"}, Version: "v1"},
		},
	}
	// A status field added later must be set here too, or this test
	// would not see Lean start to read it.
	for _, v := range []any{eip.Status, nics.Status, *nics.Status.Speaker} {
		rv := reflect.ValueOf(v)
		for i := range rv.NumField() {
			if rv.Field(i).IsZero() {
				t.Fatalf("%s.%s is not set in this test", rv.Type().Name(), rv.Type().Field(i).Name)
			}
		}
	}
	s, err := apiclient.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	dec := serializer.NewCodecFactory(s).UniversalDeserializer()
	for _, tc := range []struct {
		kind apiclient.Kind
		obj  runtime.Object
	}{{apiclient.Eips, eip}, {apiclient.NodeNICs, nics}} {
		doc, err := json.Marshal(tc.obj)
		if err != nil {
			t.Fatal(err)
		}
		var paths []jsonprune.Path
		for _, p := range LeanUnread(tc.kind) {
			paths = append(paths, jsonprune.ParsePath(p))
		}
		if len(paths) == 0 {
			t.Fatalf("%s: LeanUnread names nothing", tc.kind.Name())
		}
		pruned, err := jsonprune.Null(doc, paths...)
		if err != nil {
			t.Fatal(err)
		}
		if len(pruned) >= len(doc) {
			t.Fatalf("%s: nothing was left out: %s", tc.kind.Name(), pruned)
		}
		whole, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		without, _, err := dec.Decode(pruned, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := Lean(whole)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Lean(without)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: Lean reads what LeanUnread leaves out:\nwhole   %+v\nwithout %+v", tc.kind.Name(), a, b)
		}
	}
	for _, k := range []apiclient.Kind{apiclient.Services, apiclient.Nodes, apiclient.EndpointSlices} {
		if p := LeanUnread(k); p != nil {
			t.Errorf("%s is read as protobuf, which is decoded whole, yet LeanUnread names %v", k.Name(), p)
		}
	}
}
