// Package allocator gives pool addresses to Porter's LoadBalancer Services.
// Table is the bookkeeping, free of Kubernetes clients so that it can be
// tested alone; Controller drives it from the API as the elected leader.
package allocator

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/lbservice"
)

// Pool is an Eip as the allocator sees it: the pool as the address policy
// reads it, with the addresses it may not give.
type Pool struct {
	addrpolicy.Pool
	// Excluded are addresses of the range that must never be handed out,
	// each with the reason, e.g. "is the InternalIP of node orion".
	Excluded map[netip.Addr]string
	// Conflicts are addresses found answered on the wire by another host.
	Conflicts map[netip.Addr]string
}

// Request is what one Service asks for.
type Request struct {
	Key         string // namespace/name
	Namespace   string
	NSLabels    labels.Set
	Pool        string     // named by annotation, or ""
	RequestedIP netip.Addr // asked for, or invalid
	Current     netip.Addr // held now per the Service's status, or invalid
	// Share says with which Services it may share an address.
	Share lbservice.Sharing
	// Family limits the pools to one IP family; 0 takes any.
	Family lbservice.Family
}

// Slot is the key the table holds an address under: the Service's own key
// for its first address, and key|IPv4 or key|IPv6 for the other family's
// address of a dual-stack Service.
func Slot(key string, second bool, f lbservice.Family) string {
	if !second {
		return key
	}
	if f == 6 {
		return key + "|IPv6"
	}
	return key + "|IPv4"
}

// serviceOf is the Service key of a slot.
func serviceOf(slot string) string {
	if i := strings.IndexByte(slot, '|'); i >= 0 {
		return slot[:i]
	}
	return slot
}

// Errors the Controller turns into Events.
var (
	ErrNoPool    = errors.New("no pool")
	ErrExhausted = errors.New("pool exhausted")
	ErrInUse     = errors.New("address in use")
	ErrRefused   = errors.New("address refused")
)

// Table is the set of pools and which Service holds which address. It is
// not safe for concurrent use.
type Table struct {
	pools  []*Pool // by priority, then name
	byName map[string]*Pool
	// holders are the Services holding each address, first come first;
	// more than one only when they may share it.
	holders map[netip.Addr][]string
	shares  map[string]lbservice.Sharing
	held    map[string]netip.Addr
	cursors map[string]netip.Addr
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{
		byName:  map[string]*Pool{},
		holders: map[netip.Addr][]string{},
		shares:  map[string]lbservice.Sharing{},
		held:    map[string]netip.Addr{},
		cursors: map[string]netip.Addr{},
	}
}

// SetPools replaces the pools. Held addresses stay held, even when their
// pool went away, until their Services are reconciled again.
func (t *Table) SetPools(pools []Pool) {
	old := t.byName
	t.pools = t.pools[:0]
	t.byName = make(map[string]*Pool, len(pools))
	for i := range pools {
		p := pools[i]
		t.pools = append(t.pools, &p)
		t.byName[p.Name] = &p
	}
	// A pool deleted, or made anew under the same name, starts from its
	// first address again: the cursor belonged to the old one.
	for name := range t.cursors {
		if p, o := t.byName[name], old[name]; p == nil || o == nil || !p.Created.Equal(o.Created) {
			delete(t.cursors, name)
		}
	}
	sort.SliceStable(t.pools, func(i, j int) bool {
		if t.pools[i].Priority != t.pools[j].Priority {
			return t.pools[i].Priority < t.pools[j].Priority
		}
		return t.pools[i].Name < t.pools[j].Name
	})
}

// Pools returns the pools in preference order.
func (t *Table) Pools() []*Pool { return t.pools }

// Same reports whether pools would allocate exactly as the table's pools
// do: same ranges, rules, exclusions and conflicts.
func (t *Table) Same(pools []Pool) bool {
	if len(pools) != len(t.pools) {
		return false
	}
	for i := range pools {
		p, q := &pools[i], t.byName[pools[i].Name]
		if q == nil || p.Range != q.Range || !p.Created.Equal(q.Created) || p.Default != q.Default || p.Disabled != q.Disabled || p.Priority != q.Priority ||
			!slices.Equal(p.Namespaces, q.Namespaces) || selectorString(p.Selector) != selectorString(q.Selector) ||
			!maps.Equal(p.Excluded, q.Excluded) || !maps.Equal(p.Conflicts, q.Conflicts) {
			return false
		}
	}
	return true
}

func selectorString(s labels.Selector) string {
	if s == nil {
		return ""
	}
	return s.String()
}

// PoolOf returns the pool that holds ip, preferring the one named.
func (t *Table) PoolOf(ip netip.Addr, named string) *Pool {
	if p := t.byName[named]; p != nil && p.Range.Contains(ip) {
		return p
	}
	for _, p := range t.pools {
		if p.Range.Contains(ip) {
			return p
		}
	}
	return nil
}

// Claim records that key holds ip, as read from the API at start. It
// returns false, changing nothing, when other Services hold ip already
// and key may not share it with them.
func (t *Table) Claim(key string, ip netip.Addr, share lbservice.Sharing) bool {
	if _, err := t.joinable(key, ip, share); err != nil {
		return false
	}
	t.Release(key)
	t.holders[ip] = append(t.holders[ip], key)
	t.shares[key] = share
	t.held[key] = ip
	return true
}

// joinable reports whether key may hold ip beside its holders: it holds
// it already, nobody does, or it may share with each of them. The error
// names the holder and why not.
func (t *Table) joinable(key string, ip netip.Addr, share lbservice.Sharing) (bool, error) {
	hs := t.holders[ip]
	if len(hs) == 0 || slices.Contains(hs, key) {
		return true, nil
	}
	for _, h := range hs {
		if err := share.CanShareWith(t.shares[h]); err != nil {
			return false, fmt.Errorf("%w: %s is held by Service %s, which may not share it with this one: %w", ErrInUse, ip, h, err)
		}
	}
	return true, nil
}

// Unassign takes back an Assign whose write failed: the address is free
// again and, if it was the last one given, the next Assign may give it
// again, so that a retry gets the same address.
func (t *Table) Unassign(key string, ip netip.Addr) {
	if t.held[key] == ip {
		t.Release(key)
	}
	for name, c := range t.cursors {
		if c == ip {
			if p := t.byName[name]; p != nil && ip != p.Range.First {
				t.cursors[name] = ip.Prev()
			} else {
				delete(t.cursors, name)
			}
		}
	}
}

// Release returns whatever key holds to the pools; a shared address
// stays with its other holders.
func (t *Table) Release(key string) (netip.Addr, bool) {
	ip, ok := t.held[key]
	if ok {
		delete(t.held, key)
		delete(t.shares, key)
		hs := slices.DeleteFunc(t.holders[ip], func(h string) bool { return h == key })
		if len(hs) == 0 {
			delete(t.holders, ip)
		} else {
			t.holders[ip] = hs
		}
	}
	return ip, ok
}

// Holder is the Service holding ip, the first of them when shared, or "".
func (t *Table) Holder(ip netip.Addr) string {
	if hs := t.holders[ip]; len(hs) > 0 {
		return hs[0]
	}
	return ""
}

// Holders are the Services holding ip.
func (t *Table) Holders(ip netip.Addr) []string { return slices.Clone(t.holders[ip]) }

// Held is the address key holds.
func (t *Table) Held(key string) (netip.Addr, bool) {
	ip, ok := t.held[key]
	return ip, ok
}

// Used lists, for the pool, each held address and its holder.
func (t *Table) Used(p *Pool) map[string]string {
	m := map[string]string{}
	for ip, hs := range t.holders {
		if p.Range.Contains(ip) {
			svcs := make([]string, len(hs))
			for i, h := range hs {
				svcs[i] = serviceOf(h)
			}
			m[ip.String()] = strings.Join(svcs, ",")
		}
	}
	return m
}

// candidates are the pools r may draw from, in preference order.
func (t *Table) candidates(r Request) ([]*Pool, error) {
	fits := func(p *Pool) bool { return r.Family == 0 || lbservice.FamilyOf(p.Range.First) == r.Family }
	// A pool named holds one family; a dual-stack Service draws the
	// other family from the pools it would use naming none.
	if named := t.byName[r.Pool]; r.Pool != "" && (named == nil || fits(named)) {
		p := named
		switch {
		case p == nil:
			return nil, fmt.Errorf("%w: the Eip %q named by the Service does not exist or is not a layer2 pool", ErrNoPool, r.Pool)
		case !p.Admits(r.Namespace, r.NSLabels):
			return nil, fmt.Errorf("%w: the Eip %q does not serve namespace %s", ErrNoPool, r.Pool, r.Namespace)
		}
		return []*Pool{p}, nil
	}
	var out []*Pool
	// Pools that pick the namespace out come before the default pool.
	for _, p := range t.pools {
		if p.Restricted() && p.Admits(r.Namespace, r.NSLabels) && fits(p) {
			out = append(out, p)
		}
	}
	for _, p := range t.pools {
		if p.Default && !p.Restricted() && fits(p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		family := ""
		if r.Family != 0 {
			family = fmt.Sprintf(" of IPv%d", r.Family)
		}
		return nil, fmt.Errorf("%w: the Service names no Eip%s and there is no default Eip%s (annotation %s=\"true\") for namespace %s", ErrNoPool, family, family, "eip.openelb.kubesphere.io/is-default-eip", r.Namespace)
	}
	return out, nil
}

// Assign gives r an address: the one it holds if that is still right,
// else the requested one, else the first free one of the first pool with
// room. Disabled pools keep what they gave but give nothing new.
func (t *Table) Assign(r Request) (netip.Addr, *Pool, error) {
	pools, err := t.candidates(r)
	if err != nil {
		return netip.Addr{}, nil, err
	}
	if r.Current.IsValid() && (!r.RequestedIP.IsValid() || r.RequestedIP == r.Current) && slices.Contains(t.holders[r.Current], r.Key) {
		for _, p := range pools {
			if p.Range.Contains(r.Current) {
				if _, bad := p.Excluded[r.Current]; !bad {
					return r.Current, p, nil
				}
			}
		}
	}
	if r.RequestedIP.IsValid() {
		return t.assignRequested(r, pools)
	}
	if ip, p, ok := t.shareable(r, pools); ok {
		t.Claim(r.Key, ip, r.Share)
		return ip, p, nil
	}
	var full []string
	for _, p := range pools {
		if p.Disabled {
			full = append(full, p.Name+" (disabled)")
			continue
		}
		if ip, ok := t.free(p); ok {
			t.Claim(r.Key, ip, r.Share)
			t.cursors[p.Name] = ip
			return ip, p, nil
		}
		full = append(full, p.Name)
	}
	return netip.Addr{}, nil, fmt.Errorf("%w: no free address in %s", ErrExhausted, strings.Join(full, ", "))
}

func (t *Table) assignRequested(r Request, pools []*Pool) (netip.Addr, *Pool, error) {
	ip := r.RequestedIP
	for _, p := range pools {
		if !p.Range.Contains(ip) {
			continue
		}
		if why, bad := p.Excluded[ip]; bad {
			return netip.Addr{}, p, fmt.Errorf("%w: %s %s", ErrRefused, ip, why)
		}
		if _, err := t.joinable(r.Key, ip, r.Share); err != nil {
			return netip.Addr{}, p, err
		}
		if p.Disabled && !slices.Contains(t.holders[ip], r.Key) {
			return netip.Addr{}, p, fmt.Errorf("%w: the Eip %s is disabled", ErrNoPool, p.Name)
		}
		t.Claim(r.Key, ip, r.Share)
		return ip, p, nil
	}
	names := make([]string, 0, len(pools))
	for _, p := range pools {
		names = append(names, p.Name+" ("+p.Range.String()+")")
	}
	return netip.Addr{}, nil, fmt.Errorf("%w: the requested %s is in none of the pools the Service may use: %s", ErrNoPool, ip, strings.Join(names, ", "))
}

// shareable finds, for a Service with a sharing key, the lowest address
// of its pools already held by Services it may share with, so that
// Services meant to share do.
func (t *Table) shareable(r Request, pools []*Pool) (netip.Addr, *Pool, bool) {
	if r.Share.Key == "" {
		return netip.Addr{}, nil, false
	}
	var best netip.Addr
	var bestPool *Pool
	for ip := range t.holders {
		if best.IsValid() && ip.Compare(best) >= 0 {
			continue
		}
		for _, p := range pools {
			if p.Disabled || !p.Range.Contains(ip) {
				continue
			}
			if _, bad := p.Excluded[ip]; bad {
				continue
			}
			if ok, _ := t.joinable(r.Key, ip, r.Share); ok {
				best, bestPool = ip, p
			}
			break
		}
	}
	return best, bestPool, best.IsValid()
}

// free finds an unheld, allowed address of p, starting after the last one
// given so that released addresses are not reused at once (clients may
// still cache them).
func (t *Table) free(p *Pool) (netip.Addr, bool) {
	start := p.Range.First
	if c, ok := t.cursors[p.Name]; ok && p.Range.Contains(c) && c != p.Range.Last {
		start = c.Next()
	}
	ip := start
	for {
		held := len(t.holders[ip]) > 0
		_, excluded := p.Excluded[ip]
		_, conflict := p.Conflicts[ip]
		if !held && !excluded && !conflict {
			return ip, true
		}
		if ip == p.Range.Last {
			ip = p.Range.First
		} else {
			ip = ip.Next()
		}
		if ip == start {
			return netip.Addr{}, false
		}
	}
}
