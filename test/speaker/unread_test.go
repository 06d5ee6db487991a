package speaker

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/porterlb/porter/pkg/apiclient"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/facts"
	"github.com/porterlb/porter/test/lab"
)

// The speaker's caches read pools and NIC reports from a real API server
// without the lists it never uses, in the first read (the API server
// streams it in the watch), in a plain list, and in every watch event
// after, while a cache that reads them whole still sees the lists.
func TestSpeakerCachesLeaveUnreadListsUndecoded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dc, err := dynamic.NewForConfig(env.Cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	api, err := apiclient.New(env.Cluster.Config)
	if err != nil {
		t.Fatal(err)
	}

	report := &v1alpha1.NodeNICs{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "NodeNICs"},
		ObjectMeta: metav1.ObjectMeta{Name: "unread-report"},
		Status: v1alpha1.NodeNICsStatus{
			NICs:      []v1alpha1.NIC{{Name: "eth0", MAC: "02:00:00:00:00:01", Up: true, Carrier: true, Addresses: []string{"192.0.2.1/24"}}},
			Conflicts: []v1alpha1.AddressConflict{{Address: "198.51.100.7", MAC: "02:00:00:00:00:09", Since: metav1.Now()}},
			UpdatedAt: metav1.Now(),
			Speaker:   &v1alpha1.SpeakerStatus{Members: []string{"a", "b"}, Announcing: 1, Addresses: []v1alpha1.AnnouncedAddress{{Address: "198.51.100.1", Interface: "eth0"}}},
		},
	}
	pool := &v1alpha2.Eip{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha2.GroupVersion.String(), Kind: "Eip"},
		ObjectMeta: metav1.ObjectMeta{Name: "unread-pool"},
		Spec:       v1alpha2.EipSpec{Address: "198.51.100.0/28", Protocol: v1alpha2.ProtocolLayer2},
		Status:     v1alpha2.EipStatus{Usage: 1, PoolSize: 16, Used: map[string]string{"198.51.100.1": "default/a"}},
	}
	writeWithStatus(ctx, t, dc, v1alpha1.NodeNICsResource, report)
	writeWithStatus(ctx, t, dc, v1alpha2.EipResource, pool)

	whole, lean := informers(ctx, t, api, apiclient.NodeNICs, report.Name)
	check := func(when string, members []string, addresses int) {
		t.Helper()
		w := cached[*v1alpha1.NodeNICs](t, whole, report.Name)
		l := cached[*v1alpha1.NodeNICs](t, lean, report.Name)
		if w.Status.Speaker == nil || len(w.Status.Speaker.Addresses) != addresses {
			t.Fatalf("%s: the whole report's speaker status is %+v, want %d addresses", when, w.Status.Speaker, addresses)
		}
		if l.Status.Speaker == nil || l.Status.Speaker.Addresses != nil {
			t.Errorf("%s: the speaker's cache decoded the announced addresses: %+v", when, l.Status.Speaker)
		} else if !slices.Equal(l.Status.Speaker.Members, members) || l.Status.Speaker.Announcing != addresses {
			t.Errorf("%s: the speaker's cache lost the members or the count: %+v", when, l.Status.Speaker)
		}
		if !reflect.DeepEqual(l.Status.NICs, w.Status.NICs) || !reflect.DeepEqual(l.Status.Conflicts, w.Status.Conflicts) || len(l.Status.Conflicts) != 1 {
			t.Errorf("%s: the speaker's cache lost the NICs or the conflicts: %+v", when, l.Status)
		}
	}
	check("first read", []string{"a", "b"}, 1)
	listed := list[*v1alpha1.NodeNICsList](ctx, t, api, apiclient.NodeNICs, report.Name)
	if len(listed.Items) != 1 || listed.Items[0].Status.Speaker == nil || listed.Items[0].Status.Speaker.Addresses != nil ||
		len(listed.Items[0].Status.Speaker.Members) != 2 || len(listed.Items[0].Status.NICs) != 1 {
		t.Errorf("a plain list, as the reflector falls back to, decoded the announced addresses or lost more: %+v", listed.Items)
	}
	report.Status.Speaker.Members = []string{"a", "b", "c"}
	report.Status.Speaker.Addresses = append(report.Status.Speaker.Addresses, v1alpha1.AnnouncedAddress{Address: "198.51.100.2", Interface: "eth0"})
	report.Status.Speaker.Announcing = 2
	writeStatus(ctx, t, dc, v1alpha1.NodeNICsResource, report)
	waitFor(ctx, t, "the report's new members in the speaker's cache", func() bool {
		l := cached[*v1alpha1.NodeNICs](t, lean, report.Name)
		w := cached[*v1alpha1.NodeNICs](t, whole, report.Name)
		return l.Status.Speaker != nil && len(l.Status.Speaker.Members) == 3 && w.Status.Speaker != nil && len(w.Status.Speaker.Members) == 3
	})
	check("watched", []string{"a", "b", "c"}, 2)

	whole, lean = informers(ctx, t, api, apiclient.Eips, pool.Name)
	checkPool := func(when string, used int) {
		t.Helper()
		w := cached[*v1alpha2.Eip](t, whole, pool.Name)
		l := cached[*v1alpha2.Eip](t, lean, pool.Name)
		if len(w.Status.Used) != used {
			t.Fatalf("%s: the whole pool's status is %+v, want %d used", when, w.Status, used)
		}
		if !reflect.DeepEqual(l.Status, v1alpha2.EipStatus{}) {
			t.Errorf("%s: the speaker's cache decoded the pool's status: %+v", when, l.Status)
		}
		if !reflect.DeepEqual(l.Spec, w.Spec) || !reflect.DeepEqual(l.Annotations, w.Annotations) {
			t.Errorf("%s: the speaker's cache lost the spec or annotations: %+v", when, l.ObjectMeta)
		}
	}
	checkPool("first read", 1)
	if pools := list[*v1alpha2.EipList](ctx, t, api, apiclient.Eips, pool.Name); len(pools.Items) != 1 ||
		!reflect.DeepEqual(pools.Items[0].Status, v1alpha2.EipStatus{}) || pools.Items[0].Spec.Address != pool.Spec.Address {
		t.Errorf("a plain list, as the reflector falls back to, decoded the pool's status or lost its spec: %+v", pools.Items)
	}
	pool.Status.Used["198.51.100.2"] = "default/b"
	pool.Status.Usage = 2
	writeStatus(ctx, t, dc, v1alpha2.EipResource, pool)
	waitFor(ctx, t, "the pool's new status in the whole cache", func() bool {
		return len(cached[*v1alpha2.Eip](t, whole, pool.Name).Status.Used) == 2
	})
	patch := []byte(`{"metadata":{"annotations":{"` + v1alpha2.DefaultEipAnnotation + `":"true"}}}`)
	if _, err := dc.Resource(v1alpha2.EipResource).Patch(ctx, pool.Name, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the pool's annotation in both caches", func() bool {
		return cached[*v1alpha2.Eip](t, lean, pool.Name).Annotations[v1alpha2.DefaultEipAnnotation] == "true" &&
			cached[*v1alpha2.Eip](t, whole, pool.Name).Annotations[v1alpha2.DefaultEipAnnotation] == "true"
	})
	checkPool("watched", 2)
}

// informers are two caches of the one object name of kind k: one reads it
// whole, the other as the speaker does.
func informers(ctx context.Context, t *testing.T, api *apiclient.Client, k apiclient.Kind, name string) (whole, lean cache.SharedIndexInformer) {
	t.Helper()
	r, err := api.Resource(k).Without(facts.LeanUnread(k)...)
	if err != nil {
		t.Fatal(err)
	}
	whole, lean = api.Resource(k).Informer("", facts.ByName(name)), r.Informer("", facts.ByName(name))
	for _, i := range []cache.SharedIndexInformer{whole, lean} {
		go i.Run(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), whole.HasSynced, lean.HasSynced) {
		t.Fatalf("%s caches did not sync", k.Name())
	}
	return whole, lean
}

// list lists the object name of kind k as the speaker's caches do when
// the API server cannot stream the first list in a watch.
func list[T runtime.Object](ctx context.Context, t *testing.T, api *apiclient.Client, k apiclient.Kind, name string) T {
	t.Helper()
	r, err := api.Resource(k).Without(facts.LeanUnread(k)...)
	if err != nil {
		t.Fatal(err)
	}
	o, err := r.ListWatch("", facts.ByName(name)).ListWithContext(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list %s: %v", k.Name(), err)
	}
	v, ok := o.(T)
	if !ok {
		t.Fatalf("listed %s as %T", k.Name(), o)
	}
	return v
}

func cached[T runtime.Object](t *testing.T, i cache.SharedIndexInformer, name string) T {
	t.Helper()
	o, ok, err := i.GetStore().GetByKey(name)
	if err != nil || !ok {
		t.Fatalf("%s is not cached: %v", name, err)
	}
	v, ok := o.(T)
	if !ok {
		t.Fatalf("%s is cached as %T", name, o)
	}
	return v
}

func waitFor(ctx context.Context, t *testing.T, what string, done func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) { return done(), nil })
	if err != nil {
		t.Fatalf("wait for %s: %v", what, err)
	}
}

// writeWithStatus creates obj, then writes its status, and deletes it when
// the test ends.
func writeWithStatus(ctx context.Context, t *testing.T, dc dynamic.Interface, gvr schema.GroupVersionResource, obj runtime.Object) {
	t.Helper()
	u := toUnstructured(t, obj)
	if _, err := dc.Resource(gvr).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s %s: %v", gvr.Resource, u.GetName(), err)
	}
	lab.Remove(t, gvr.Resource+" "+u.GetName(), func(ctx context.Context) error {
		return dc.Resource(gvr).Delete(ctx, u.GetName(), metav1.DeleteOptions{})
	})
	writeStatus(ctx, t, dc, gvr, obj)
}

// writeStatus replaces the status of obj with its own.
func writeStatus(ctx context.Context, t *testing.T, dc dynamic.Interface, gvr schema.GroupVersionResource, obj runtime.Object) {
	t.Helper()
	u := toUnstructured(t, obj)
	cur, err := dc.Resource(gvr).Get(ctx, u.GetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Object["status"] = u.Object["status"]
	if _, err := dc.Resource(gvr).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("write the status of %s %s: %v", gvr.Resource, u.GetName(), err)
	}
}

func toUnstructured(t *testing.T, obj runtime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}
