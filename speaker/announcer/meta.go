package announcer

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
)

// A member's meta names the pools it cannot announce, because their NIC is
// down or missing on its node, and then, after dampedMark, the members it
// holds down for flapping. Both are named by a 32-bit hash so that up to
// (512-1)/4 = 127 of them fit in memberlist's 512-byte meta; a rare
// collision only makes a node skip a pool it could have served, or wait
// out a hold-down it did not earn. A reader that predates the mark takes
// the held-down members for pools it has never heard of.
const (
	metaVersion = 1
	dampedMark  = 0xffffffff
)

func poolHash(name string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return h.Sum32()
}

// encodeMeta encodes the unservable pools, keeping at most limit bytes: a
// node with more unservable pools than fit lists the first ones only, and
// its own announcer still refuses the rest.
func encodeMeta(unservable, damped []string, limit int) []byte {
	out := []byte{metaVersion}
	add := func(names []string) {
		hashes := make([]uint32, 0, len(names))
		for _, p := range names {
			hashes = append(hashes, poolHash(p))
		}
		slices.Sort(hashes)
		for _, h := range slices.Compact(hashes) {
			if len(out)+4 > limit {
				break
			}
			out = binary.BigEndian.AppendUint32(out, h)
		}
	}
	add(unservable)
	if len(damped) > 0 && len(out)+8 <= limit {
		out = binary.BigEndian.AppendUint32(out, dampedMark)
		add(damped)
	}
	return out
}

// metaDamps reports whether a member with meta holds node down.
func metaDamps(meta []byte, node string) bool {
	if len(meta) < 1 || meta[0] != metaVersion {
		return false
	}
	h, after := poolHash(node), false
	for b := meta[1:]; len(b) >= 4; b = b[4:] {
		v := binary.BigEndian.Uint32(b)
		switch {
		case v == dampedMark:
			after = true
		case after && v == h:
			return true
		}
	}
	return false
}

// metaServes reports whether a member with meta can announce pool. A
// member serves nothing until it has published which pools it cannot
// serve: empty meta, or meta of another version, serves nothing.
func metaServes(meta []byte, pool uint32) bool {
	if len(meta) < 1 || meta[0] != metaVersion {
		return false
	}
	for b := meta[1:]; len(b) >= 4; b = b[4:] {
		switch binary.BigEndian.Uint32(b) {
		case dampedMark:
			return true
		case pool:
			return false
		}
	}
	return true
}
