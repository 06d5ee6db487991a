package addr

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in          string
		first, last string
		size        int64
	}{
		{"192.0.2.10", "192.0.2.10", "192.0.2.10", 1},
		{" 192.0.2.10 ", "192.0.2.10", "192.0.2.10", 1},
		{"192.0.2.0/30", "192.0.2.0", "192.0.2.3", 4},
		{"192.0.2.7/32", "192.0.2.7", "192.0.2.7", 1},
		{"10.13.15.200-10.13.15.202", "10.13.15.200", "10.13.15.202", 3},
		{"198.18.0.1 - 198.18.0.1", "198.18.0.1", "198.18.0.1", 1},
		{"198.18.0.0-198.18.255.255", "198.18.0.0", "198.18.255.255", 65536},
		{"2001:db8::1-2001:db8::ff", "2001:db8::1", "2001:db8::ff", 255},
		{"2001:db8::/112", "2001:db8::", "2001:db8::ffff", 65536},
		{"::ffff:192.0.2.1", "192.0.2.1", "192.0.2.1", 1},
		{"::ffff:198.18.0.0/120", "198.18.0.0", "198.18.0.255", 256},
		{"::ffff:198.18.0.0-::ffff:198.18.0.9", "198.18.0.0", "198.18.0.9", 10},
	} {
		r, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if r.First.String() != c.first || r.Last.String() != c.last || r.Size().Int64() != c.size {
			t.Errorf("Parse(%q) = %s (%s), want %s-%s (%d)", c.in, r, r.Size(), c.first, c.last, c.size)
		}
	}
}

func TestParseRefusals(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "address is empty"},
		{"   ", "address is empty"},
		{"banana", `address "banana": `},
		{"192.0.2.300", `address "192.0.2.300": `},
		{"192.0.2.20-192.0.2.10", `range "192.0.2.20-192.0.2.10" is reversed: 192.0.2.20 comes after 192.0.2.10`},
		{"192.0.2.1-2001:db8::1", "mixes IPv4 and IPv6"},
		{"192.0.2.1-", `range "192.0.2.1-": end: `},
		{"-192.0.2.1", `range "-192.0.2.1": start: `},
		{"192.0.2.1-192.0.2.2-192.0.2.3", "end: "},
		{"192.0.2.0/33", `CIDR "192.0.2.0/33": `},
		{"192.0.2.5/24", "has host bits set: did you mean 192.0.2.0/24?"},
		{"10.0.0.0/8", "more than 65536"},
		{"2001:db8::/64", "more than 65536"},
		{"10.0.0.0-10.1.0.0", "holds 65537 addresses"},
		{"fe80::1%eth0", "zones are not allowed"},
	} {
		_, err := Parse(c.in)
		if err == nil {
			t.Errorf("Parse(%q): want an error containing %q", c.in, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %q, want it to contain %q", c.in, err, c.want)
		}
	}
	if _, err := Parse("10.0.0.0/8"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a pool over the limit must wrap ErrTooLarge, got %v", err)
	}
}

func TestRangeRelations(t *testing.T) {
	r := must(t, "198.18.0.10-198.18.0.20")
	for _, c := range []struct {
		other    string
		overlaps bool
		inter    string
	}{
		{"198.18.0.0-198.18.0.9", false, ""},
		{"198.18.0.0-198.18.0.10", true, "198.18.0.10"},
		{"198.18.0.15", true, "198.18.0.15"},
		{"198.18.0.20-198.18.0.30", true, "198.18.0.20"},
		{"198.18.0.0/24", true, "198.18.0.10-198.18.0.20"},
		{"198.18.0.21-198.18.0.30", false, ""},
		{"2001:db8::/120", false, ""},
	} {
		o := must(t, c.other)
		if got := r.Overlaps(o); got != c.overlaps || o.Overlaps(r) != c.overlaps {
			t.Errorf("%s overlaps %s = %v, want %v", r, o, got, c.overlaps)
		}
		in, ok := r.Intersect(o)
		if ok != c.overlaps || (ok && in.String() != c.inter) {
			t.Errorf("%s ∩ %s = %s %v, want %q", r, o, in, ok, c.inter)
		}
	}
	if !r.Contains(netip.MustParseAddr("198.18.0.10")) || !r.Contains(netip.MustParseAddr("::ffff:198.18.0.20")) {
		t.Error("Contains misses an edge")
	}
	if r.Contains(netip.MustParseAddr("198.18.0.21")) || r.Contains(netip.MustParseAddr("2001:db8::a")) {
		t.Error("Contains holds an outside address")
	}
}

func TestPrefixRange(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.0.0/24":  "198.18.0.0-198.18.0.255",
		"198.18.0.77/25": "198.18.0.0-198.18.0.127",
		"0.0.0.0/0":      "0.0.0.0-255.255.255.255",
		"2001:db8::/126": "2001:db8::-2001:db8::3",
		"192.0.2.1/32":   "192.0.2.1",
	} {
		if got := PrefixRange(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("PrefixRange(%s) = %s, want %s", in, got, want)
		}
	}
}

func must(t *testing.T, s string) Range {
	t.Helper()
	r, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
