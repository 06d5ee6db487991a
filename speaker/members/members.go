// Package members is the speakers' failure detector: a SWIM gossip group
// (hashicorp/memberlist) with timers tuned so that a dead speaker is known
// to all others well under a second, and a leaving one at once.
package members

import (
	"bytes"
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
	// ProbeInterval sets the failure detector's pace; zero means 100ms.
	// Detection takes about ProbeInterval + ProbeTimeout + 2×ProbeInterval
	// of suspicion, plus gossip.
	ProbeInterval time.Duration
	// SecretKey, when set, encrypts and authenticates gossip (16, 24 or 32
	// bytes).
	SecretKey []byte
	Log       *slog.Logger
}

// Members is this speaker's view of which speakers are alive.
type Members struct {
	ml  *memberlist.Memberlist
	log *slog.Logger

	mu   sync.Mutex
	meta []byte
	subs []chan struct{}
}

// Start creates the member and listens. It does not join anyone yet.
func Start(cfg Config) (*Members, error) {
	m := &Members{log: cfg.Log}
	c := memberlist.DefaultLANConfig()
	c.Name = cfg.Name
	c.BindAddr = cfg.BindAddr
	c.BindPort = cfg.Port
	c.AdvertiseAddr = cfg.BindAddr
	c.AdvertisePort = cfg.Port
	tune(c, cfg.ProbeInterval)
	c.SecretKey = cfg.SecretKey
	c.Events = m
	c.Delegate = m
	c.LogOutput = logWriter{cfg.Log}
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("start membership on %s: %w", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Port)), err)
	}
	m.ml = ml
	return m, nil
}

// tune sets the timers. The defaults are for WANs and large groups and
// take seconds; a LAN of nodes round-trips in well under a millisecond.
func tune(c *memberlist.Config, probe time.Duration) {
	if probe <= 0 {
		probe = 100 * time.Millisecond
	}
	c.ProbeInterval = probe
	c.ProbeTimeout = probe * 8 / 10
	// Suspicion lasts SuspicionMult × ProbeInterval (for groups under ten),
	// long enough for a suspected node to refute over a lost packet or two.
	c.SuspicionMult = 2
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
func (m *Members) NotifyJoin(n *memberlist.Node) {
	m.log.Info("member joined", "member", n.Name, "address", n.Address())
	m.notify()
}

func (m *Members) NotifyLeave(n *memberlist.Node) {
	m.log.Info("member left or failed", "member", n.Name, "address", n.Address())
	m.notify()
}

func (m *Members) NotifyUpdate(*memberlist.Node) { m.notify() }

// NodeMeta implements memberlist.Delegate.
func (m *Members) NodeMeta(limit int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.meta) > limit {
		return nil
	}
	return slices.Clone(m.meta)
}

func (m *Members) NotifyMsg([]byte)                           {}
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
	out := map[string][]byte{}
	for _, n := range m.ml.Members() {
		out[n.Name] = n.Meta
	}
	return out
}

// Address is where peers reach this member.
func (m *Members) Address() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Join contacts every address not already a live member, all at once, and
// returns how many answered. An unreachable peer costs one TCP timeout, not
// one per peer.
func (m *Members) Join(addrs []string) int {
	live := map[string]bool{}
	for _, n := range m.ml.Members() {
		live[net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))] = true
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
	err := m.ml.Leave(timeout)
	if serr := m.ml.Shutdown(); err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("leave membership: %w", err)
	}
	return nil
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
