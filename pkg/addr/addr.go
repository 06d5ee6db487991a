// Package addr is Porter's address math: parsing pool addresses (one IP, a
// CIDR or a range "a-b") into inclusive ranges, and comparing ranges.
package addr

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
)

// MaxPoolSize bounds a pool. Larger pools are almost always a typo (an IPv6
// /64, a missing octet) and would make per-address bookkeeping costly.
const MaxPoolSize = 65536

// Range is an inclusive range of addresses of one family.
type Range struct {
	First, Last netip.Addr
}

// ErrTooLarge is wrapped by Parse errors for pools over MaxPoolSize.
var ErrTooLarge = errors.New("pool too large")

// Parse reads a pool address as Eip.spec.address holds it: "192.0.2.10",
// "192.0.2.0/28" or "192.0.2.10-192.0.2.20". A CIDR covers every address
// in it, network and broadcast included, as OpenELB reads it.
func Parse(s string) (Range, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return Range{}, errors.New("address is empty: want an IP, a CIDR like 192.0.2.0/28, or a range like 192.0.2.10-192.0.2.20")
	}
	var r Range
	switch {
	case strings.Contains(in, "-"):
		a, b, _ := strings.Cut(in, "-")
		first, err := parseIP(strings.TrimSpace(a))
		if err != nil {
			return Range{}, fmt.Errorf("range %q: start: %w", s, err)
		}
		last, err := parseIP(strings.TrimSpace(b))
		if err != nil {
			return Range{}, fmt.Errorf("range %q: end: %w", s, err)
		}
		if first.Is4() != last.Is4() {
			return Range{}, fmt.Errorf("range %q mixes IPv4 and IPv6", s)
		}
		if last.Less(first) {
			return Range{}, fmt.Errorf("range %q is reversed: %s comes after %s", s, first, last)
		}
		r = Range{first, last}
	case strings.Contains(in, "/"):
		p, err := netip.ParsePrefix(in)
		if err != nil {
			return Range{}, fmt.Errorf("CIDR %q: %w", s, cleanErr(err))
		}
		if p.Addr().Zone() != "" {
			return Range{}, fmt.Errorf("CIDR %q: zones are not allowed", s)
		}
		p = UnmapPrefix(p)
		r = PrefixRange(p.Masked())
		if m := p.Masked(); m != p {
			return Range{}, fmt.Errorf("CIDR %q has host bits set: did you mean %s?", s, m)
		}
	default:
		ip, err := parseIP(in)
		if err != nil {
			return Range{}, fmt.Errorf("address %q: %w", s, err)
		}
		r = Range{ip, ip}
	}
	if n := r.Size(); n.Cmp(big.NewInt(MaxPoolSize)) > 0 {
		return Range{}, fmt.Errorf("%q holds %s addresses, more than %d: %w", s, n, MaxPoolSize, ErrTooLarge)
	}
	return r, nil
}

func parseIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, cleanErr(err)
	}
	if ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	// An IPv4-mapped IPv6 address is IPv4 in disguise; comparing it with
	// IPv4 node addresses must work, so it is stored as IPv4.
	return ip.Unmap(), nil
}

// cleanErr drops netip's echo of the input, which callers already quote.
func cleanErr(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return errors.New(msg)
}

// UnmapPrefix turns an IPv4-mapped IPv6 prefix such as ::ffff:192.0.2.0/120
// into the IPv4 prefix it stands for, so that it is compared with IPv4
// addresses as what it is. Other prefixes are returned as they are.
func UnmapPrefix(p netip.Prefix) netip.Prefix {
	if !p.Addr().Is4In6() || p.Bits() < 96 {
		return p
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
}

// PrefixRange is the range a prefix covers.
func PrefixRange(p netip.Prefix) Range {
	p = p.Masked()
	first := p.Addr()
	b := first.AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	last, _ := netip.AddrFromSlice(b)
	return Range{first, last}
}

// Is4 reports whether the range is IPv4.
func (r Range) Is4() bool { return r.First.Is4() }

// Size is how many addresses the range holds.
func (r Range) Size() *big.Int {
	d := new(big.Int).Sub(toInt(r.Last), toInt(r.First))
	return d.Add(d, big.NewInt(1))
}

// Contains reports whether ip is in the range.
func (r Range) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.Is4() == r.Is4() && r.First.Compare(ip) <= 0 && ip.Compare(r.Last) <= 0
}

// Overlaps reports whether the ranges share an address.
func (r Range) Overlaps(o Range) bool {
	return r.Is4() == o.Is4() && r.First.Compare(o.Last) <= 0 && o.First.Compare(r.Last) <= 0
}

// Intersect returns the shared part of two ranges, if any.
func (r Range) Intersect(o Range) (Range, bool) {
	if !r.Overlaps(o) {
		return Range{}, false
	}
	first, last := r.First, r.Last
	if o.First.Compare(first) > 0 {
		first = o.First
	}
	if o.Last.Compare(last) < 0 {
		last = o.Last
	}
	return Range{first, last}, true
}

// String is the canonical pool form: one IP, or "first-last".
func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

func toInt(a netip.Addr) *big.Int {
	return new(big.Int).SetBytes(a.AsSlice())
}
