// Package members is the speakers' failure detector: a SWIM gossip group
// (hashicorp/memberlist) with timers tuned so that a dead speaker is known
// to all others well under a second, and a leaving one at once.
package members

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config sets up one member.
type Config struct {
	// Name is the node name; it must be unique in the cluster.
	Name string
	// BindAddr is the node address peers reach; Port its UDP and TCP port.
	BindAddr string
	Port     int
	// ProbeInterval sets the failure detector's pace; zero means 80ms.
	// A dead member is found in at most about four intervals: up to two
	// before a peer probes it (each peer probes one member per interval),
	// one for the probe and its indirect probes, and one of suspicion.
	ProbeInterval time.Duration
	// Keys encrypt and authenticate gossip, the first one the primary;
	// none leaves gossip open to anyone who can reach the port, for
	// --insecure-member only.
	Keys [][]byte
	Log  *slog.Logger
}

// Members is this speaker's view of which speakers are alive.
type Members struct {
	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring
	log     *slog.Logger
	addr    string

	mu       sync.Mutex
	meta     []byte
	subs     []chan struct{}
	peers    map[string]Peer // the live members, as the events told them
	departed map[string]Departure
	leaving  map[string]time.Time // peers that said they are leaving
	// failures are, by member, when it was last found failed (not left),
	// newest last; returned, when it came back after its last failure.
	failures map[string][]time.Time
	returned map[string]time.Time
	name     string
}

// Start creates the member and listens. It does not join anyone yet.
func Start(cfg Config) (*Members, error) {
	m := &Members{log: cfg.Log, name: cfg.Name}
	c := memberlist.DefaultLANConfig()
	c.Name = cfg.Name
	c.BindAddr = cfg.BindAddr
	c.BindPort = cfg.Port
	c.AdvertiseAddr = cfg.BindAddr
	c.AdvertisePort = cfg.Port
	tune(c, cfg.ProbeInterval)
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("load member keys: %w", err)
		}
		c.Keyring, m.keyring = kr, kr
		c.GossipVerifyIncoming, c.GossipVerifyOutgoing = true, true
	}
	c.Events = m
	c.Delegate = m
	c.LogOutput = logWriter{cfg.Log}
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("start membership on %s: %w", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Port)), err)
	}
	m.ml = ml
	n := ml.LocalNode()
	m.addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	return m, nil
}

// tune sets the timers. The defaults are for WANs and large groups and
// take seconds; a LAN of nodes round-trips in well under a millisecond.
func tune(c *memberlist.Config, probe time.Duration) {
	if probe <= 0 {
		probe = 80 * time.Millisecond
	}
	c.ProbeInterval = probe
	c.ProbeTimeout = probe * 8 / 10
	// Suspicion lasts SuspicionMult × ProbeInterval (for groups under ten;
	// memberlist scales it by log10 of the group's size beyond that). One
	// interval is enough for a suspected member to refute over the LAN,
	// and a member wrongly found dead moves nothing: the takeover gate
	// asks the wire before any address is taken, and damping holds the
	// member down when it comes back.
	c.SuspicionMult = 1
	c.SuspicionMaxTimeoutMult = 3
	c.IndirectChecks = 2
	// Lifeguard stretches timeouts on a slow local node; bounded so that a
	// busy node still detects deaths in about a second.
	c.AwarenessMaxMultiplier = 3
	c.GossipInterval = probe / 5
	c.GossipNodes = 4
	c.RetransmitMult = 4
	c.PushPullInterval = 15 * time.Second
	c.TCPTimeout = 2 * time.Second
	c.DeadNodeReclaimTime = probe * 10
}

// Subscribe returns a channel that receives a value whenever membership or
// a member's meta changed. Changes that come while the last one is unread
// are folded into it.
func (m *Members) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	m.subs = append(m.subs, ch)
	m.mu.Unlock()
	return ch
}

func (m *Members) notify() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// NotifyJoin, NotifyLeave and NotifyUpdate implement memberlist.EventDelegate.
// memberlist calls them under its own lock; the nodes it hands out
// elsewhere (Members, LocalNode) are its live state, rewritten without
// that lock being available to readers, so the view is copied here.
func (m *Members) NotifyJoin(n *memberlist.Node) {
	m.log.Info("member joined", "member", n.Name, "address", n.Address())
	m.mu.Lock()
	if d, ok := m.departed[n.Name]; ok && !d.Left {
		if m.returned == nil {
			m.returned = map[string]time.Time{}
		}
		m.returned[n.Name] = time.Now()
	}
	m.mu.Unlock()
	m.set(n)
	m.notify()
}

func (m *Members) NotifyLeave(n *memberlist.Node) {
	m.mu.Lock()
	at, said := m.leaving[n.Name]
	left := said && time.Since(at) < leavingFor
	delete(m.leaving, n.Name)
	m.mu.Unlock()
	m.log.Info("member left or failed", "member", n.Name, "address", n.Address(), "left", left)
	m.mu.Lock()
	delete(m.peers, n.Name)
	if m.departed == nil {
		m.departed = map[string]Departure{}
	}
	now := time.Now()
	m.departed[n.Name] = Departure{At: now, Left: left}
	if !left {
		if m.failures == nil {
			m.failures = map[string][]time.Time{}
		}
		f := append(m.failures[n.Name], now)
		m.failures[n.Name] = f[max(0, len(f)-maxFailures):]
	}
	m.mu.Unlock()
	m.notify()
}

// Departure is how a member stopped being live.
type Departure struct {
	At time.Time
	// Left is true when it said it was leaving (a graceful stop), false
	// when the others found it failed: dead, cut off from gossip, or too
	// starved of CPU to answer.
	Left bool
}

// maxFailures is how many failures of a member are kept: enough to reach
// any hold-down cap.
const maxFailures = 16

// Flaps are the times name was found failed, oldest first, and when it
// last came back after a failure (zero if it has not).
func (m *Members) Flaps(name string) (failures []time.Time, returned time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.failures[name]), m.returned[name]
}

// ForgetFailures drops the failures found since since: a speaker that was
// cut off from the others saw each of them fail, and those were its own
// isolation, not theirs.
func (m *Members) ForgetFailures(since time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, fs := range m.failures {
		kept := fs[:0]
		for _, f := range fs {
			if f.Before(since) {
				kept = append(kept, f)
			}
		}
		m.failures[name] = kept
	}
}

// Departed tells how name last stopped being live; ok is false when it is
// live or never was.
func (m *Members) Departed(name string) (Departure, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, live := m.peers[name]; live {
		return Departure{}, false
	}
	d, ok := m.departed[name]
	return d, ok
}

func (m *Members) NotifyUpdate(n *memberlist.Node) {
	m.set(n)
	m.notify()
}

func (m *Members) set(n *memberlist.Node) {
	p := Peer{Name: n.Name, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), Meta: slices.Clone(n.Meta)}
	m.mu.Lock()
	if m.peers == nil {
		m.peers = map[string]Peer{}
	}
	m.peers[n.Name] = p
	m.mu.Unlock()
}

// NodeMeta implements memberlist.Delegate.
func (m *Members) NodeMeta(limit int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.meta) > limit {
		return nil
	}
	return slices.Clone(m.meta)
}

// NotifyMsg takes a peer's word that it is leaving. memberlist's own
// leave cannot be told from a failure by its events (the state it passes
// along is not updated), so a leaving member says so first.
func (m *Members) NotifyMsg(b []byte) {
	name, ok := strings.CutPrefix(string(b), leavingPrefix)
	if !ok {
		return
	}
	m.mu.Lock()
	if m.leaving == nil {
		m.leaving = map[string]time.Time{}
	}
	m.leaving[name] = time.Now()
	// The word can come after gossip already found the member gone: a
	// peer that suspected it declares it dead in its own name, which
	// reads as a failure. A leave just told is a leave: no takeover
	// check, no hold-down.
	_, live := m.peers[name]
	d, gone := m.departed[name]
	late := gone && !live && !d.Left && time.Since(d.At) < leaveLate
	if late {
		m.departed[name] = Departure{At: d.At, Left: true}
		if f := m.failures[name]; len(f) > 0 && f[len(f)-1].Equal(d.At) {
			m.failures[name] = f[:len(f)-1]
		}
	}
	m.mu.Unlock()
	if late {
		m.log.Info("member said it leaves after it was found failed: it left", "member", name)
		m.notify()
	}
}

// leaveLate is how long after a member was found failed its word that it
// leaves still makes it a leave.
const leaveLate = 2 * time.Second

// leavingPrefix starts the message a member sends its peers before it
// leaves. Gossip is authenticated, so nobody without the key can send it.
const leavingPrefix = "porter-leaving:"

// leavingFor is how long a peer's word that it is leaving holds.
const leavingFor = 10 * time.Second

func (m *Members) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (m *Members) LocalState(join bool) []byte                { return nil }
func (m *Members) MergeRemoteState(buf []byte, join bool)     {}

// MaxMeta is the most meta a member can carry.
const MaxMeta = memberlist.MetaMaxSize

// SetMeta publishes meta for this member, if it changed.
func (m *Members) SetMeta(meta []byte) error {
	if len(meta) > MaxMeta {
		return fmt.Errorf("member meta of %d bytes exceeds %d", len(meta), MaxMeta)
	}
	m.mu.Lock()
	same := bytes.Equal(m.meta, meta)
	m.meta = slices.Clone(meta)
	m.mu.Unlock()
	if same {
		return nil
	}
	if err := m.ml.UpdateNode(time.Second); err != nil {
		return fmt.Errorf("publish member meta: %w", err)
	}
	return nil
}

// Live returns the meta of every live member, by name, itself included.
func (m *Members) Live() map[string][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(m.peers))
	for name, p := range m.peers {
		out[name] = p.Meta
	}
	return out
}

// Peer is a live member as gossip tells it.
type Peer struct {
	Name string
	Addr string // host:port
	Meta []byte
}

// Peers are the live members, itself included.
func (m *Members) Peers() []Peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Peer, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, p)
	}
	return out
}

// Address is where peers reach this member. It is read once, at Start:
// memberlist's LocalNode is its live state, which UpdateNode rewrites
// without a lock readers could take.
func (m *Members) Address() string { return m.addr }

// Join contacts every address not already a live member, all at once, and
// returns how many answered. An unreachable peer costs one TCP timeout, not
// one per peer.
func (m *Members) Join(addrs []string) int {
	live := map[string]bool{}
	for _, p := range m.Peers() {
		live[p.Addr] = true
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	joined := 0
	for _, a := range addrs {
		if live[a] || a == m.Address() {
			continue
		}
		wg.Go(func() {
			n, err := m.ml.Join([]string{a})
			if err != nil {
				m.log.Debug("join peer", "peer", a, "err", err)
			}
			mu.Lock()
			joined += n
			mu.Unlock()
		})
	}
	wg.Wait()
	return joined
}

// Leave tells the others this member is going, so they take over without
// waiting to detect a failure, then stops.
func (m *Members) Leave(timeout time.Duration) error {
	// Say so first, twice over UDP, as one datagram may be lost.
	msg := []byte(leavingPrefix + m.name)
	for range 2 {
		for _, p := range m.Peers() {
			if p.Name == m.name {
				continue
			}
			host, port, err := net.SplitHostPort(p.Addr)
			if err != nil {
				continue
			}
			pn, _ := strconv.Atoi(port)
			to := &memberlist.Node{Name: p.Name, Addr: net.ParseIP(host), Port: uint16(pn)}
			if err := m.ml.SendBestEffort(to, msg); err != nil {
				m.log.Debug("tell a peer this member leaves", "peer", p.Name, "err", err)
			}
		}
	}
	err := m.ml.Leave(timeout)
	if serr := m.ml.Shutdown(); err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("leave membership: %w", err)
	}
	return nil
}

// SetKeys replaces the keys gossip is accepted under and makes keys[0]
// the one it is sent with. A member started without keys cannot take
// them later: it would stop understanding every peer at once.
func (m *Members) SetKeys(keys [][]byte) error {
	if m.keyring == nil {
		return errors.New("membership started without a key; restart the speaker to use one")
	}
	if len(keys) == 0 {
		return errors.New("no key")
	}
	for _, k := range keys {
		if err := m.keyring.AddKey(k); err != nil {
			return fmt.Errorf("add member key: %w", err)
		}
	}
	if err := m.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("use member key: %w", err)
	}
	for _, k := range m.keyring.GetKeys() {
		if !slices.ContainsFunc(keys, func(o []byte) bool { return bytes.Equal(o, k) }) {
			if err := m.keyring.RemoveKey(k); err != nil {
				return fmt.Errorf("remove member key: %w", err)
			}
		}
	}
	return nil
}

// Keys are the keys gossip is accepted under, the primary first; nil
// when gossip is open.
func (m *Members) Keys() [][]byte {
	if m.keyring == nil {
		return nil
	}
	primary := m.keyring.GetPrimaryKey()
	out := [][]byte{primary}
	for _, k := range m.keyring.GetKeys() {
		if !bytes.Equal(k, primary) {
			out = append(out, k)
		}
	}
	return out
}

// Shutdown stops without telling anyone.
func (m *Members) Shutdown() error { return m.ml.Shutdown() }

// logWriter sends memberlist's log lines to slog, at debug level except
// for its warnings and errors.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.Contains(line, "[ERR]"):
		w.log.Warn("membership", "detail", line)
	case strings.Contains(line, "[WARN]"):
		w.log.Debug("membership", "detail", line)
	default:
		w.log.Debug("membership", "detail", line)
	}
	return len(p), nil
}
