package responder

import "strings"

// Procs is how many Ps (GOMAXPROCS) the speaker should run with, given
// the runtime's own choice: one more, so that one is idle as a rule.
//
// The ARP reader blocks in recvfrom on a thread of its own, and its P is
// handed to other work meanwhile. Back from the system call, the reader
// needs a P again before it can answer. With as many Ps as CPUs, a
// decision over thousands of Services and a collection can hold every
// P, and the who-has waits for one of them to reach a preemption point,
// up to 10 ms. The spare P lets the reader run at once; its thread's
// real-time priority then gives it a CPU. The speaker's work is the
// same: the spare P only shortens the reader's wait.
//
// It is set once, at start, which also ends the runtime's own updates:
// a CPU limit resized in place counts from the speaker's next start.
//
// ok is false when GOMAXPROCS is set, which the runtime has applied and
// an operator's choice wins.
func Procs(getenv func(string) string, current int) (n int, ok bool) {
	if strings.TrimSpace(getenv("GOMAXPROCS")) != "" {
		return 0, false
	}
	return max(current, 1) + 1, true
}
