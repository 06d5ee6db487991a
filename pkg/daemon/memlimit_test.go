package daemon

import "testing"

func TestSoftLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       map[string]string
		want      int64
		wantApply bool
	}{
		{"container limit", map[string]string{MemoryLimitEnv: "134217728"}, 114085068, true},
		{"GOMEMLIMIT wins", map[string]string{MemoryLimitEnv: "134217728", "GOMEMLIMIT": "50MiB"}, 0, false},
		{"no limit given", map[string]string{}, 0, false},
		{"not a number", map[string]string{MemoryLimitEnv: "128Mi"}, 0, false},
		{"zero", map[string]string{MemoryLimitEnv: "0"}, 0, false},
		{"negative", map[string]string{MemoryLimitEnv: "-5"}, 0, false},
		{"spaces", map[string]string{MemoryLimitEnv: " 1000 "}, 850, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := SoftLimit(func(k string) string { return tc.env[k] })
			if got != tc.want || ok != tc.wantApply {
				t.Errorf("SoftLimit = %d, %v; want %d, %v", got, ok, tc.want, tc.wantApply)
			}
		})
	}
}
