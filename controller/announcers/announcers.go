// Package announcers records on each Porter Service which node answers for
// its address (the porter.kubesphere.io/announcer annotation), from what
// the speakers publish in their NodeNICs. The speakers may not write
// Services at all, so the controller writes it for them.
//
// The annotation is for people: a tenant can write it too, so no component
// reads it back to decide anything.
package announcers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/facts"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/pkg/reports"
)

// ByIngressIP indexes Services by the address in their status.
const ByIngressIP = "porter-ingress-ip"

// Indexers are what the Services informer needs for Run; add them before
// it starts.
func Indexers() cache.Indexers {
	return cache.Indexers{ByIngressIP: func(o any) ([]string, error) {
		svc, ok := o.(*corev1.Service)
		if !ok {
			return nil, nil
		}
		if ip := lbservice.IngressIP(svc); ip.IsValid() {
			return []string{ip.String()}, nil
		}
		return nil, nil
	}}
}

// Index maps each announced address to who announces it.
type Index map[netip.Addr]lbservice.Announcer

// Build reads who announces what from the speakers' NodeNICs. A dead
// speaker's last report still names what it answered for; it is left
// out when no other speaker sees it alive (reports.Liveness), so the node
// that took over is named. When two live nodes say they announce one
// address (for a moment, during a move), the first by name is kept, so
// that the result does not depend on list order.
func Build(nics []*v1alpha1.NodeNICs) Index {
	sorted := append([]*v1alpha1.NodeNICs(nil), nics...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	byName := make(map[string]*v1alpha1.NodeNICs, len(sorted))
	for _, n := range sorted {
		byName[n.Name] = n
	}
	live := reports.Live(byName, nil)
	idx := Index{}
	for _, n := range sorted {
		if n.Status.Speaker == nil || live.Stale(n.Name) {
			continue
		}
		for _, a := range n.Status.Speaker.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			if _, ok := idx[ip]; !ok {
				idx[ip] = lbservice.Announcer{IP: ip, Node: n.Name, Interface: a.Interface}
			}
		}
	}
	return idx
}

// Want is the annotation svc should carry: nil to remove it, when the
// Service holds no address or Porter does not serve it (serves). An address nobody announces right now keeps
// the last value, so that a short gap in a speaker's report does not make
// the annotation flap.
func Want(svc *corev1.Service, serves bool, idx Index) (value *string, change bool) {
	cur, has := svc.Annotations[lbservice.AnnouncerAnnotation]
	ip := lbservice.IngressIP(svc)
	if !ip.IsValid() || !serves {
		return nil, has
	}
	a, ok := idx[ip]
	if !ok {
		return nil, false
	}
	v := a.String()
	return &v, !has || cur != v
}

// changed lists the addresses whose announcer differs between two reports.
func changed(old, cur *v1alpha1.NodeNICs) []string {
	at := func(n *v1alpha1.NodeNICs) map[string]string {
		m := map[string]string{}
		if n != nil && n.Status.Speaker != nil {
			for _, a := range n.Status.Speaker.Addresses {
				m[a.Address] = a.Interface
			}
		}
		return m
	}
	o, c := at(old), at(cur)
	var out []string
	for a, i := range c {
		if o[a] != i {
			out = append(out, a)
		}
	}
	for a := range o {
		if _, ok := c[a]; !ok {
			out = append(out, a)
		}
	}
	return out
}

func membersChanged(old, cur *v1alpha1.NodeNICs) bool {
	of := func(n *v1alpha1.NodeNICs) []string {
		if n == nil || n.Status.Speaker == nil {
			return nil
		}
		return n.Status.Speaker.Members
	}
	return !slices.Equal(of(old), of(cur))
}

// Writer keeps the annotation in step until its context ends.
type Writer struct {
	Kube     kubernetes.Interface
	Services cache.SharedIndexInformer // with Indexers
	NodeNICs cache.SharedIndexInformer
	// Facts say which Services are Porter's.
	Facts *facts.Facts
	Log   *slog.Logger
}

// Run writes annotations until ctx ends.
func (w *Writer) Run(ctx context.Context) error {
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 10*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "announcers"})
	defer q.ShutDown()
	addSvc := func(o any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(o); err == nil {
			q.Add(k)
		}
	}
	byIP := func(addr string) {
		objs, err := w.Services.GetIndexer().ByIndex(ByIngressIP, addr)
		if err != nil {
			return
		}
		for _, o := range objs {
			addSvc(o)
		}
	}
	asNICs := func(o any) *v1alpha1.NodeNICs {
		if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = t.Obj
		}
		n, _ := o.(*v1alpha1.NodeNICs)
		return n
	}
	var regs []func()
	defer func() {
		for _, r := range regs {
			r()
		}
	}()
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		fns cache.ResourceEventHandlerFuncs
	}{
		{w.Services, cache.ResourceEventHandlerFuncs{AddFunc: addSvc, UpdateFunc: func(_, n any) { addSvc(n) }}},
		{w.NodeNICs, cache.ResourceEventHandlerFuncs{
			AddFunc: func(o any) {
				for _, a := range changed(nil, asNICs(o)) {
					byIP(a)
				}
			},
			UpdateFunc: func(o, n any) {
				// Who is alive decides whose report counts: a change
				// of view may change the announcer of any address.
				if membersChanged(asNICs(o), asNICs(n)) {
					for _, ip := range w.Services.GetIndexer().ListIndexFuncValues(ByIngressIP) {
						byIP(ip)
					}
					return
				}
				for _, a := range changed(asNICs(o), asNICs(n)) {
					byIP(a)
				}
			},
		}},
	} {
		r, err := h.inf.AddEventHandler(h.fns)
		if err != nil {
			return fmt.Errorf("watch for the announcer annotation: %w", err)
		}
		regs = append(regs, func() { _ = h.inf.RemoveEventHandler(r) })
	}
	if !cache.WaitForCacheSync(ctx.Done(), w.Services.HasSynced, w.NodeNICs.HasSynced) {
		return nil
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				key, quit := q.Get()
				if quit {
					return
				}
				if err := w.sync(ctx, key); err != nil {
					w.Log.Debug("announcer annotation", "service", key, "err", err)
					q.AddRateLimited(key)
				} else {
					q.Forget(key)
				}
				q.Done(key)
			}
		})
	}
	<-ctx.Done()
	q.ShutDown()
	wg.Wait()
	return nil
}

func (w *Writer) index() Index {
	objs := w.NodeNICs.GetStore().List()
	nics := make([]*v1alpha1.NodeNICs, 0, len(objs))
	for _, o := range objs {
		if n, ok := o.(*v1alpha1.NodeNICs); ok {
			nics = append(nics, n)
		}
	}
	return Build(nics)
}

func (w *Writer) sync(ctx context.Context, key string) error {
	o, ok, err := w.Services.GetStore().GetByKey(key)
	if err != nil || !ok {
		return err
	}
	svc, ok := o.(*corev1.Service)
	if !ok {
		return nil
	}
	v, change := Want(svc, w.Facts.Policy().Serves(svc), w.index())
	if !change {
		return nil
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]*string{lbservice.AnnouncerAnnotation: v}}})
	if err != nil {
		return fmt.Errorf("encode the announcer annotation: %w", err)
	}
	// A write to an API server that stopped answering must fail and be
	// retried, not hold the worker.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = w.Kube.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "porter-controller"})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("annotate Service %s: %w", key, err)
	}
	return nil
}
