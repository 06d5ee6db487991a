// Package endpoints tells the speaker which nodes have a ready endpoint of
// a Service with externalTrafficPolicy Local, the only Services whose
// endpoints the data path reads.
//
// A cluster has about one EndpointSlice per Service, and a speaker that
// cached them all paid for every Service in every namespace on every
// node. Slices are watched here only in the namespaces that hold a served
// Local Service, and a namespace is let go a while after its last one
// leaves, so that a Service flapping between policies does not churn
// watches.
package endpoints

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// ServiceIndex indexes EndpointSlices by "namespace/service".
const ServiceIndex = "porter-service"

// Indexers are the indexers a namespace's EndpointSlice informer needs.
func Indexers() cache.Indexers {
	return cache.Indexers{ServiceIndex: func(obj any) ([]string, error) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return nil, nil
		}
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			return nil, nil
		}
		return []string{s.Namespace + "/" + name}, nil
	}}
}

// Watch keeps the EndpointSlices of the namespaces it is told to want.
type Watch struct {
	newInformer func(namespace string) (cache.SharedIndexInformer, error)
	changed     func()
	linger      time.Duration
	log         *slog.Logger

	mu sync.Mutex
	ns map[string]*watched
}

type watched struct {
	inf  cache.SharedIndexInformer
	stop chan struct{}
	// unwanted is when it stopped being wanted; zero while it is.
	unwanted time.Time
}

// New is a Watch that makes a namespace's informer with newInformer, calls
// changed after every change to a watched slice and when a new namespace
// has synced, and lets a namespace go linger after it is last wanted.
func New(newInformer func(namespace string) (cache.SharedIndexInformer, error), changed func(), linger time.Duration, log *slog.Logger) *Watch {
	return &Watch{newInformer: newInformer, changed: changed, linger: linger, log: log, ns: map[string]*watched{}}
}

// Want watches each of namespaces, and lets go of the others that have
// gone unwanted for longer than the linger time.
func (w *Watch) Want(namespaces map[string]bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	var errs []string
	for ns := range namespaces {
		if wt, ok := w.ns[ns]; ok {
			wt.unwanted = time.Time{}
			continue
		}
		wt, err := w.start(ns)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		w.ns[ns] = wt
	}
	for ns, wt := range w.ns {
		if namespaces[ns] {
			continue
		}
		if wt.unwanted.IsZero() {
			wt.unwanted = now
		} else if now.Sub(wt.unwanted) >= w.linger {
			close(wt.stop)
			delete(w.ns, ns)
			w.log.Debug("stopped watching endpoints", "namespace", ns)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("watch endpoints: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (w *Watch) start(ns string) (*watched, error) {
	inf, err := w.newInformer(ns)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	if err := inf.AddIndexers(Indexers()); err != nil {
		return nil, fmt.Errorf("namespace %s: index: %w", ns, err)
	}
	// Changes before the first sync are told by the sync itself.
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.changedIfSynced(inf) },
		UpdateFunc: func(any, any) { w.changedIfSynced(inf) },
		DeleteFunc: func(any) { w.changedIfSynced(inf) },
	}
	if _, err := inf.AddEventHandler(h); err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	wt := &watched{inf: inf, stop: make(chan struct{})}
	go inf.Run(wt.stop)
	go func() {
		if cache.WaitForCacheSync(wt.stop, inf.HasSynced) {
			w.changed()
		}
	}()
	w.log.Debug("watching endpoints", "namespace", ns)
	return wt, nil
}

func (w *Watch) changedIfSynced(inf cache.SharedIndexInformer) {
	if inf.HasSynced() {
		w.changed()
	}
}

// Sync waits until every namespace wanted so far has synced, or ctx ends.
func (w *Watch) Sync(ctx context.Context) bool {
	w.mu.Lock()
	var synced []cache.InformerSynced
	for _, wt := range w.ns {
		synced = append(synced, wt.inf.HasSynced)
	}
	w.mu.Unlock()
	return cache.WaitForCacheSync(ctx.Done(), synced...)
}

// ReadyNodes are the nodes with a ready endpoint of the Service key
// ("namespace/name"). known is false while its namespace is not watched
// or not yet synced.
func (w *Watch) ReadyNodes(key string) (nodes []string, known bool) {
	ns, _, _ := strings.Cut(key, "/")
	w.mu.Lock()
	wt := w.ns[ns]
	w.mu.Unlock()
	if wt == nil || !wt.inf.HasSynced() {
		return nil, false
	}
	objs, err := wt.inf.GetIndexer().ByIndex(ServiceIndex, key)
	if err != nil {
		return nil, false
	}
	for _, o := range objs {
		for _, ep := range o.(*discoveryv1.EndpointSlice).Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				nodes = append(nodes, *ep.NodeName)
			}
		}
	}
	return nodes, true
}

// Watched are the namespaces watched now.
func (w *Watch) Watched() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.ns))
	for ns := range w.ns {
		out = append(out, ns)
	}
	return out
}

// Close stops every watch.
func (w *Watch) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ns, wt := range w.ns {
		close(wt.stop)
		delete(w.ns, ns)
	}
}
