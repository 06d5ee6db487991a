package responder

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"golang.org/x/sys/unix"
)

func frame(t *testing.T, op arp.Operation, src, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr, dst net.HardwareAddr) []byte {
	t.Helper()
	p, err := arp.NewPacket(op, sha, spa, tha, tpa)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	fb, err := (&ethernet.Frame{Destination: dst, Source: src, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return fb
}

// A refresh builds two gratuitous packets for every owned address by
// hand; mdlayher's codecs are the reference.
func TestGratuitousAgreesWithTheCodecs(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	ip := netip.MustParseAddr("198.18.0.200")
	out := make([]byte, arpFrameLen)
	for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
		gratuitousInto(out, op, mac, ip)
		want := frame(t, op, mac, mac, ip, ethernet.Broadcast, ip, ethernet.Broadcast)
		// The codec pads the frame to the Ethernet minimum; the NIC
		// does that for the frame built by hand.
		if !bytes.Equal(out, want[:arpFrameLen]) || !bytes.Equal(want[arpFrameLen:], make([]byte, len(want)-arpFrameLen)) {
			t.Errorf("%v:\n got %x\nwant %x", op, out, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { gratuitousInto(out, arp.OperationReply, mac, ip) }); n != 0 {
		t.Errorf("building a gratuitous packet allocates %v times", n)
	}
}

// The hot loop decodes and answers by hand; mdlayher's ARP and Ethernet
// codecs are the reference it must agree with.
func TestParseAndReplyAgreeWithTheCodecs(t *testing.T) {
	ours := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	client := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	relay := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}
	vip, from := netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("198.18.0.9")

	for _, tc := range []struct {
		name     string
		frameSrc net.HardwareAddr // differs from the ARP sender when relayed
	}{{"direct", client}, {"frame source differs from ARP sender", relay}} {
		t.Run(tc.name, func(t *testing.T) {
			req := frame(t, arp.OperationRequest, tc.frameSrc, client, from, ethernet.Broadcast, vip, ethernet.Broadcast)
			// Padded to the Ethernet minimum, as frames on a wire are.
			req = append(req, make([]byte, 18)...)
			p, ok := parseARP(req)
			if !ok {
				t.Fatal("a valid request did not parse")
			}
			if p.op != arp.OperationRequest || p.spa != from || p.tpa != vip || p.sha.String() != client.String() || p.src.String() != tc.frameSrc.String() {
				t.Errorf("parsed %+v", p)
			}
			out := make([]byte, arpFrameLen)
			replyInto(out, req, ours)
			var f ethernet.Frame
			if err := f.UnmarshalBinary(out); err != nil {
				t.Fatal(err)
			}
			var got arp.Packet
			if err := got.UnmarshalBinary(f.Payload); err != nil {
				t.Fatal(err)
			}
			if f.Destination.String() != tc.frameSrc.String() || f.Source.String() != ours.String() || f.EtherType != ethernet.EtherTypeARP {
				t.Errorf("reply frame %v -> %v type %v", f.Source, f.Destination, f.EtherType)
			}
			want, _ := arp.NewPacket(arp.OperationReply, ours, vip, client, from)
			if got.Operation != want.Operation || got.SenderIP != want.SenderIP || got.TargetIP != want.TargetIP ||
				got.SenderHardwareAddr.String() != want.SenderHardwareAddr.String() || got.TargetHardwareAddr.String() != want.TargetHardwareAddr.String() {
				t.Errorf("reply %+v, want %+v", got, *want)
			}
		})
	}
	for name, b := range map[string][]byte{
		"short": make([]byte, 20),
		"IPv4 type": func() []byte {
			f := frame(t, arp.OperationRequest, client, client, from, ethernet.Broadcast, vip, ethernet.Broadcast)
			f[12], f[13] = 0x08, 0x00
			return f
		}(),
		"bad sizes": func() []byte {
			f := frame(t, arp.OperationRequest, client, client, from, ethernet.Broadcast, vip, ethernet.Broadcast)
			f[arpStart+4] = 8
			return f
		}(),
	} {
		if _, ok := parseARP(b); ok {
			t.Errorf("%s: parsed a frame that is not IPv4-over-Ethernet ARP", name)
		}
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	req := frame(t, arp.OperationRequest, net.HardwareAddr{2, 0, 0, 0, 0, 9}, net.HardwareAddr{2, 0, 0, 0, 0, 9},
		netip.MustParseAddr("198.18.0.9"), ethernet.Broadcast, netip.MustParseAddr("198.18.0.200"), ethernet.Broadcast)
	out := make([]byte, arpFrameLen)
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := parseARP(req); ok {
			replyInto(out, req, mac)
		}
	}); n != 0 {
		t.Errorf("decoding and answering a request allocates %v times", n)
	}
}

// The reader's thread asks for a real-time priority, and gets it where
// the speaker may (root here; SYS_NICE in its pod); other threads keep
// the normal one.
func TestReaderThreadRunsAtRealTimePriority(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a real-time priority needs root or CAP_SYS_NICE; CI runs as root")
	}
	type result struct {
		what string
		attr *unix.SchedAttr
		err  error
	}
	got := make(chan result)
	go func() {
		// Never unlocked, as in Serve: the thread ends with this
		// goroutine.
		runtime.LockOSThread()
		what := raiseThreadPriority()
		attr, err := unix.SchedGetAttr(0, 0)
		got <- result{what, attr, err}
	}()
	r := <-got
	if r.err != nil {
		t.Fatalf("read the reader thread's policy: %v", r.err)
	}
	if r.what != "real-time" || r.attr.Policy != unix.SCHED_FIFO || r.attr.Priority != readerRTPriority {
		t.Errorf("reader thread: %s, policy %d priority %d; want real-time, SCHED_FIFO %d", r.what, r.attr.Policy, r.attr.Priority, readerRTPriority)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	mine, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if mine.Policy != unix.SCHED_NORMAL {
		t.Errorf("another thread has policy %d, want the normal one", mine.Policy)
	}
}
