// Package owner picks the one node that answers for an address. Every
// speaker computes the same answer from the same set of live candidates,
// so no coordination is needed beyond agreeing on who is alive.
package owner

import (
	"crypto/sha256"
	"net/netip"
)

// Pick returns the candidate with the highest hash of "node#ip", or "" if
// there are none. Ranking by a hash per address spreads addresses evenly
// over nodes, and a node leaving moves only the addresses it held.
func Pick(ip netip.Addr, candidates []string) string {
	var best string
	var bestSum [sha256.Size]byte
	ipb := ip.AsSlice()
	buf := make([]byte, 0, 64)
	for _, c := range candidates {
		buf = append(buf[:0], c...)
		buf = append(buf, '#')
		buf = append(buf, ipb...)
		sum := sha256.Sum256(buf)
		if best == "" || greater(sum, bestSum) || sum == bestSum && c > best {
			best, bestSum = c, sum
		}
	}
	return best
}

func greater(a, b [sha256.Size]byte) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return false
}
