package allocator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/porterlb/porter/pkg/addr"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/facts"
	"github.com/porterlb/porter/pkg/guard"
	"github.com/porterlb/porter/pkg/lbservice"
)

// Informers are the caches the controller reads besides Facts. They are
// shared with the rest of the controller and started by it.
type Informers struct {
	Services   cache.SharedIndexInformer
	Namespaces cache.SharedIndexInformer
}

// Controller allocates while its replica holds the allocator lease. One
// Controller serves one term of leadership: its table is rebuilt from the
// API at start, so nothing a previous leader did is lost or repeated.
type Controller struct {
	Kube kubernetes.Interface
	Dyn  dynamic.Interface
	Inf  Informers
	// Facts gives the address policy: the pools, and the addresses no
	// Service may get.
	Facts    *facts.Facts
	Recorder record.EventRecorder
	Log      *slog.Logger
	// Workers write Service status in parallel; the table itself is
	// guarded by mu.
	Workers int

	mu      sync.Mutex
	table   *Table
	waiting map[string]bool // Services with no address yet
	dirty   bool            // pool status needs writing
	// statusAt is when pool status was last written.
	statusAt time.Time
	queue    workqueue.TypedRateLimitingInterface[string]
	// guardClock times lockout guard plans from this term's start: a new
	// leader can only delay a rollback, never hasten it.
	guardClock guard.Clock
}

const poolsKey = "\x00pools"

// statusEvery spaces the pools' status writes.
const statusEvery = time.Second

// Run allocates until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if c.table != nil {
		return errors.New("an allocator Controller serves one term; make a new one for the next")
	}
	c.table = NewTable()
	c.waiting = map[string]bool{}
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "allocator"})
	defer c.queue.ShutDown()

	enqueueSvc := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(k)
		}
	}
	enqueuePools := func(any) { c.queue.Add(poolsKey) }
	var regs []func()
	add := func(inf cache.SharedIndexInformer, h cache.ResourceEventHandlerFuncs) error {
		r, err := inf.AddEventHandler(h)
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		regs = append(regs, func() { _ = inf.RemoveEventHandler(r) })
		return nil
	}
	defer func() {
		for _, r := range regs {
			r()
		}
	}()
	if err := add(c.Inf.Services, cache.ResourceEventHandlerFuncs{AddFunc: enqueueSvc, UpdateFunc: func(_, n any) { enqueueSvc(n) }, DeleteFunc: enqueueSvc}); err != nil {
		return err
	}
	if err := add(c.Inf.Namespaces, cache.ResourceEventHandlerFuncs{AddFunc: enqueuePools, UpdateFunc: func(o, n any) {
		if facts.Changes(o, n) {
			enqueuePools(n)
		}
	}, DeleteFunc: enqueuePools}); err != nil {
		return err
	}
	remove, err := c.Facts.OnChange(func() { c.queue.Add(poolsKey) })
	if err != nil {
		return err
	}
	regs = append(regs, remove)
	if !cache.WaitForCacheSync(ctx.Done(), c.Inf.Services.HasSynced, c.Inf.Namespaces.HasSynced, c.Facts.HasSynced) {
		return ctx.Err()
	}
	c.rebuild()
	c.Log.Info("allocator leading", "pools", len(c.table.Pools()))

	workers := max(c.Workers, 1)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	wg.Go(func() { wait.UntilWithContext(ctx, c.writePoolStatus, 200*time.Millisecond) })
	wg.Go(func() { wait.UntilWithContext(ctx, c.enforceGuard, time.Second) })
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	c.Log.Info("allocator stopped leading")
	return nil
}

// rebuild reads pools and holders from the caches. Older Services win an
// address two of them claim, so a restart never moves an established one.
func (c *Controller) rebuild() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.table.SetPools(c.pools())
	svcs := c.services()
	policy := c.Facts.Policy()
	sort.Slice(svcs, func(i, j int) bool {
		if !svcs[i].CreationTimestamp.Equal(&svcs[j].CreationTimestamp) {
			return svcs[i].CreationTimestamp.Before(&svcs[j].CreationTimestamp)
		}
		return lbservice.Key(svcs[i]) < lbservice.Key(svcs[j])
	})
	for _, s := range svcs {
		if !policy.Serves(s) {
			continue
		}
		for i, f := range lbservice.StackOf(s).Families {
			if ip := lbservice.IngressOf(s, f); ip.IsValid() && c.table.PoolOf(ip, lbservice.Pool(s)) != nil {
				c.table.Claim(Slot(lbservice.Key(s), i > 0, f), ip, lbservice.SharingOf(s))
			}
		}
	}
	for _, s := range svcs {
		if policy.Serves(s) {
			c.queue.Add(lbservice.Key(s))
		}
	}
	c.dirty = true
}

func (c *Controller) services() []*corev1.Service {
	var out []*corev1.Service
	for _, o := range c.Inf.Services.GetStore().List() {
		if s, ok := o.(*corev1.Service); ok {
			out = append(out, s)
		}
	}
	return out
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if key == poolsKey {
		c.refreshPools()
		c.queue.Forget(key)
		return true
	}
	if err := c.sync(ctx, key); err != nil {
		c.Log.Warn("allocate", "service", key, "err", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// refreshPools re-reads the pools and retries every Service still
// waiting, since a new or grown pool may serve it now.
//
// Nodes, EndpointSlices and the pools' own status change all the time and
// rarely change a pool. Only a real change re-checks every held address:
// at 10,000 Services, doing it on every heartbeat and every status write
// kept the leader busy without end.
func (c *Controller) refreshPools() {
	next := c.pools()
	c.mu.Lock()
	same := c.table.Same(next)
	if !same {
		c.table.SetPools(next)
		c.dirty = true
	}
	waiting := make([]string, 0, len(c.waiting))
	for k := range c.waiting {
		waiting = append(waiting, k)
	}
	c.mu.Unlock()
	// A namespace's labels may admit a waiting Service to an unchanged
	// pool, so those are retried either way.
	for _, k := range waiting {
		c.queue.Add(k)
	}
	if same {
		return
	}
	// Held addresses may now be refused (a node took one), and whether
	// Porter serves Services without a class may have changed: re-check
	// every LoadBalancer Service that holds an address or names no class.
	for _, s := range c.services() {
		if lbservice.IngressIP(s).IsValid() && lbservice.IsPorter(s) || lbservice.Unclassed(s) {
			c.queue.Add(lbservice.Key(s))
		}
	}
}

func (c *Controller) sync(ctx context.Context, key string) error {
	obj, exists, err := c.Inf.Services.GetStore().GetByKey(key)
	if err != nil {
		return fmt.Errorf("read cache: %w", err)
	}
	if !exists {
		c.release(key)
		return nil
	}
	svc := obj.(*corev1.Service)
	if !c.Facts.Policy().Serves(svc) {
		return c.unassign(ctx, svc)
	}
	base := Request{
		Namespace: svc.Namespace,
		Pool:      lbservice.Pool(svc),
		Share:     lbservice.SharingOf(svc),
	}
	if ns, ok, _ := c.Inf.Namespaces.GetStore().GetByKey(svc.Namespace); ok {
		base.NSLabels = labels.Set(ns.(*corev1.Namespace).Labels)
	}
	requested, err := lbservice.RequestedIP(svc)
	if err != nil {
		c.wait(svc, "InvalidAddress", err.Error())
		return nil
	}
	stack := lbservice.StackOf(svc)
	type slot struct {
		key       string
		before    netip.Addr
		hadBefore bool
		ip        netip.Addr
		pool      *Pool
	}
	var slots []slot
	var failed error
	c.mu.Lock()
	// A Service that stopped being dual-stack lets its second address go.
	for _, f := range []lbservice.Family{4, 6} {
		if len(stack.Families) < 2 || stack.Families[1] != f {
			c.table.Release(Slot(key, true, f))
		}
	}
	for i, f := range stack.Families {
		req := base
		req.Key, req.Family = Slot(key, i > 0, f), f
		req.Current = lbservice.IngressOf(svc, f)
		if requested.IsValid() && (f == 0 || lbservice.FamilyOf(requested) == f) {
			req.RequestedIP = requested
		}
		sl := slot{key: req.Key}
		sl.before, sl.hadBefore = c.table.Held(req.Key)
		sl.ip, sl.pool, err = c.table.Assign(req)
		if err != nil {
			// PreferDualStack takes what it can get; the first family
			// and RequireDualStack need theirs.
			if i == 0 || stack.Required {
				failed = err
				break
			}
			c.table.Release(req.Key)
			continue
		}
		slots = append(slots, sl)
	}
	// undo takes back what this pass assigned, when nothing is written:
	// a Service holds no address its status does not show. Call it with
	// c.mu held.
	undo := func() {
		for _, sl := range slots {
			if !sl.hadBefore || sl.before != sl.ip {
				c.table.Unassign(sl.key, sl.ip)
				if sl.hadBefore {
					c.table.Claim(sl.key, sl.before, base.Share)
				}
			}
		}
	}
	if failed != nil {
		undo()
	}
	c.mu.Unlock()
	if failed != nil {
		reason := "AllocationFailed"
		switch {
		case errors.Is(failed, ErrInUse):
			reason = "AddressInUse"
		case errors.Is(failed, ErrExhausted):
			reason = "PoolExhausted"
		case errors.Is(failed, ErrRefused):
			reason = "AddressRefused"
		case errors.Is(failed, ErrNoPool):
			reason = "NoPool"
		}
		msg := failed.Error()
		if stack.Required && len(slots) > 0 {
			msg = "RequireDualStack needs an address of each family: " + msg
		}
		// A Service that holds an address keeps it in its status while it
		// waits for a new one only if that address is still valid; the
		// table has released nothing, so nothing else can take it.
		c.wait(svc, reason, msg)
		return nil
	}
	ips := make([]netip.Addr, len(slots))
	changed := false
	for i, sl := range slots {
		ips[i] = sl.ip
		changed = changed || !sl.hadBefore || sl.before != sl.ip
	}
	c.mu.Lock()
	delete(c.waiting, key)
	if changed {
		c.dirty = true
	}
	c.mu.Unlock()
	if slices.Equal(lbservice.IngressIPs(svc), ips) {
		return nil
	}
	if err := c.writeIngress(ctx, svc, ips); err != nil {
		c.mu.Lock()
		undo()
		c.mu.Unlock()
		return err
	}
	for _, sl := range slots {
		if !sl.hadBefore || sl.before != sl.ip {
			c.Recorder.Eventf(svc, corev1.EventTypeNormal, "AddressAllocated", "allocated %s from Eip %s", sl.ip, sl.pool.Name)
		}
	}
	return nil
}

func (c *Controller) wait(svc *corev1.Service, reason, msg string) {
	key := lbservice.Key(svc)
	c.mu.Lock()
	first := !c.waiting[key]
	c.waiting[key] = true
	c.mu.Unlock()
	if first {
		c.Recorder.Event(svc, corev1.EventTypeWarning, reason, msg+"; the Service stays pending until this is resolved")
		c.Log.Info("service waits", "service", key, "reason", reason, "detail", msg)
	}
}

// release returns a deleted Service's addresses.
func (c *Controller) release(key string) {
	c.mu.Lock()
	_, ok := c.table.Release(key)
	for _, f := range []lbservice.Family{4, 6} {
		if _, second := c.table.Release(Slot(key, true, f)); second {
			ok = true
		}
	}
	delete(c.waiting, key)
	waiting := make([]string, 0, len(c.waiting))
	for k := range c.waiting {
		waiting = append(waiting, k)
	}
	if ok {
		c.dirty = true
	}
	c.mu.Unlock()
	if ok {
		for _, k := range waiting {
			c.queue.Add(k)
		}
	}
}

// unassign handles a Service that stopped being Porter's: its address goes
// back, and the ingress Porter wrote is cleared.
func (c *Controller) unassign(ctx context.Context, svc *corev1.Service) error {
	key := lbservice.Key(svc)
	c.mu.Lock()
	ip, held := c.table.Held(key)
	c.mu.Unlock()
	if !held {
		return nil
	}
	if lbservice.IngressIP(svc) == ip {
		cp := svc.DeepCopy()
		cp.Status.LoadBalancer.Ingress = nil
		if _, err := c.Kube.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{FieldManager: "porter-allocator"}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("clear status of Service %s: %w", key, err)
		}
		c.Recorder.Eventf(svc, corev1.EventTypeNormal, "AddressReleased", "released %s: the Service is no longer a Porter LoadBalancer", ip)
	}
	c.release(key)
	return nil
}

func (c *Controller) writeIngress(ctx context.Context, svc *corev1.Service, ips []netip.Addr) error {
	cp := svc.DeepCopy()
	cp.Status.LoadBalancer.Ingress = nil
	for _, ip := range ips {
		vip := corev1.LoadBalancerIPModeVIP
		cp.Status.LoadBalancer.Ingress = append(cp.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip.String(), IPMode: &vip})
	}
	_, err := c.Kube.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{FieldManager: "porter-allocator"})
	if err != nil {
		return fmt.Errorf("write %v to the status of Service %s: %w", ips, lbservice.Key(svc), err)
	}
	return nil
}

// pools builds the allocator's view of every layer2 pool from the address
// policy: what each may not give (reserved addresses, and those an older
// pool holds), and what speakers found answered on the wire.
func (c *Controller) pools() []Pool {
	policy := c.Facts.Policy()
	wire := map[netip.Addr]string{}
	for _, r := range c.Facts.Reports() {
		for _, cf := range r.Conflicts {
			wire[cf.IP] = cf.MAC
		}
	}
	var out []Pool
	for _, ap := range policy.Pools() {
		if !ap.Layer2() {
			continue
		}
		p := Pool{Pool: ap, Excluded: map[netip.Addr]string{}, Conflicts: map[netip.Addr]string{}}
		for _, r := range policy.Refusals(&ap) {
			for a := r.Range.First; ; a = a.Next() {
				p.Excluded[a] = r.Reason.Text
				if a == r.Range.Last {
					break
				}
			}
		}
		for a, mac := range wire {
			if ap.Range.Contains(a) {
				p.Conflicts[a] = mac
			}
		}
		out = append(out, p)
	}
	return out
}

// writePoolStatus keeps each layer2 Eip's status exact.
func (c *Controller) writePoolStatus(ctx context.Context) {
	c.mu.Lock()
	// Every speaker and replica receives each write, and at 10,000
	// Services the status lists 10,000 addresses: it is written at most
	// once per statusEvery.
	if !c.dirty || time.Since(c.statusAt) < statusEvery {
		c.mu.Unlock()
		return
	}
	c.dirty = false
	c.statusAt = time.Now()
	type poolStatus struct {
		name   string
		status v1alpha2.EipStatus
	}
	var wants []poolStatus
	for _, p := range c.table.Pools() {
		wants = append(wants, poolStatus{p.Name, c.statusOf(p)})
	}
	c.mu.Unlock()

	failed := false
	for _, w := range wants {
		if err := c.applyStatus(ctx, w.name, w.status); err != nil {
			c.Log.Warn("write pool status", "eip", w.name, "err", err)
			failed = true
		}
	}
	if failed {
		c.mu.Lock()
		c.dirty = true
		c.mu.Unlock()
	}
}

func (c *Controller) statusOf(p *Pool) v1alpha2.EipStatus {
	size := p.Range.Size().Int64()
	used := c.table.Used(p)
	st := v1alpha2.EipStatus{
		Usage:    len(used),
		PoolSize: int(size),
		FirstIP:  p.Range.First.String(),
		LastIP:   p.Range.Last.String(),
		Ready:    !p.Disabled,
		V4:       p.Range.Is4(),
	}
	if len(used) > 0 {
		st.Used = used
	}
	st.Occupied = int64(len(used)+len(p.Excluded)+len(p.Conflicts)) >= size
	st.Conflicts = conflicts(p)
	return st
}

// conflicts lists refused addresses, folding runs with one reason (an
// overlap with another pool) into ranges.
func conflicts(p *Pool) []v1alpha2.EipConflict {
	ips := make([]netip.Addr, 0, len(p.Excluded))
	for a := range p.Excluded {
		ips = append(ips, a)
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
	var out []v1alpha2.EipConflict
	for i := 0; i < len(ips); {
		j := i
		for j+1 < len(ips) && ips[j].Next() == ips[j+1] && p.Excluded[ips[j+1]] == p.Excluded[ips[i]] {
			j++
		}
		a := ips[i].String()
		if j > i {
			a = addr.Range{First: ips[i], Last: ips[j]}.String()
		}
		out = append(out, v1alpha2.EipConflict{Address: a, Reason: p.Excluded[ips[i]]})
		i = j + 1
	}
	wire := make([]netip.Addr, 0, len(p.Conflicts))
	for a := range p.Conflicts {
		wire = append(wire, a)
	}
	sort.Slice(wire, func(i, j int) bool { return wire[i].Less(wire[j]) })
	for _, a := range wire {
		out = append(out, v1alpha2.EipConflict{Address: a.String(), Reason: "is answered on the wire by another host", MAC: p.Conflicts[a]})
	}
	return out
}

func (c *Controller) applyStatus(ctx context.Context, name string, st v1alpha2.EipStatus) error {
	o, ok, err := c.Facts.Eips().GetStore().GetByKey(name)
	if err != nil || !ok {
		return err
	}
	cached, ok := o.(*v1alpha2.Eip)
	if !ok {
		return fmt.Errorf("unexpected %T in the Eip cache", o)
	}
	if reflect.DeepEqual(normal(cached.Status), normal(st)) {
		return nil
	}
	cur := cached.DeepCopy()
	old := map[v1alpha2.EipConflict]bool{}
	for _, cf := range cur.Status.Conflicts {
		old[cf] = true
	}
	cur.Status = st
	// The whole status is replaced without naming a resourceVersion: this
	// leader is its only writer, and the cache is often behind its own
	// last write at thousands of Services, which made every update
	// conflict.
	patch, err := json.Marshal([]map[string]any{{"op": "add", "path": "/status", "value": st}})
	if err != nil {
		return fmt.Errorf("encode status of Eip %s: %w", name, err)
	}
	if _, err := c.Dyn.Resource(v1alpha2.EipResource).Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "porter-allocator"}, "status"); err != nil {
		return fmt.Errorf("update status of Eip %s: %w", name, err)
	}
	// Each refusal is told once, when it first shows in the status.
	for _, cf := range st.Conflicts {
		if old[cf] {
			continue
		}
		if cf.MAC != "" {
			c.Recorder.Eventf(cur, corev1.EventTypeWarning, "AddressConflict", "%s is answered on the wire by %s, a host outside the cluster; Porter does not hand it out or announce it", cf.Address, cf.MAC)
		} else {
			c.Recorder.Eventf(cur, corev1.EventTypeWarning, "AddressReserved", "%s is never handed out or announced: %s", cf.Address, cf.Reason)
		}
	}
	return nil
}

// normal makes empty and nil collections compare equal.
func normal(s v1alpha2.EipStatus) v1alpha2.EipStatus {
	if len(s.Used) == 0 {
		s.Used = nil
	}
	if len(s.Conflicts) == 0 {
		s.Conflicts = nil
	}
	return s
}

// enforceGuard rolls back each guarded change that stood unconfirmed for
// its timeout, timed on this allocator's clock: the operator who made it
// has likely lost access. The plan is first marked as taken over, on the
// version found expired, so that a plugin confirming at that moment learns
// the change is undone instead of reporting it confirmed.
func (c *Controller) enforceGuard(ctx context.Context) {
	plans, bad, err := guard.List(ctx, c.Kube)
	if err != nil {
		c.Log.Warn("read lockout guard plans", "err", err)
		return
	}
	for _, err := range bad {
		c.Log.Warn("ignoring an unreadable lockout guard plan", "err", err)
	}
	for _, a := range c.guardClock.Due(plans, time.Now()) {
		p := a.Plan
		if !p.RollingBack {
			p.RollingBack = true
			taken := a
			if err := taken.Rewrite(ctx, c.Kube, p); err != nil {
				// The plugin extended or confirmed it just now.
				c.Log.Info("lockout guard plan changed as it expired; timing it again", "plan", a.Name, "err", err)
				continue
			}
			a = taken
		}
		c.Log.Warn("lockout guard expired: rolling back", "plan", a.Name, "change", p.Change, "timeout", p.TimeoutOrDefault(), "disableEips", p.DisableEips, "strictARP", p.StrictARP)
		if err := guard.Execute(ctx, c.Kube, c.Dyn, p); err != nil {
			c.Log.Error("roll back guarded change", "plan", a.Name, "err", err)
			continue
		}
		if err := a.Drop(ctx, c.Kube); err != nil {
			c.Log.Warn("clear lockout guard", "err", err)
			continue
		}
		c.Log.Info("rolled back unconfirmed change", "plan", a.Name, "change", p.Change)
	}
}
