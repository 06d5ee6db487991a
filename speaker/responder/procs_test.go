package responder

import "testing"

func TestProcs(t *testing.T) {
	for _, c := range []struct {
		name    string
		env     map[string]string
		current int
		want    int
		ok      bool
	}{
		{"two CPUs", nil, 2, 3, true},
		{"one CPU", nil, 1, 2, true},
		{"a CPU limit's choice", nil, 4, 5, true},
		{"GOMAXPROCS wins", map[string]string{"GOMAXPROCS": "2"}, 2, 0, false},
		{"GOMAXPROCS blank", map[string]string{"GOMAXPROCS": " "}, 2, 3, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, ok := Procs(func(k string) string { return c.env[k] }, c.current)
			if n != c.want || ok != c.ok {
				t.Errorf("Procs(%v, %d) = %d, %v; want %d, %v", c.env, c.current, n, ok, c.want, c.ok)
			}
		})
	}
}
