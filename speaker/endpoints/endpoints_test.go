package endpoints

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// listOnly makes the reflector list, then watch: the fake watch cannot
// stream the initial list as a real API server does.
type listOnly struct{ *cache.ListWatch }

func (listOnly) IsWatchListSemanticsUnSupported() bool { return true }

func slice(ns, svc, name string, nodes map[string]bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1",
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}}
	for n, ready := range nodes {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{NodeName: &n, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return s
}

// TestWatchFollowsWantedNamespaces runs client-go's own informers over
// lists the test gives, one per namespace.
func TestWatchFollowsWantedNamespaces(t *testing.T) {
	lists := map[string][]discoveryv1.EndpointSlice{
		"shop": {*slice("shop", "web", "web-1", map[string]bool{"node1": true, "node2": false})},
		"ops":  {*slice("ops", "dns", "dns-1", map[string]bool{"node3": true})},
	}
	var started, changed atomic.Int32
	newInformer := func(ns string) (cache.SharedIndexInformer, error) {
		started.Add(1)
		lw := &cache.ListWatch{
			ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
				return &discoveryv1.EndpointSliceList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: lists[ns]}, nil
			},
			WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
				return watch.NewFake(), nil
			},
		}
		return cache.NewSharedIndexInformer(listOnly{lw}, &discoveryv1.EndpointSlice{}, 0, cache.Indexers{}), nil
	}
	w := New(newInformer, func() { changed.Add(1) }, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer w.Close()

	if _, known := w.ReadyNodes("shop/web"); known {
		t.Fatal("endpoints known in a namespace never wanted")
	}
	if err := w.Want(map[string]bool{"shop": true}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !w.Sync(ctx) {
		t.Fatal("the wanted namespace never synced")
	}
	nodes, known := w.ReadyNodes("shop/web")
	if !known || !slices.Equal(nodes, []string{"node1"}) {
		t.Errorf("shop/web: ready nodes %v (known %v), want [node1]", nodes, known)
	}
	if nodes, known := w.ReadyNodes("shop/none"); !known || len(nodes) != 0 {
		t.Errorf("a Service with no slice in a watched namespace: %v (known %v), want none, known", nodes, known)
	}
	if _, known := w.ReadyNodes("ops/dns"); known {
		t.Error("endpoints known in a namespace not wanted: its slices were cached")
	}
	for deadline := time.Now().Add(5 * time.Second); changed.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no change was told after the namespace synced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Wanting it again starts nothing new.
	if err := w.Want(map[string]bool{"shop": true}); err != nil {
		t.Fatal(err)
	}
	if started.Load() != 1 {
		t.Errorf("%d informers started for one namespace", started.Load())
	}
}

func TestWatchLetsUnwantedNamespacesGoAfterLinger(t *testing.T) {
	newInformer := func(string) (cache.SharedIndexInformer, error) {
		lw := &cache.ListWatch{
			ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
				return &discoveryv1.EndpointSliceList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}, nil
			},
			WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return watch.NewFake(), nil },
		}
		return cache.NewSharedIndexInformer(listOnly{lw}, &discoveryv1.EndpointSlice{}, 0, cache.Indexers{}), nil
	}
	linger := 50 * time.Millisecond
	w := New(newInformer, func() {}, linger, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer w.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Want(map[string]bool{"a": true, "b": true}))
	must(w.Want(map[string]bool{"a": true}))
	if got := w.Watched(); len(got) != 2 {
		t.Fatalf("b let go at once: watched %v", got)
	}
	time.Sleep(linger)
	must(w.Want(map[string]bool{"a": true}))
	if got := w.Watched(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("after the linger time, watched %v; want [a]", got)
	}
	// Wanted again within the linger time: kept.
	must(w.Want(map[string]bool{}))
	must(w.Want(map[string]bool{"a": true}))
	time.Sleep(linger)
	must(w.Want(map[string]bool{"a": true}))
	if got := w.Watched(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("a namespace wanted again was let go: watched %v", got)
	}
}
