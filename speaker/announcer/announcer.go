// Package announcer decides which addresses this node answers ARP for and
// makes the responders do it. Every speaker runs one. The decision is local:
// the live members (from the failure detector) and the Services and pools
// (from informer caches) are enough, so announcing goes on unchanged while
// the API server is unreachable.
//
// The decision itself is Decide, a pure function; this file gathers its
// input, applies its output to the responders, and defends what it
// announces on the wire.
package announcer

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/facts"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/pkg/membership"
	"github.com/porterlb/porter/speaker/endpoints"
	"github.com/porterlb/porter/speaker/members"
	"github.com/porterlb/porter/speaker/metrics"
	"github.com/porterlb/porter/speaker/owner"
	"github.com/porterlb/porter/speaker/responder"
)

// Recorder records Events about the object a reference names.
type Recorder interface {
	Eventf(ref corev1.ObjectReference, eventType, reason, messageFmt string, args ...any)
}

// Config wires an Announcer.
type Config struct {
	Node     string
	Services cache.SharedIndexInformer
	// EndpointSliceInformer makes an informer of one namespace's
	// EndpointSlices: they are watched only in the namespaces of Local
	// Services.
	EndpointSliceInformer func(namespace string) (cache.SharedIndexInformer, error)
	// SpeakerPods are the porter-speaker pods: a member counts only on a
	// node that runs a ready one.
	SpeakerPods cache.SharedIndexInformer
	// Facts gives the pools, the reserved addresses and the speakers' NIC
	// reports.
	Facts *facts.Facts
	// Changed is called when the addresses this speaker announces, or
	// those it found answered by another host, change, so that its
	// report is published.
	Changed  func()
	Members  *members.Members
	Metrics  *metrics.Metrics
	Recorder Recorder
	Log      *slog.Logger
	Probe    responder.ProbeConfig
	// TakeoverCheck is how long the wire is asked, before taking an
	// address from a member that failed, whether its owner or its node
	// still answers; zero takes it at once, as gossip says.
	TakeoverCheck time.Duration
	// StarvedGrace is how long a failed member whose node still answers
	// ARP keeps its addresses: its speaker may only be starved of CPU.
	StarvedGrace time.Duration
	// Damping holds back a member found failed that comes back: it takes
	// no address back until its hold-down ends.
	Damping membership.Damping
	// Refresh is how often every announced address is announced again
	// with gratuitous ARP; zero turns it off.
	Refresh time.Duration
	// Reprobe is how long a conflicting address first waits before it is
	// probed again; each further conflict doubles it, up to MaxReprobe.
	Reprobe    time.Duration
	MaxReprobe time.Duration
}

// Announcer runs the data path of one node.
type Announcer struct {
	cfg  Config
	kick chan struct{}
	// endpoints are the ready endpoints of Local Services.
	endpoints *endpoints.Watch
	// garpCtx outlives Run, so that the last gratuitous ARP repeats still
	// go out during a graceful handoff.
	garpCtx    context.Context
	garpCancel context.CancelFunc

	responders map[string]*responder.Responder
	owned      map[netip.Addr]ownership
	probing    map[netip.Addr]bool
	// lastOwners is the previous decision's owner of each address, and
	// decided is set once a decision was made: the probe before first use
	// is decided from these, this speaker's own memory, and never from
	// anything a user can write.
	lastOwners map[netip.Addr]string
	decided    bool
	// reclaim are the addresses allocated when this speaker started,
	// which it may take back for a while though held down (Input.Reclaim).
	reclaim map[netip.Addr]bool
	// suspect are the previous decision's suspect addresses.
	suspect map[netip.Addr]bool
	// unknown and knownNames are the ignored and the counted members of
	// the last reconcile, for readers outside the run loop.
	unknown    atomic.Pointer[[]string]
	knownNames atomic.Pointer[[]string]
	// owners is the last decision's owner of each address.
	owners map[netip.Addr]string
	// joined is set once this speaker has seen another member; started is
	// when it was created.
	joined  bool
	started time.Time
	// peerMACs are the MACs of the nodes that run a speaker, by the API's
	// word or gossip's: an answer from one of them during a probe is a
	// peer that still holds the address, never a conflict.
	peerMACs map[string]string
	// lastLive is when each member was last seen live.
	lastLive map[string]time.Time
	// probeSlots bounds the probes in flight: a pool of thousands filling
	// at once would otherwise put three broadcasts per address on the LAN
	// in one burst, and hold a goroutine for each.
	probeSlots chan struct{}
	cleared    map[netip.Addr]bool
	// conflicts are guarded by mu: the responders' claim callbacks add
	// to them from their read loops.
	conflicts map[netip.Addr]conflict
	refused   map[string]bool
	results   chan probeResult
	checks    chan takeoverCheck
	// pendingFrom are addresses the decision gives this node that a
	// failed member held, with that member; checked those the wire has
	// cleared; checkDue, by member, those to ask about; checking the
	// members asked about now.
	pendingFrom  map[netip.Addr]string
	pendingSince map[netip.Addr]time.Time
	checked      map[netip.Addr]bool
	checkDue     map[string][]netip.Addr
	checking     map[string]bool
	// peerHeld are the addresses whose last probe another speaker
	// answered, with when they may be probed again.
	peerHeld map[netip.Addr]time.Time
	// nextRound is, by member, when the wire may be asked about it again;
	// heldSaid the failure of each member whose still answering was
	// last logged.
	nextRound map[string]time.Time
	heldSaid  map[string]time.Time
	// lastAnswered is, by member, when the wire last heard it answer for
	// an address another member was about to take.
	lastAnswered map[string]time.Time
	// nodeGone are the nodes whose kernel last failed to answer ARP for
	// the node's own address, with when; they do not count against the
	// quorum.
	nodeGone map[string]time.Time
	// restricted is set while this speaker is in the minority or held
	// down: a claim from another speaker then makes it yield. yielded are
	// the addresses it gave up so, with to whom; askedKept the kept
	// addresses it has asked the wire about.
	restricted atomic.Bool
	// leaving is set once Run has returned: the speaker is handing over.
	leaving   atomic.Bool
	yielded   map[netip.Addr]string
	askedKept map[netip.Addr]bool
	// damped are the members this speaker holds down, for its meta;
	// minority is the last quorum verdict.
	damped        []string
	minority      bool
	minoritySince time.Time
	heldDownNow   map[string]bool
	// claimView is who is live and who is held down, for the
	// responders' claim callbacks.
	claimView atomic.Pointer[claimView]
	claims    *claimQueue
	claimBuf  []claimed
	links     *links
	// claimMACs are peerMACs for the responders' claim callbacks.
	claimMACs atomic.Pointer[map[string]string]

	ready atomic.Bool
	mu    sync.Mutex // guards health and conflicts
	// health is the state of each open responder, by NIC; it goes with
	// the responder, so a NIC that is gone or down fails nothing.
	health map[string]responderHealth
	// announced is what a.owned held when it last changed, for readers
	// outside the run loop.
	announced atomic.Pointer[[]v1alpha1.AnnouncedAddress]

	// servicesGen counts the changes to Services and their endpoints;
	// view is what the last decision read of them, and decision is that
	// decision, whose maps the next one reuses.
	servicesGen atomic.Uint64
	view        serviceView
	decision    Decision
	// announcing is the decision's Input.Announcing, made once.
	announcing map[netip.Addr]string
}

type ownership struct {
	iface string
	svc   string
}

// conflict is an address another host answers for. It is probed again at
// retry; tries doubles the wait each time.
type conflict struct {
	mac   string
	since time.Time
	retry time.Time
	tries int
	svc   string
}

type probeResult struct {
	ip    netip.Addr
	svc   string
	iface string
	mac   net.HardwareAddr
	err   error
}

// claimView is the last reconcile's view of the other members.
type claimView struct {
	live map[string]bool
	// iHold are the members this speaker holds down by its own word;
	// holdsMe those whose meta says they hold this speaker down.
	iHold, holdsMe map[string]bool
}

// New creates an Announcer; Run starts it.
const (
	// maxProbes is how many RFC 5227 probes run at once.
	maxProbes = 128
	// kickSpacing is the least time between reconciles that object
	// events (not membership changes) start.
	kickSpacing = 100 * time.Millisecond
	// leftRecently is how long a member that left still counts as the
	// cluster's when it claims an address: longer than the handoff grace
	// and the gratuitous ARP schedule together.
	leftRecently = 10 * time.Second
)

func New(cfg Config) *Announcer {
	if cfg.Reprobe <= 0 {
		cfg.Reprobe = 30 * time.Second
	}
	if cfg.MaxReprobe < cfg.Reprobe {
		cfg.MaxReprobe = max(cfg.Reprobe, 10*time.Minute)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Announcer{
		cfg:          cfg,
		kick:         make(chan struct{}, 1),
		garpCtx:      ctx,
		garpCancel:   cancel,
		responders:   map[string]*responder.Responder{},
		owned:        map[netip.Addr]ownership{},
		probing:      map[netip.Addr]bool{},
		lastOwners:   map[netip.Addr]string{},
		announcing:   map[netip.Addr]string{},
		lastLive:     map[string]time.Time{},
		started:      time.Now(),
		probeSlots:   make(chan struct{}, maxProbes),
		cleared:      map[netip.Addr]bool{},
		conflicts:    map[netip.Addr]conflict{},
		reclaim:      map[netip.Addr]bool{},
		refused:      map[string]bool{},
		results:      make(chan probeResult, 16),
		checks:       make(chan takeoverCheck, 16),
		pendingFrom:  map[netip.Addr]string{},
		pendingSince: map[netip.Addr]time.Time{},
		checked:      map[netip.Addr]bool{},
		checkDue:     map[string][]netip.Addr{},
		checking:     map[string]bool{},
		nextRound:    map[string]time.Time{},
		peerHeld:     map[netip.Addr]time.Time{},
		heldSaid:     map[string]time.Time{},
		lastAnswered: map[string]time.Time{},
		nodeGone:     map[string]time.Time{},
		yielded:      map[netip.Addr]string{},
		askedKept:    map[netip.Addr]bool{},
		claims:       newClaimQueue(),
		health:       map[string]responderHealth{},
	}
	// A namespace whose last Local Service left stays watched this long,
	// so that a Service switched back and forth costs no new list.
	a.endpoints = endpoints.New(cfg.EndpointSliceInformer, a.servicesChanged, 10*time.Minute, cfg.Log)
	return a
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
func (a *Announcer) Announcing() int { return len(a.Announced()) }

// Healthy returns the first failed responder's error.
func (a *Announcer) Healthy() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, h := range a.health {
		if h.err != nil {
			return fmt.Errorf("ARP on %s: %w", name, h.err)
		}
	}
	return nil
}

type responderHealth struct {
	r   *responder.Responder
	err error
}

// closeResponder stops the responder on iface and forgets its health.
func (a *Announcer) closeResponder(iface string) {
	if r := a.responders[iface]; r != nil {
		_ = r.Close()
		delete(a.responders, iface)
	}
	a.mu.Lock()
	delete(a.health, iface)
	a.mu.Unlock()
}

// linkUp reports whether the link with index is there and up with carrier.
func linkUp(index int) bool {
	ifi, err := net.InterfaceByIndex(index)
	return err == nil && ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagRunning != 0
}

// pruneResponders closes the responders of NICs that are gone, down or
// replaced: a responder's socket dies with its NIC, and that is no fault
// of the speaker's, so /healthz must not fail on it. Addresses on such a
// NIC are withdrawn by the decision, which no longer picks it.
func (a *Announcer) pruneResponders() {
	for iface, r := range a.responders {
		if lk := a.links.byName[iface]; lk == nil || !lk.up || r.Interface().Index != lk.index {
			a.closeResponder(iface)
		}
	}
}

// Run decides and announces until ctx ends. It leaves every announcement
// in place when it returns: Close ends them, after the handoff.
func (a *Announcer) Run(ctx context.Context) error {
	defer a.leaving.Store(true)
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.poke() },
		UpdateFunc: func(any, any) { a.poke() },
		DeleteFunc: func(any) { a.poke() },
	}
	if _, err := a.cfg.SpeakerPods.AddEventHandler(h); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	// An update that changes nothing a decision reads (the controller's
	// announcer annotation, a status condition) calls for none: at
	// 10,000 Services, those are most of the events.
	_, err := a.cfg.Services.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { a.servicesChanged() },
		UpdateFunc: func(o, n any) {
			was, ok1 := o.(*lbservice.Summary)
			now, ok2 := n.(*lbservice.Summary)
			if !ok1 || !ok2 || !was.Equal(now) {
				a.servicesChanged()
			}
		},
		DeleteFunc: func(any) { a.servicesChanged() },
	})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	// Pools, nodes and reports matter here for what can change the
	// policy only, not for heartbeats and status writes.
	if _, err := a.cfg.Facts.OnChange(a.poke); err != nil {
		return err
	}
	// A NIC report's MACs say which claims on the wire come from a
	// member: any report change may matter.
	if _, err := a.cfg.Facts.NodeNICs().AddEventHandler(h); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	if err := watchLinks(ctx, a.poke); err != nil {
		return err
	}
	if !cache.WaitForCacheSync(ctx.Done(), a.cfg.Services.HasSynced, a.cfg.SpeakerPods.HasSynced, a.cfg.Facts.HasSynced) {
		return ctx.Err()
	}
	// The first decision knows the endpoints of every Local Service, so a
	// restart announces them at once.
	defer a.endpoints.Close()
	if err := a.endpoints.Want(a.localNamespaces(a.cfg.Facts.Policy())); err != nil {
		a.cfg.Log.Warn("watch endpoints", "err", err)
	}
	if !a.endpoints.Sync(ctx) {
		return ctx.Err()
	}
	changed := a.cfg.Members.Subscribe()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	a.seedConflicts()
	a.reconcile(ctx)
	a.ready.Store(true)
	last := time.Now()
	// spaced fires when a kick that came too soon may reconcile.
	var spaced <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.kick:
			// Object events come in floods when thousands of Services are
			// created or annotated, and each reconcile reads them all; so
			// these wait out kickSpacing. Nothing else waits behind them:
			// a membership change, a claim, or the wire's answer to a
			// takeover check is taken at once, and its reconcile serves
			// the kick too.
			if wait := time.Until(last.Add(kickSpacing)); wait > 0 {
				if spaced == nil {
					spaced = time.After(wait)
				}
				continue
			}
		case <-spaced:
		case <-changed:
		case <-a.claims.ready:
			// The reconcile takes the claims: a flood of them, or a run
			// loop starved while they came, is served by one.
		case c := <-a.checks:
			a.takeChecked(c)
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
		spaced = nil
		last = time.Now()
		a.reconcile(ctx)
	}
}

// known are the live members the cluster vouches for (membership.Judge),
// with their meta. The others are logged once, counted and reported.
func (a *Announcer) known(policy *addrpolicy.Policy) (map[string][]byte, membership.Cluster) {
	c := membership.Cluster{Nodes: map[string]bool{}, Published: map[string]string{}, Self: a.cfg.Node}
	peers := a.cfg.Members.Peers()
	ms := make([]membership.Member, 0, len(peers))
	for _, p := range peers {
		ms = append(ms, membership.Member{Name: p.Name, Addr: p.Addr})
		if _, ok := policy.Node(p.Name); ok {
			c.Nodes[p.Name] = true
		}
	}
	objs := a.cfg.SpeakerPods.GetStore().List()
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	c.Ready = membership.ReadyNodes(pods)
	for _, r := range a.cfg.Facts.Reports() {
		c.Published[r.Node] = r.MemberAddress
	}
	known, unknown := membership.Split(ms, c)
	knownNames := slices.Sorted(maps.Keys(known))
	if !slices.Equal(knownNames, a.KnownMembers()) {
		a.knownNames.Store(&knownNames)
		a.reportChanged()
	}
	out := make(map[string][]byte, len(known))
	for _, p := range peers {
		if known[p.Name] {
			out[p.Name] = p.Meta
		}
	}
	before := a.UnknownMembers()
	names := make([]string, 0, len(unknown))
	for _, u := range unknown {
		names = append(names, u.String())
		if !slices.Contains(before, u.String()) {
			a.cfg.Log.Warn("ignoring a gossip member the cluster does not vouch for", "member", u.Name, "address", u.Addr, "reason", u.Reason)
		}
	}
	a.cfg.Metrics.UnknownMembers.Set(float64(len(unknown)))
	if !slices.Equal(names, before) {
		a.unknown.Store(&names)
		a.reportChanged()
	}
	return out, c
}

// KnownMembers are the names of the live members that count, sorted.
func (a *Announcer) KnownMembers() []string {
	if p := a.knownNames.Load(); p != nil {
		return *p
	}
	return nil
}

// UnknownMembers are the gossip members last ignored, each with why.
func (a *Announcer) UnknownMembers() []string {
	if p := a.unknown.Load(); p != nil {
		return *p
	}
	return nil
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

func (a *Announcer) reconcile(ctx context.Context) {
	log := a.cfg.Log
	// A claim withdrew its address already; the decision must know of it
	// (a yield, or a conflict to wait out) or it would take it back.
	a.takeClaims()
	a.expireConflicts()
	if lk, err := readLinks(); err != nil {
		log.Warn("read interfaces", "err", err)
	} else {
		a.links = lk
	}
	if a.links == nil {
		return
	}
	a.pruneResponders()
	policy := a.cfg.Facts.Policy()
	var primaries []netip.Addr
	if me, ok := policy.Node(a.cfg.Node); ok {
		primaries = me.Primaries()
	}

	nicOf := map[string]string{}
	var unservable []string
	for _, p := range policy.Pools() {
		if !p.Announced() {
			continue
		}
		lk, err := a.links.choose(p.Interface, primaries)
		if err != nil || !lk.up || len(lk.mac) == 0 {
			unservable = append(unservable, p.Name)
			continue
		}
		nicOf[p.Name] = lk.name
	}
	sort.Strings(unservable)

	live, cluster := a.known(policy)
	a.cfg.Metrics.Members.Set(float64(len(live)))
	if len(live) > 1 {
		a.joined = true
	}
	damped := a.heldDown(live)
	a.heldDownNow = damped
	cv := &claimView{live: map[string]bool{}, iHold: map[string]bool{}, holdsMe: map[string]bool{}}
	for name, meta := range live {
		cv.live[name] = true
		cv.holdsMe[name] = name != a.cfg.Node && metaDamps(meta, a.cfg.Node)
	}
	for _, name := range a.damped {
		cv.iHold[name] = true
	}
	a.claimView.Store(cv)
	own := a.publishMeta(unservable)
	minority := a.quorum(cluster, live)
	restricted := minority || damped[a.cfg.Node]
	a.restricted.Store(restricted)
	if !restricted {
		clear(a.yielded)
		clear(a.askedKept)
	}
	in := Input{
		Node: a.cfg.Node, Policy: policy, Candidates: candidates(policy, live, a.cfg.Node, own), NICs: nicOf,
		Local: a.links.local, Held: map[netip.Addr]bool{}, Suspect: map[netip.Addr]bool{},
		Damped: damped, Minority: minority, Announcing: a.announcing, Yielded: map[netip.Addr]bool{},
	}
	clear(a.announcing)
	for ip, o := range a.owned {
		in.Announcing[ip] = o.iface
	}
	for ip := range a.yielded {
		in.Yielded[ip] = true
	}
	if time.Since(a.started) < reclaimFor {
		in.Reclaim = a.reclaim
	} else if a.reclaim != nil {
		// Let go of the map itself: clear would keep room for every
		// address allocated at the start.
		a.reclaim = nil
	}
	// A member that just left may still answer, and send its last
	// gratuitous ARPs, while it hands over: its MACs count as the
	// cluster's for a while yet.
	now := time.Now()
	for name := range live {
		a.lastLive[name] = now
	}
	for name, at := range a.lastLive {
		if now.Sub(at) > leftRecently {
			delete(a.lastLive, name)
		}
	}
	a.peerMACs = map[string]string{}
	for _, r := range a.cfg.Facts.Reports() {
		_, recent := a.lastLive[r.Node]
		for _, n := range r.NICs {
			if n.MAC == "" {
				continue
			}
			if recent || cluster.Ready[r.Node] {
				a.peerMACs[n.MAC] = r.Node
			}
		}
		// Another live speaker's conflict holds here too: the address
		// must not move to this node unprobed only to be found in use.
		if _, ok := live[r.Node]; ok && r.Node != a.cfg.Node {
			for _, c := range r.Conflicts {
				in.Suspect[c.IP] = true
			}
		}
	}
	for _, lk := range a.links.byName {
		a.peerMACs[lk.mac.String()] = a.cfg.Node
	}
	peers := maps.Clone(a.peerMACs)
	a.claimMACs.Store(&peers)
	a.dropPeerConflicts()
	a.mu.Lock()
	for ip, c := range a.conflicts {
		if time.Now().Before(c.retry) && !a.probing[ip] {
			in.Held[ip] = true
		} else {
			in.Suspect[ip] = true
		}
	}
	a.mu.Unlock()
	for ip := range in.Suspect {
		if !a.suspect[ip] {
			delete(a.cleared, ip) // a probe from before the conflict counts no more
		}
	}
	a.suspect = in.Suspect
	var localNS map[string]bool
	in.Services, localNS = a.services(policy)
	if err := a.endpoints.Want(localNS); err != nil {
		log.Warn("watch endpoints", "err", err)
	}

	d := &a.decision
	DecideInto(in, d)
	a.owners = d.Owners
	for _, r := range d.Refused {
		a.refuse(r)
	}
	if a.waitingToJoin(cluster) {
		// Alone, this speaker would think it owns every address, and
		// probe each one only to hear its owner answer.
		return
	}
	// A restricted decision takes on nothing, so it names no owner for
	// most addresses: it says nothing of who else owns them. Dropped on
	// it, the conflicts carried over a restart were gone from the first
	// report, before the speaker had seen its peers.
	if !restricted {
		a.dropConflictsOwnedElsewhere(*d)
	}
	a.apply(ctx, *d)
}

// services are the Services as a decision reads them, sorted by key, with
// the namespaces that hold a Local one. They are read again from the
// cache only after a Service, an endpoint or the policy changed: at
// 10,000 Services, reading them all on every decision was most of a
// speaker's garbage.
func (a *Announcer) services(policy *addrpolicy.Policy) ([]Service, map[string]bool) {
	// Read before the cache: a change made while it is read calls for
	// another reading.
	gen := a.servicesGen.Load()
	if v := &a.view; v.valid && v.gen == gen && v.policy == policy {
		return v.list, v.localNS
	}
	objs := a.cfg.Services.GetStore().List()
	list := make([]Service, 0, len(a.view.list))
	localNS := map[string]bool{}
	for _, o := range objs {
		svc := o.(*lbservice.Summary)
		from := len(list)
		list = AppendServices(list, svc, policy)
		if len(list) > from && svc.Local {
			// Until its namespace's endpoints are known, a Local
			// Service has no node to be announced from: it is new
			// there, and its sync calls for another decision.
			nodes, _ := a.endpoints.ReadyNodes(svc.Key)
			for i := from; i < len(list); i++ {
				list[i].Endpoints = nodes
			}
			localNS[svc.Namespace] = true
		}
	}
	slices.SortStableFunc(list, byKey)
	a.view = serviceView{valid: true, gen: gen, policy: policy, list: list, localNS: localNS}
	return list, localNS
}

// serviceView is what services last read.
type serviceView struct {
	valid   bool
	gen     uint64
	policy  *addrpolicy.Policy
	list    []Service
	localNS map[string]bool
}

// servicesChanged marks the Services view stale and asks for a decision.
func (a *Announcer) servicesChanged() {
	a.servicesGen.Add(1)
	a.poke()
}

// reclaimFor is how long after its start a speaker held down may still take
// back the addresses allocated when it started: a restart that found them
// unanswered takes them within moments; later, they are the others' to take.
const reclaimFor = 5 * time.Second

// joinWait bounds how long a starting speaker that expects peers waits to
// join them before it decides alone: they may all be down.
const joinWait = 10 * time.Second

// waitingToJoin reports whether this speaker should not announce yet: it
// started, has never seen another member, and the cluster says other
// speakers run and can be reached.
func (a *Announcer) waitingToJoin(c membership.Cluster) bool {
	if a.joined || time.Since(a.started) > joinWait {
		return false
	}
	for node := range c.Ready {
		if node != a.cfg.Node && c.Published[node] != "" {
			return true
		}
	}
	return false
}

// dropConflictsOwnedElsewhere forgets this speaker's conflicts, once their
// wait is over, for addresses another member now owns: that member probes
// them itself before it answers, and records the conflict if it is still
// there. Kept, they would stand in its way forever, as only the owner
// probes.
func (a *Announcer) dropConflictsOwnedElsewhere(d Decision) {
	a.mu.Lock()
	dropped := false
	for ip, c := range a.conflicts {
		if o, ok := d.Owners[ip]; (!ok || o != a.cfg.Node) && !time.Now().Before(c.retry) && !a.probing[ip] {
			delete(a.conflicts, ip)
			dropped = true
		}
	}
	a.mu.Unlock()
	if dropped {
		a.reportChanged()
	}
}

// dropPeerConflicts forgets conflicts with a MAC of a node that runs a
// speaker: from a probe sent before the two speakers saw each other, or
// carried over a restart. They are views that differed, not hosts in the
// way, and must never block a takeover when that node dies.
func (a *Announcer) dropPeerConflicts() {
	a.mu.Lock()
	dropped := false
	for ip, c := range a.conflicts {
		if node := a.peerMACs[c.mac]; node != "" {
			a.cfg.Log.Info("dropping a conflict with another speaker's node", "ip", ip, "node", node)
			delete(a.conflicts, ip)
			dropped = true
		}
	}
	a.mu.Unlock()
	if dropped {
		a.reportChanged()
	}
}

// heldDown are the live members held down for flapping. Each speaker
// publishes, in its meta, the members it saw fail and come back within
// their hold-down. A member holds itself down when most of the other live
// members say so: a majority, because a node cut off from the rest sees
// every other member fail and come back, as they see it, and only its own
// failure is the one most of them saw. Views that differ meanwhile move
// nothing: an address leaves a member that still answers for it only
// through the takeover check.
func (a *Announcer) heldDown(live map[string][]byte) map[string]bool {
	now := time.Now()
	var mine []string
	for name := range live {
		if name == a.cfg.Node {
			continue
		}
		f, back := a.cfg.Members.Flaps(name)
		if now.Before(a.cfg.Damping.Until(f, back)) {
			mine = append(mine, name)
		}
	}
	sort.Strings(mine)
	a.damped = mine
	out := map[string]bool{}
	for subject := range live {
		votes, voters := 0, 0
		for name, meta := range live {
			if name == subject {
				continue
			}
			voters++
			if name == a.cfg.Node && slices.Contains(mine, subject) || name != a.cfg.Node && metaDamps(meta, subject) {
				votes++
			}
		}
		// Its own word is enough for this speaker not to hand an
		// address to a member it saw flap, even before the others' meta
		// arrives; a member holds itself down only when most say so.
		if voters > 0 && 2*votes > voters || slices.Contains(mine, subject) {
			out[subject] = true
		}
	}
	a.cfg.Metrics.HeldDown.Set(float64(len(out)))
	return out
}

// isolationLead is how long before losing its quorum a speaker cut off
// may have seen the first of the others fail.
const isolationLead = 3 * time.Second

// goneFor is how long the wire's word that a node is gone stands.
const goneFor = 2 * time.Second

// quorum reports whether this speaker is in the minority
// (membership.QuorumOf), and has the wire asked about the speakers it
// misses while it is: a dead one counts for nothing.
func (a *Announcer) quorum(c membership.Cluster, live map[string][]byte) (minority bool) {
	expected := map[string]bool{}
	for n := range c.Ready {
		if c.Published[n] != "" {
			expected[n] = true
		}
	}
	visible := map[string]bool{}
	for n := range live {
		visible[n] = true
	}
	gone := map[string]bool{}
	// A speaker that said it leaves (a rolling update) is not missed: the
	// one left of two must take its addresses.
	for n := range expected {
		if dep, ok := a.cfg.Members.Departed(n); ok && dep.Left {
			gone[n] = true
		}
	}
	for n, at := range a.nodeGone {
		if time.Since(at) < goneFor {
			gone[n] = true
		} else {
			delete(a.nodeGone, n)
		}
	}
	q := membership.QuorumOf(a.cfg.Node, expected, visible, gone)
	if q.OK == a.minority {
		if q.OK {
			a.cfg.Log.Info("quorum regained: taking on addresses again", "see", q.Have, "need", q.Need)
			// Cut off, this speaker saw every other fail, the first
			// ones just before it lost its quorum: its own isolation,
			// which must not hold them down.
			a.cfg.Members.ForgetFailures(a.minoritySince.Add(-isolationLead))
		} else {
			a.minoritySince = time.Now()
			a.cfg.Log.Warn("quorum lost: keeping the addresses held, taking on none", "see", q.Have, "need", q.Need, "missing", q.Missing)
		}
	}
	a.minority = !q.OK
	if q.OK {
		a.cfg.Metrics.Quorum.Set(1)
		return false
	}
	a.cfg.Metrics.Quorum.Set(0)
	for _, n := range q.Missing {
		if _, due := a.checkDue[n]; !due {
			a.checkDue[n] = nil
		}
	}
	return true
}

// publishMeta publishes this speaker's meta and returns it.
func (a *Announcer) publishMeta(unservable []string) []byte {
	meta := encodeMeta(unservable, a.damped, members.MaxMeta)
	if err := a.cfg.Members.SetMeta(meta); err != nil {
		a.cfg.Log.Warn("publish member meta", "err", err)
	}
	return meta
}

// candidates lists, for each announced pool, the live members that serve
// it and that it selects. This speaker's own entry is read from own, the
// meta it publishes in this round, not from live: gossip hands a member
// its own meta as last set, which before its first publication is empty
// and reads as serving nothing. A restarted speaker would then make its
// first decision without itself, record none of its addresses as held
// before it started, and probe each as new (RFC 5227, 650 ms, a batch at
// a time) instead of asking the wire once whether another node took it.
func candidates(policy *addrpolicy.Policy, live map[string][]byte, self string, own []byte) map[string][]string {
	out := map[string][]string{}
	for name, meta := range live {
		if name == self {
			meta = own
		}
		for _, p := range policy.Pools() {
			if p.Announced() && metaServes(meta, poolHash(p.Name)) && policy.Selects(&p, name) {
				out[p.Name] = append(out[p.Name], name)
			}
		}
	}
	return out
}

// apply makes the responders answer for exactly what d announces.
func (a *Announcer) apply(ctx context.Context, d Decision) {
	desired := d.Announce
	if !a.decided {
		// What was allocated before this speaker started was probed when
		// first used, by whichever member answered for it then.
		a.decided = true
		for ip := range d.Owners {
			a.lastOwners[ip] = startedWith
			// A first decision made after the reclaim window (one that
			// waited to join its peers) has nothing to reclaim.
			if a.reclaim != nil {
				a.reclaim[ip] = true
			}
		}
	}
	type loss struct{ iface, why string }
	lost := map[loss][]netip.Addr{}
	// fresh are the addresses claimed since this decision was made, which
	// it could not know of: none is gained again before the next one.
	var fresh map[netip.Addr]bool
	for ip, o := range a.owned {
		r := a.responders[o.iface]
		if t, ok := desired[ip]; ok && t.Iface == o.iface && r != nil && r.Healthy() == nil {
			if r.Owns(ip) {
				continue
			}
			// A responder stops answering unasked only on a claim, which
			// it queued before it stopped: record it as the yield or
			// conflict it is, not as a loss with no cause.
			if fresh == nil {
				fresh = map[netip.Addr]bool{}
			}
			for _, c := range a.takeClaims() {
				fresh[c.ip] = true
			}
			if _, still := a.owned[ip]; !still {
				continue
			}
		}
		k := loss{o.iface, whyLost(ip, o.iface, d, r)}
		lost[k] = append(lost[k], ip)
		delete(a.owned, ip)
		// Gained again, it is handed over or probed, never taken on the
		// strength of having once answered for it.
		delete(a.cleared, ip)
	}
	for k, ips := range lost {
		if r := a.responders[k.iface]; r != nil {
			r.Withdraw(ips)
		}
		a.cfg.Metrics.OwnershipChanges.WithLabelValues("lost").Add(float64(len(ips)))
		a.cfg.Log.Info("stopped announcing", "interface", k.iface, "count", len(ips), "first", ips[0], "why", k.why)
	}

	gained := map[string][]netip.Addr{}
	var events []func()
	for ip, t := range desired {
		if _, ok := a.owned[ip]; ok || fresh[ip] {
			continue
		}
		if !a.gateTakeover(ip) {
			continue
		}
		if !a.cleared[ip] && (t.Probe || !a.handedOver(ip) && !a.checked[ip]) {
			a.startProbe(ctx, ip, t)
			continue
		}
		if _, err := a.responder(t.Iface); err != nil {
			a.cfg.Log.Warn("open ARP responder", "interface", t.Iface, "err", err)
			continue
		}
		gained[t.Iface] = append(gained[t.Iface], ip)
		a.owned[ip] = ownership{iface: t.Iface, svc: t.Service}
		// Having answered for it, this node need not probe it again.
		a.cleared[ip] = true
		key, ipc, iface := t.Service, ip, t.Iface
		events = append(events, func() {
			svc := a.service(key)
			if svc == nil {
				return
			}
			a.cfg.Recorder.Eventf(svc.Reference(), corev1.EventTypeNormal, "Announcing", "announcing %s from %s on %s", ipc, a.cfg.Node, iface)
		})
	}
	for iface, ips := range gained {
		a.responders[iface].Announce(a.garpCtx, ips)
		a.cfg.Metrics.OwnershipChanges.WithLabelValues("gained").Add(float64(len(ips)))
		a.cfg.Log.Info("announcing", "interface", iface, "count", len(ips), "first", ips[0])
	}
	a.ownedChanged(len(gained) > 0 || len(lost) > 0)
	a.forgetTakeovers(desired)
	a.askKept(ctx, desired)
	a.startChecks(ctx, desired)
	// A suspect address is never handed over unprobed.
	clear(a.lastOwners)
	for ip, o := range d.Owners {
		if !a.suspect[ip] {
			a.lastOwners[ip] = o
		}
	}
	// Events and annotations come after the data path has changed, never
	// before it.
	for _, e := range events {
		e()
	}
}

// whyLost says why ip, answered for on iface through r, is no longer:
// the line that says so is often all an operator has to tell a failover
// from a speaker's mistake.
func whyLost(ip netip.Addr, iface string, d Decision, r *responder.Responder) string {
	t, wanted := d.Announce[ip]
	switch {
	case !wanted && d.Owners[ip] != "":
		return "the decision gives it to " + d.Owners[ip]
	case !wanted:
		return "the decision gives it to no member"
	case t.Iface != iface:
		return "its pool is announced on " + t.Iface + " now"
	case r == nil:
		return "the interface's responder is closed"
	}
	if err := r.Healthy(); err != nil {
		return "the interface's responder stopped: " + err.Error()
	}
	return "the responder stopped answering for it: another host claimed it"
}

// askKept asks the wire, once, who else answers for each address this
// speaker keeps while another member owns it. An answer from another
// speaker's node reaches the claim callback, which yields the address:
// the owner took it while this speaker was cut off or starved.
func (a *Announcer) askKept(ctx context.Context, desired map[netip.Addr]Target) {
	for ip := range a.askedKept {
		if t, ok := desired[ip]; !ok || !t.Kept {
			delete(a.askedKept, ip)
		}
	}
	pc := responder.ProbeConfig{Count: 1, Wait: max(a.cfg.TakeoverCheck, 50*time.Millisecond)}
	for ip, t := range desired {
		if !t.Kept || a.askedKept[ip] {
			continue
		}
		o, own := a.owned[ip]
		r := a.responders[o.iface]
		if !own || r == nil {
			continue
		}
		a.askedKept[ip] = true
		go func() { _, _ = r.Probe(ctx, ip, pc, nil) }()
	}
}

// startedWith is the owner recorded for addresses that were allocated
// before this speaker's first decision.
const startedWith = "\x00before start"

// handedOver reports whether ip comes to this node from another member,
// as this speaker's own earlier decisions show: that member answered for it
// until now, so it was probed when first used and is not probed again.
// Addresses allocated before this speaker started count too. An address
// this speaker never saw held, or saw only in conflict, is probed.
//
// An address earlier decisions already gave this node, while the takeover
// gate waited for the member that still answered for it, comes from that
// member: a speaker that joined while its peer flapped decided the peer's
// addresses its own and waited, and when the peer then left, it probed
// each one (a second and more) instead of taking the handover.
func (a *Announcer) handedOver(ip netip.Addr) bool {
	prev, ok := a.lastOwners[ip]
	if ok && prev == a.cfg.Node {
		prev, ok = a.pendingFrom[ip]
	}
	return ok && prev != a.cfg.Node
}

func (a *Announcer) service(key string) *lbservice.Summary {
	o, ok, _ := a.cfg.Services.GetStore().GetByKey(key)
	if !ok {
		return nil
	}
	svc, _ := o.(*lbservice.Summary)
	return svc
}

func (a *Announcer) responder(iface string) (*responder.Responder, error) {
	lk := a.links.byName[iface]
	if r := a.responders[iface]; r != nil {
		if r.Healthy() == nil && lk != nil && r.Interface().Index == lk.index {
			return r, nil
		}
		a.closeResponder(iface)
	}
	r, err := responder.Open(iface, a.cfg.Metrics, a.cfg.Log, a.claim(iface))
	if err != nil {
		return nil, err
	}
	a.responders[iface] = r
	a.mu.Lock()
	a.health[iface] = responderHealth{r: r}
	a.mu.Unlock()
	go r.Refresh(a.garpCtx, a.cfg.Refresh)
	go func() {
		err := r.Serve()
		stopped := err != nil
		if err != nil && !linkUp(r.Interface().Index) {
			// The NIC went down or away under the socket: not the
			// speaker's fault, and the next reconcile closes it.
			a.cfg.Log.Info("ARP responder stopped with its NIC", "interface", iface, "err", err)
			err = nil
		}
		a.mu.Lock()
		// Only this responder's own entry: a closed one must not
		// overwrite its successor's.
		if h, ok := a.health[iface]; ok && h.r == r {
			a.health[iface] = responderHealth{r: r, err: err}
		}
		a.mu.Unlock()
		if err != nil {
			a.cfg.Log.Error("ARP responder stopped", "interface", iface, "err", err)
		}
		if stopped {
			a.poke()
		}
	}()
	return r, nil
}

func (a *Announcer) startProbe(ctx context.Context, ip netip.Addr, t Target) {
	if a.probing[ip] || time.Now().Before(a.peerHeld[ip]) {
		return
	}
	r, err := a.responder(t.Iface)
	if err != nil {
		a.cfg.Log.Warn("open ARP responder", "interface", t.Iface, "err", err)
		return
	}
	select {
	case a.probeSlots <- struct{}{}:
	default:
		return // every slot is busy; a later reconcile starts this one
	}
	a.probing[ip] = true
	pc := a.cfg.Probe
	go func() {
		// Any answer is reported, and probed decides what it is: another
		// speaker's is a member not done with the address yet, whose
		// own decision lets it go (handovers are break-before-make), so
		// the address is probed again rather than answered twice.
		mac, err := r.Probe(ctx, ip, pc, nil)
		// Free the slot before the result wakes the reconcile that
		// starts the next probe.
		<-a.probeSlots
		select {
		case a.results <- probeResult{ip: ip, svc: t.Service, iface: t.Iface, mac: mac, err: err}:
		case <-ctx.Done():
		}
	}()
}

func (a *Announcer) probed(r probeResult) {
	delete(a.probing, r.ip)
	switch {
	case r.err != nil:
		a.cfg.Log.Warn("probe address", "ip", r.ip, "err", r.err)
	case a.owners[r.ip] != a.cfg.Node:
		// The probe's premise, that this speaker owns the address, is
		// gone: what it heard matters no more.
		a.cfg.Log.Debug("probe dropped: the address is no longer this node's", "ip", r.ip)
	case r.mac != nil && a.peerMACs[r.mac.String()] != "":
		// A peer that this speaker does not count yet answers: the
		// views differ for now, and the next decisions settle it. No
		// conflict is recorded, so none can block a later takeover.
		// It is probed again in a moment, not at once: the decision this
		// result calls for finds it due again, and the peer answers as
		// fast as it is asked.
		if _, said := a.peerHeld[r.ip]; !said {
			a.cfg.Log.Info("address held by another speaker; not taking it", "ip", r.ip, "node", a.peerMACs[r.mac.String()])
		}
		a.peerHeld[r.ip] = time.Now().Add(handoverAgain)
		time.AfterFunc(handoverAgain, a.poke)
	case r.mac != nil:
		delete(a.peerHeld, r.ip)
		a.conflict(r.ip, r.mac, r.iface, r.svc, "probe")
	default:
		delete(a.peerHeld, r.ip)
		a.cleared[r.ip] = true
		a.mu.Lock()
		_, was := a.conflicts[r.ip]
		delete(a.conflicts, r.ip)
		a.mu.Unlock()
		if was {
			a.cfg.Log.Info("address free again", "ip", r.ip)
			a.reportChanged()
		}
	}
}

// claim is the responders' Claim: another host said it has an address
// this node answers for. A speaker node's claim is a handoff or a view not
// yet shared, which the next decision settles; anyone else's, a node
// without a speaker included, is a conflict.
func (a *Announcer) claim(iface string) responder.Claim {
	return func(ip netip.Addr, mac net.HardwareAddr) bool {
		// Another speaker's claim is views that differ for a moment (a
		// handoff, or a member not yet seen): the next decisions settle
		// it, and it is never a conflict.
		if m := a.claimMACs.Load(); m != nil {
			if node, peer := (*m)[mac.String()]; peer {
				// Views that differ for a moment are settled by the
				// next decisions. Meanwhile two speakers must not both
				// answer, and both must agree who keeps it from what
				// both can see: the one whose view is not to trust
				// yields (cut off, held down by most, or leaving); a
				// speaker that is no live member here never takes an
				// address from this one; one that a speaker holds down
				// by its own word (published in its meta) yields to
				// it; and otherwise the pair's own rendezvous hash
				// picks who keeps it. The keeper says so again, so
				// that the other hears it.
				keep := !a.restricted.Load() && !a.leaving.Load()
				if v := a.claimView.Load(); keep && v != nil && v.live[node] {
					switch iHold, theyHold := v.iHold[node], v.holdsMe[node]; {
					case iHold && !theyHold:
					case theyHold && !iHold:
						keep = false
					default:
						keep = owner.Pick(ip, []string{a.cfg.Node, node}) == a.cfg.Node
					}
				}
				if keep {
					a.poke()
					return false
				}
				a.claims.add(claimed{ip: ip, mac: mac, iface: iface, yield: node})
				return true
			}
		}
		a.claims.add(claimed{ip: ip, mac: mac, iface: iface})
		return true
	}
}

// takeClaims records every claim the responders queued, and returns them.
func (a *Announcer) takeClaims() []claimed {
	a.claimBuf = a.claims.take(a.claimBuf)
	for _, c := range a.claimBuf {
		a.claimedBy(c)
	}
	return a.claimBuf
}

// claimedBy records a conflict found while announcing: the responder has
// already stopped answering.
func (a *Announcer) claimedBy(c claimed) {
	o, ok := a.owned[c.ip]
	if !ok {
		return
	}
	delete(a.owned, c.ip)
	a.ownedChanged(true)
	a.cfg.Metrics.OwnershipChanges.WithLabelValues("lost").Inc()
	if c.yield != "" {
		// The responder stopped answering already; Withdraw again in
		// case this came from a kept address's probe.
		if r := a.responders[o.iface]; r != nil {
			r.Withdraw([]netip.Addr{c.ip})
		}
		a.yielded[c.ip] = c.yield
		delete(a.cleared, c.ip)
		a.cfg.Metrics.Yields.Inc()
		a.cfg.Log.Info("yielding an address to another speaker that claims it (this one is cut off, held down or stopping, or the pair's hash picks the other)", "ip", c.ip, "to", c.yield)
		a.poke()
		return
	}
	a.conflict(c.ip, c.mac, c.iface, o.svc, "announce")
}

// conflict records that mac answers for ip: this node stops announcing it
// and probes it again after a backoff, and the conflict is told through an
// Event, a metric and this node's report, from which the allocator writes
// it to the pool's status.
func (a *Announcer) conflict(ip netip.Addr, mac net.HardwareAddr, iface, svcKey, during string) {
	delete(a.cleared, ip)
	a.mu.Lock()
	c, seen := a.conflicts[ip]
	if !seen || c.mac != mac.String() {
		c = conflict{mac: mac.String(), since: time.Now(), svc: svcKey}
	}
	wait := a.cfg.Reprobe << min(c.tries, 16)
	if wait > a.cfg.MaxReprobe || wait <= 0 {
		wait = a.cfg.MaxReprobe
	}
	c.tries++
	c.retry = time.Now().Add(wait)
	a.conflicts[ip] = c
	a.mu.Unlock()
	a.cfg.Metrics.Conflicts.Inc()
	if seen {
		return
	}
	what := "is already answered"
	if during == "announce" {
		what = "was claimed while announced"
	}
	a.cfg.Log.Warn("address in use by another host; not announcing it", "ip", ip, "mac", mac.String(), "interface", iface, "found", during)
	if svc := a.service(svcKey); svc != nil {
		a.cfg.Recorder.Eventf(svc.Reference(), corev1.EventTypeWarning, "AddressConflict", "%s %s on %s by %s, a host outside the cluster; Porter stopped announcing it and probes again in %s", ip, what, iface, mac, wait)
	}
	a.reportChanged()
}

// reportChanged asks for this node's report to be published again: what
// it announces, its conflicts or the members it ignores changed.
func (a *Announcer) reportChanged() {
	if a.cfg.Changed != nil {
		a.cfg.Changed()
	}
}

// ownedChanged publishes a.owned to readers outside the run loop.
func (a *Announcer) ownedChanged(changed bool) {
	a.cfg.Metrics.OwnedIPs.Set(float64(len(a.owned)))
	if !changed && a.announced.Load() != nil {
		return
	}
	out := make([]v1alpha1.AnnouncedAddress, 0, len(a.owned))
	for ip, o := range a.owned {
		out = append(out, v1alpha1.AnnouncedAddress{Address: ip.String(), Interface: o.iface})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	a.announced.Store(&out)
	a.reportChanged()
}

// Announced is what this node answers for, sorted by address.
func (a *Announcer) Announced() []v1alpha1.AnnouncedAddress {
	if p := a.announced.Load(); p != nil {
		return *p
	}
	return nil
}

// seedConflicts takes up the conflicts this node's previous speaker
// reported: they outlive a restart, so an address found in use is probed
// again before it is announced, not taken as established.
func (a *Announcer) seedConflicts() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.cfg.Facts.Reports() {
		if r.Node != a.cfg.Node {
			continue
		}
		for _, c := range r.Conflicts {
			a.conflicts[c.IP] = conflict{mac: c.MAC, since: c.Since, retry: time.Now(), tries: 1}
		}
	}
}

// Conflicts are the addresses this speaker found answered by another host,
// for its report.
func (a *Announcer) Conflicts() []v1alpha1.AddressConflict {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]v1alpha1.AddressConflict, 0, len(a.conflicts))
	for ip, c := range a.conflicts {
		out = append(out, v1alpha1.AddressConflict{Address: ip.String(), MAC: c.mac, Since: metav1.NewTime(c.since.Truncate(time.Second))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}

// expireConflicts lets conflicting addresses whose backoff has passed be
// probed again. The conflict itself stays on record until a probe finds
// the address free.
func (a *Announcer) expireConflicts() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ip, c := range a.conflicts {
		if !time.Now().Before(c.retry) {
			delete(a.cleared, ip)
		}
	}
}

func (a *Announcer) refuse(r Refusal) {
	k := r.Service + " " + r.IP.String()
	if a.refused[k] {
		return
	}
	a.refused[k] = true
	a.cfg.Log.Warn("refusing to announce an address", "service", r.Service, "ip", r.IP, "reason", r.Reason)
	if svc := a.service(r.Service); svc != nil {
		a.cfg.Recorder.Eventf(svc.Reference(), corev1.EventTypeWarning, "AddressRefused", "%s is never announced: %s", r.IP, r.Reason)
	}
}

// localNamespaces are the namespaces of the Local Services served under
// policy.
func (a *Announcer) localNamespaces(policy *addrpolicy.Policy) map[string]bool {
	_, ns := a.services(policy)
	return ns
}
