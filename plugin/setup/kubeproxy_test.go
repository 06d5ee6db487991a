package setup

import (
	"strings"
	"testing"
)

func TestRestartPredates(t *testing.T) {
	for _, c := range []struct {
		restarted, changed string
		want               bool
	}{
		{"2026-11-24T10:00:00Z", "2026-11-24T10:00:01Z", true},
		{"2026-11-24T10:00:01Z", "2026-11-24T10:00:01Z", false},
		{"2026-11-24T10:00:02Z", "2026-11-24T10:00:01Z", false},
		{"", "2026-11-24T10:00:01Z", true},
		{"garbage", "2026-11-24T10:00:01Z", true},
		{"2026-11-24T10:00:00Z", "garbage", false},
	} {
		if got := restartPredates(c.restarted, c.changed); got != c.want {
			t.Errorf("restartPredates(%q, %q) = %v, want %v", c.restarted, c.changed, got, c.want)
		}
	}
}

func TestLineDiff(t *testing.T) {
	a := "a\nb\nc\nd\ne\nf\ng"
	b := "a\nb\nc\nD\ne\nf\ng"
	want := "--- x\n+++ x\n@@ -2 +2 @@\n b\n c\n-d\n+D\n e\n f\n"
	if got := lineDiff("x", a, b); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if lineDiff("x", a, a) != "" {
		t.Fatal("diff of equal texts is not empty")
	}
	ins := lineDiff("x", "a\nc", "a\nb\nc")
	if !strings.Contains(ins, "+b\n") || strings.Contains(ins, "-") && strings.Contains(ins, "\n-") {
		t.Fatalf("insertion diff:\n%s", ins)
	}
}
