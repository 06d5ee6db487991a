package addr

import (
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts is
// a well-formed range that reads back to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"192.0.2.10", "192.0.2.0/28", "10.13.15.200-10.13.15.202", "2001:db8::/120",
		"192.0.2.20-192.0.2.10", "1.2.3.4-::1", "banana", "", "-", "/", "1.2.3.4/",
		"::ffff:1.2.3.4-::ffff:1.2.3.9", "fe80::1%eth0", "0.0.0.0/16",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("Parse(%q): empty error message", s)
			}
			return
		}
		if !r.First.IsValid() || !r.Last.IsValid() || r.First.Is4() != r.Last.Is4() || r.Last.Less(r.First) {
			t.Fatalf("Parse(%q) = malformed range %v", s, r)
		}
		if r.Size().Int64() > MaxPoolSize || r.Size().Sign() <= 0 {
			t.Fatalf("Parse(%q): size %s outside 1..%d", s, r.Size(), MaxPoolSize)
		}
		back, err := Parse(r.String())
		if err != nil || back != r {
			t.Fatalf("Parse(%q) = %s, which reads back as %v, %v", s, r, back, err)
		}
		if !r.Contains(r.First) || !r.Contains(r.Last) || strings.TrimSpace(r.String()) != r.String() {
			t.Fatalf("Parse(%q) = %s: inconsistent", s, r)
		}
	})
}
