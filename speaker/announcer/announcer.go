// Package announcer decides which addresses this node answers ARP for and
// makes the responders do it. Every speaker runs one. The decision is local:
// the live members (from the failure detector) and the Services and pools
// (from informer caches) are enough, so announcing goes on unchanged while
// the API server is unreachable.
package announcer

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/porterlb/porter/pkg/addr"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/speaker/allocator"
	"github.com/porterlb/porter/speaker/members"
	"github.com/porterlb/porter/speaker/metrics"
	"github.com/porterlb/porter/speaker/owner"
	"github.com/porterlb/porter/speaker/responder"
)

// ServiceIndex indexes EndpointSlices by "namespace/service".
const ServiceIndex = "porter-service"

// EndpointSliceIndexers are the indexers the EndpointSlice informer needs.
func EndpointSliceIndexers() cache.Indexers {
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

// Config wires an Announcer.
type Config struct {
	Node           string
	Kube           kubernetes.Interface
	Services       cache.SharedIndexInformer
	Eips           cache.SharedIndexInformer
	Nodes          cache.SharedIndexInformer
	EndpointSlices cache.SharedIndexInformer
	NodeNICs       cache.SharedIndexInformer
	Members        *members.Members
	Metrics        *metrics.Metrics
	Recorder       record.EventRecorder
	Log            *slog.Logger
	Probe          responder.ProbeConfig
	// Reprobe is how long a conflicting address waits before it is probed
	// again.
	Reprobe time.Duration
}

// Announcer runs the data path of one node.
type Announcer struct {
	cfg  Config
	kick chan struct{}
	// garpCtx outlives Run, so that the last gratuitous ARP repeats still
	// go out during a graceful handoff.
	garpCtx    context.Context
	garpCancel context.CancelFunc

	responders map[string]*responder.Responder
	owned      map[netip.Addr]ownership
	probing    map[netip.Addr]bool
	// probeSlots bounds the probes in flight: a pool of thousands filling
	// at once would otherwise put three broadcasts per address on the LAN
	// in one burst, and hold a goroutine for each.
	probeSlots chan struct{}
	cleared    map[netip.Addr]bool
	conflicts  map[netip.Addr]conflict
	refused    map[string]bool
	results    chan probeResult
	links      *links

	writer *writer
	ready  atomic.Bool
	mu     sync.Mutex // guards health
	health map[string]error
	count  atomic.Int64
}

type ownership struct {
	iface string
	svc   string
}

type conflict struct {
	mac string
	at  time.Time
	svc string
}

type probeResult struct {
	ip    netip.Addr
	svc   *corev1.Service
	iface string
	mac   net.HardwareAddr
	err   error
}

// New creates an Announcer; Run starts it.
const (
	// maxProbes is how many RFC 5227 probes run at once.
	maxProbes = 128
	// kickSpacing is the least time between reconciles that object
	// events (not membership changes) start.
	kickSpacing = 100 * time.Millisecond
)

func New(cfg Config) *Announcer {
	if cfg.Reprobe <= 0 {
		cfg.Reprobe = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Announcer{
		cfg:        cfg,
		kick:       make(chan struct{}, 1),
		garpCtx:    ctx,
		garpCancel: cancel,
		responders: map[string]*responder.Responder{},
		owned:      map[netip.Addr]ownership{},
		probing:    map[netip.Addr]bool{},
		probeSlots: make(chan struct{}, maxProbes),
		cleared:    map[netip.Addr]bool{},
		conflicts:  map[netip.Addr]conflict{},
		refused:    map[string]bool{},
		results:    make(chan probeResult, 16),
		writer:     newWriter(cfg.Kube, cfg.Log),
		health:     map[string]error{},
	}
}

func (a *Announcer) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Ready reports whether the first decision has been made.
func (a *Announcer) Ready() bool { return a.ready.Load() }

// Announcing is how many addresses this node answers for.
func (a *Announcer) Announcing() int { return int(a.count.Load()) }

// Healthy returns the first failed responder's error.
func (a *Announcer) Healthy() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, err := range a.health {
		if err != nil {
			return fmt.Errorf("ARP on %s: %w", name, err)
		}
	}
	return nil
}

// Run decides and announces until ctx ends. It leaves every announcement
// in place when it returns: Close ends them, after the handoff.
func (a *Announcer) Run(ctx context.Context) error {
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.poke() },
		UpdateFunc: func(any, any) { a.poke() },
		DeleteFunc: func(any) { a.poke() },
	}
	// Nodes and Eips matter here for their addresses and specs only, not
	// for heartbeats and status writes.
	filtered := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { a.poke() },
		UpdateFunc: func(o, n any) {
			if allocator.ChangesPools(o, n) {
				a.poke()
			}
		},
		DeleteFunc: func(any) { a.poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{a.cfg.Services, a.cfg.EndpointSlices, a.cfg.NodeNICs} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
	}
	for _, inf := range []cache.SharedIndexInformer{a.cfg.Eips, a.cfg.Nodes} {
		if _, err := inf.AddEventHandler(filtered); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
	}
	if err := watchLinks(ctx, a.poke); err != nil {
		return err
	}
	go a.writer.run(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), a.cfg.Services.HasSynced, a.cfg.Eips.HasSynced, a.cfg.Nodes.HasSynced, a.cfg.EndpointSlices.HasSynced, a.cfg.NodeNICs.HasSynced) {
		return ctx.Err()
	}
	changed := a.cfg.Members.Subscribe()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	a.reconcile(ctx)
	a.ready.Store(true)
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.kick:
			// Object events come in floods when thousands of Services are
			// created or annotated, and each reconcile reads them all; so
			// these wait out kickSpacing. A membership change never waits.
			if wait := time.Until(last.Add(kickSpacing)); wait > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-changed:
				case <-time.After(wait):
				}
			}
		case <-changed:
		case r := <-a.results:
			a.probed(r)
			// Thousands of probes finish together when a large pool
			// fills; one reconcile takes them all.
			for drained := false; !drained; {
				select {
				case r := <-a.results:
					a.probed(r)
				default:
					drained = true
				}
			}
		case <-tick.C:
		}
		last = time.Now()
		a.reconcile(ctx)
	}
}

// Close stops answering on every NIC.
func (a *Announcer) Close() {
	a.garpCancel()
	for name, r := range a.responders {
		if err := r.Close(); err != nil {
			a.cfg.Log.Warn("close ARP responder", "interface", name, "err", err)
		}
	}
}

type pool struct {
	name     string
	rng      addr.Range
	iface    string
	disabled bool
}

type want struct {
	svc   *corev1.Service
	iface string
}

func (a *Announcer) reconcile(ctx context.Context) {
	log := a.cfg.Log
	a.expireConflicts()
	if lk, err := readLinks(); err != nil {
		log.Warn("read interfaces", "err", err)
	} else {
		a.links = lk
	}
	if a.links == nil {
		return
	}
	me := a.node(a.cfg.Node)
	var layer2, internal netip.Addr
	if me != nil {
		layer2, internal = nodeIPs(me)
	}

	pools := a.pools()
	nicOf := map[string]*link{}
	var unservable []string
	for _, p := range pools {
		lk, err := a.links.choose(p.iface, layer2, internal)
		if err != nil || !lk.up || len(lk.mac) == 0 {
			unservable = append(unservable, p.name)
			continue
		}
		nicOf[p.name] = lk
	}
	sort.Strings(unservable)
	a.publishMeta(unservable)

	live := a.cfg.Members.Live()
	a.cfg.Metrics.Members.Set(float64(len(live)))
	candidates := map[string][]string{}
	for name, raw := range live {
		for _, p := range pools {
			if metaServes(raw, poolHash(p.name)) {
				candidates[p.name] = append(candidates[p.name], name)
			}
		}
	}

	forbidden := map[netip.Addr]string{}
	for _, o := range a.cfg.Nodes.GetStore().List() {
		for ip, why := range allocator.NodeAddresses(o.(*corev1.Node)) {
			forbidden[ip] = why
		}
	}
	for ip, why := range a.links.local {
		forbidden[ip] = why
	}

	desired := map[netip.Addr]want{}
	for _, o := range a.cfg.Services.GetStore().List() {
		svc := o.(*corev1.Service)
		if !lbservice.IsPorter(svc) {
			continue
		}
		ip := lbservice.IngressIP(svc)
		if !ip.Is4() {
			continue
		}
		p := poolOf(pools, ip, lbservice.Pool(svc))
		if p == nil || p.disabled {
			continue
		}
		if why, bad := forbidden[ip]; bad {
			a.refuse(svc, ip, why)
			continue
		}
		cands := candidates[p.name]
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			cands = a.withLocalEndpoints(svc, cands)
		}
		if owner.Pick(ip, cands) != a.cfg.Node {
			continue
		}
		lk := nicOf[p.name]
		if lk == nil {
			continue
		}
		if _, waiting := a.conflicts[ip]; waiting {
			continue
		}
		desired[ip] = want{svc: svc, iface: lk.name}
	}
	a.apply(ctx, desired)
}

func (a *Announcer) publishMeta(unservable []string) {
	if err := a.cfg.Members.SetMeta(encodeMeta(unservable, members.MaxMeta)); err != nil {
		a.cfg.Log.Warn("publish member meta", "err", err)
	}
}

// apply makes the responders answer for exactly desired.
func (a *Announcer) apply(ctx context.Context, desired map[netip.Addr]want) {
	lost := map[string][]netip.Addr{}
	for ip, o := range a.owned {
		if d, ok := desired[ip]; ok && d.iface == o.iface && a.responders[o.iface] != nil && a.responders[o.iface].Healthy() == nil {
			continue
		}
		lost[o.iface] = append(lost[o.iface], ip)
		delete(a.owned, ip)
	}
	for iface, ips := range lost {
		if r := a.responders[iface]; r != nil {
			r.Withdraw(ips)
		}
		a.cfg.Metrics.OwnershipChanges.WithLabelValues("lost").Add(float64(len(ips)))
		a.cfg.Log.Info("stopped announcing", "interface", iface, "count", len(ips), "first", ips[0])
	}

	gained := map[string][]netip.Addr{}
	var events []func()
	for ip, d := range desired {
		if _, ok := a.owned[ip]; ok {
			continue
		}
		if !a.cleared[ip] && !announcedBefore(d.svc, ip) {
			a.startProbe(ctx, ip, d)
			continue
		}
		if _, err := a.responder(d.iface); err != nil {
			a.cfg.Log.Warn("open ARP responder", "interface", d.iface, "err", err)
			continue
		}
		gained[d.iface] = append(gained[d.iface], ip)
		a.owned[ip] = ownership{iface: d.iface, svc: lbservice.Key(d.svc)}
		svc, ipc, iface := d.svc, ip, d.iface
		events = append(events, func() {
			a.cfg.Recorder.Eventf(svc, corev1.EventTypeNormal, "Announcing", "announcing %s from %s on %s", ipc, a.cfg.Node, iface)
			a.writer.set(svc, lbservice.AnnouncerAnnotation, lbservice.Announcer{IP: ipc, Node: a.cfg.Node, Interface: iface}.String())
		})
	}
	for iface, ips := range gained {
		a.responders[iface].Announce(a.garpCtx, ips)
		a.cfg.Metrics.OwnershipChanges.WithLabelValues("gained").Add(float64(len(ips)))
		a.cfg.Log.Info("announcing", "interface", iface, "count", len(ips), "first", ips[0])
	}
	a.cfg.Metrics.OwnedIPs.Set(float64(len(a.owned)))
	a.count.Store(int64(len(a.owned)))
	// Events and annotations come after the data path has changed, never
	// before it.
	for _, e := range events {
		e()
	}
}

func announcedBefore(svc *corev1.Service, ip netip.Addr) bool {
	an, ok := lbservice.ParseAnnouncer(svc)
	return ok && an.IP == ip
}

func (a *Announcer) responder(iface string) (*responder.Responder, error) {
	lk := a.links.byName[iface]
	if r := a.responders[iface]; r != nil {
		if r.Healthy() == nil && lk != nil && r.Interface().Index == lk.index {
			return r, nil
		}
		_ = r.Close()
		delete(a.responders, iface)
	}
	r, err := responder.Open(iface, a.cfg.Metrics, a.cfg.Log)
	if err != nil {
		return nil, err
	}
	a.responders[iface] = r
	go func() {
		err := r.Serve()
		a.mu.Lock()
		a.health[iface] = err
		a.mu.Unlock()
		if err != nil {
			a.cfg.Log.Error("ARP responder stopped", "interface", iface, "err", err)
			a.poke()
		}
	}()
	a.mu.Lock()
	a.health[iface] = nil
	a.mu.Unlock()
	return r, nil
}

func (a *Announcer) startProbe(ctx context.Context, ip netip.Addr, d want) {
	if a.probing[ip] {
		return
	}
	r, err := a.responder(d.iface)
	if err != nil {
		a.cfg.Log.Warn("open ARP responder", "interface", d.iface, "err", err)
		return
	}
	select {
	case a.probeSlots <- struct{}{}:
	default:
		return // every slot is busy; a later reconcile starts this one
	}
	a.probing[ip] = true
	ours := a.clusterMACs()
	pc := a.cfg.Probe
	go func() {
		mac, err := r.Probe(ctx, ip, pc, func(m net.HardwareAddr) bool { return ours[m.String()] })
		// Free the slot before the result wakes the reconcile that
		// starts the next probe.
		<-a.probeSlots
		select {
		case a.results <- probeResult{ip: ip, svc: d.svc, iface: d.iface, mac: mac, err: err}:
		case <-ctx.Done():
		}
	}()
}

func (a *Announcer) probed(r probeResult) {
	delete(a.probing, r.ip)
	switch {
	case r.err != nil:
		a.cfg.Log.Warn("probe address", "ip", r.ip, "err", r.err)
	case r.mac != nil:
		first := a.conflicts[r.ip].mac == ""
		a.conflicts[r.ip] = conflict{mac: r.mac.String(), at: time.Now(), svc: lbservice.Key(r.svc)}
		a.cfg.Metrics.Conflicts.Inc()
		if first {
			a.cfg.Log.Warn("address in use by another host; not announcing it", "ip", r.ip, "mac", r.mac.String(), "interface", r.iface)
			a.cfg.Recorder.Eventf(r.svc, corev1.EventTypeWarning, "AddressConflict", "%s is already answered on %s by %s, a host outside the cluster; Porter does not announce it and probes again every %s", r.ip, r.iface, r.mac, a.cfg.Reprobe)
			a.writer.set(r.svc, lbservice.ConflictAnnotation, r.ip.String()+" "+r.mac.String())
		}
	default:
		a.cleared[r.ip] = true
		if lbservice.ParseConflictIP(r.svc) == r.ip {
			a.cfg.Log.Info("address free again", "ip", r.ip)
			a.writer.unset(r.svc, lbservice.ConflictAnnotation)
		}
	}
}

// clusterMACs are the MACs of every node's NICs; a probe answered by one
// of them is a handoff in progress, not a conflict.
func (a *Announcer) clusterMACs() map[string]bool {
	out := map[string]bool{}
	for _, o := range a.cfg.NodeNICs.GetStore().List() {
		n, err := decodeNICs(o)
		if err != nil {
			continue
		}
		for _, nic := range n.Status.NICs {
			if nic.MAC != "" {
				out[nic.MAC] = true
			}
		}
	}
	if a.links != nil {
		for _, lk := range a.links.byName {
			out[lk.mac.String()] = true
		}
	}
	return out
}

func decodeNICs(o any) (*v1alpha1.NodeNICs, error) {
	if n, ok := o.(*v1alpha1.NodeNICs); ok {
		return n, nil
	}
	u, ok := o.(runtime.Unstructured)
	if !ok {
		return nil, fmt.Errorf("unexpected %T", o)
	}
	var n v1alpha1.NodeNICs
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), &n); err != nil {
		return nil, fmt.Errorf("decode NodeNICs: %w", err)
	}
	return &n, nil
}

// expireConflicts lets conflicting addresses be probed again.
func (a *Announcer) expireConflicts() {
	for ip, c := range a.conflicts {
		if time.Since(c.at) >= a.cfg.Reprobe {
			delete(a.conflicts, ip)
			delete(a.cleared, ip)
		}
	}
}

func (a *Announcer) refuse(svc *corev1.Service, ip netip.Addr, why string) {
	k := lbservice.Key(svc) + " " + ip.String()
	if a.refused[k] {
		return
	}
	a.refused[k] = true
	a.cfg.Log.Warn("refusing to announce a node's address", "service", lbservice.Key(svc), "ip", ip, "reason", why)
	a.cfg.Recorder.Eventf(svc, corev1.EventTypeWarning, "AddressRefused", "%s is the %s; Porter never answers ARP for a node's address", ip, why)
}

func (a *Announcer) node(name string) *corev1.Node {
	o, ok, _ := a.cfg.Nodes.GetStore().GetByKey(name)
	if !ok {
		return nil
	}
	return o.(*corev1.Node)
}

func (a *Announcer) pools() []pool {
	var out []pool
	for _, o := range a.cfg.Eips.GetStore().List() {
		e, err := eips.Decode(o.(runtime.Object))
		if err != nil || e.Spec.Protocol != v1alpha2.ProtocolLayer2 {
			continue
		}
		r, err := addr.Parse(e.Spec.Address)
		if err != nil || !r.Is4() {
			continue
		}
		out = append(out, pool{name: e.Name, rng: r, iface: e.Spec.Interface, disabled: e.Spec.Disable})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func poolOf(pools []pool, ip netip.Addr, named string) *pool {
	for i := range pools {
		if pools[i].name == named && pools[i].rng.Contains(ip) {
			return &pools[i]
		}
	}
	for i := range pools {
		if pools[i].rng.Contains(ip) {
			return &pools[i]
		}
	}
	return nil
}

// withLocalEndpoints keeps the candidates that run a ready endpoint of
// svc: with externalTrafficPolicy Local, only they can serve it.
func (a *Announcer) withLocalEndpoints(svc *corev1.Service, cands []string) []string {
	objs, err := a.cfg.EndpointSlices.GetIndexer().ByIndex(ServiceIndex, lbservice.Key(svc))
	if err != nil {
		return nil
	}
	ready := map[string]bool{}
	for _, o := range objs {
		for _, ep := range o.(*discoveryv1.EndpointSlice).Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				ready[*ep.NodeName] = true
			}
		}
	}
	var out []string
	for _, c := range cands {
		if ready[c] {
			out = append(out, c)
		}
	}
	return out
}

// nodeIPs are the node's layer2 annotation address and its InternalIP.
func nodeIPs(n *corev1.Node) (layer2, internal netip.Addr) {
	for _, k := range []string{v1alpha2.Layer2Annotation, v1alpha2.Layer2AnnotationOpenELB} {
		if ip, err := netip.ParseAddr(n.Annotations[k]); err == nil && !layer2.IsValid() {
			layer2 = ip.Unmap()
		}
	}
	for _, a := range n.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP && !internal.IsValid() {
			internal = ip.Unmap()
		}
	}
	return layer2, internal
}
