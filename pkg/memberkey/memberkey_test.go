package memberkey

import (
	"bytes"
	"strings"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, Size) }

func TestParseRoundTrip(t *testing.T) {
	keys := [][]byte{key(1), key(2)}
	got, err := Parse(Format(keys))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], key(1)) || !bytes.Equal(got[1], key(2)) {
		t.Errorf("Parse(Format(keys)) = %x", got)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, c := range []struct{ data, want string }{
		{"", "no key"},
		{"\n \n", "no key"},
		{"not base64!", "not base64"},
		{"AAAA", "has 3 bytes"},
		{string(Format([][]byte{key(1), key(1)})), "there twice"},
	} {
		if _, err := Parse([]byte(c.data)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", c.data, err, c.want)
		}
	}
}

func TestNewKeysDiffer(t *testing.T) {
	a, err := New()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New()
	if len(a) != Size || bytes.Equal(a, b) {
		t.Errorf("New gave %x and %x", a, b)
	}
}

// The rotation takes three steps from any state it can be left in, and
// at no step does a key in use stop being accepted.
func TestRotation(t *testing.T) {
	old, neu := key(1), key(2)
	keys := [][]byte{old}
	var whats []string
	for i := 0; ; i++ {
		next, what, done := NextStep(keys, neu)
		if done {
			break
		}
		if i > 3 {
			t.Fatalf("no end after %d steps: %x", i, keys)
		}
		// Every key primary before the step is still accepted after it,
		// unless the target was already primary.
		if !bytes.Equal(keys[0], neu) && !contains(next, keys[0]) {
			t.Errorf("step %q drops the primary %x", what, keys[0])
		}
		whats = append(whats, what)
		keys = next
	}
	want := "add the new key beside the old, make the new key primary, remove the old key"
	if got := strings.Join(whats, ", "); got != want {
		t.Errorf("steps = %s, want %s", got, want)
	}
	if len(keys) != 1 || !bytes.Equal(keys[0], neu) {
		t.Errorf("ended with %x", keys)
	}
	// Resumed from the middle.
	if next, _, _ := NextStep([][]byte{neu, old}, neu); len(next) != 1 {
		t.Errorf("from [new old]: %x, want [new]", next)
	}
}

func contains(keys [][]byte, k []byte) bool {
	for _, o := range keys {
		if bytes.Equal(o, k) {
			return true
		}
	}
	return false
}
