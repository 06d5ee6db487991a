package announcer

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
)

// A member's meta names the pools it cannot announce, because their NIC is
// down or missing on its node. Pools are named by a 32-bit hash so that up
// to (512-1)/4 = 127 of them fit in memberlist's 512-byte meta; a rare
// collision only makes a node skip a pool it could have served.
const metaVersion = 1

func poolHash(name string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return h.Sum32()
}

// encodeMeta encodes the unservable pools, keeping at most limit bytes: a
// node with more unservable pools than fit lists the first ones only, and
// its own announcer still refuses the rest.
func encodeMeta(unservable []string, limit int) []byte {
	hashes := make([]uint32, 0, len(unservable))
	for _, p := range unservable {
		hashes = append(hashes, poolHash(p))
	}
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	out := []byte{metaVersion}
	for _, h := range hashes {
		if len(out)+4 > limit {
			break
		}
		out = binary.BigEndian.AppendUint32(out, h)
	}
	return out
}

// metaServes reports whether a member with meta can announce pool. A
// member serves nothing until it has published which pools it cannot
// serve: empty meta, or meta of another version, serves nothing.
func metaServes(meta []byte, pool uint32) bool {
	if len(meta) < 1 || meta[0] != metaVersion {
		return false
	}
	for b := meta[1:]; len(b) >= 4; b = b[4:] {
		if binary.BigEndian.Uint32(b) == pool {
			return false
		}
	}
	return true
}
