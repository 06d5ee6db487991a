package responder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"golang.org/x/sys/unix"
)

// arpConn is a packet socket for ARP frames on one NIC, used with plain
// blocking system calls.
//
// The answer to a who-has is the data path's hot loop, and its cost is
// held to the kernel's own answer. Through Go's network poller a frame
// woke the poller's thread, which then woke another to run the reader;
// a reader blocked in recvfrom on a thread of its own is woken by the
// kernel directly, and decodes and answers without allocating.
type arpConn struct {
	fd      int
	ifindex int
}

// readTimeout bounds each blocking read, so that the reader sees Close.
const readTimeout = 100 * time.Millisecond

// openARP opens a packet socket that gets ifi's ARP frames and no others.
func openARP(ifi *net.Interface) (*arpConn, error) {
	c, err := newARPSocket(ifi, false)
	if err != nil {
		return nil, err
	}
	if err := c.bind(ifi); err != nil {
		_ = c.close()
		return nil, err
	}
	return c, nil
}

// newARPSocket opens an unbound packet socket for ifi's ARP frames. It is
// created for no protocol, so it receives nothing until bind: one created
// for ARP would queue every NIC's ARP frames until bind narrowed it to
// ifi, and the reader would take those for ifi's. held attaches a filter
// that drops every frame, until release.
func newARPSocket(ifi *net.Interface, held bool) (*arpConn, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open ARP socket on %s: %w", ifi.Name, err)
	}
	c := &arpConn{fd: fd, ifindex: ifi.Index}
	if held {
		drop := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop[0]}); err != nil {
			_ = c.close()
			return nil, fmt.Errorf("hold ARP socket on %s: %w", ifi.Name, err)
		}
	}
	tv := unix.NsecToTimeval(readTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		_ = c.close()
		return nil, fmt.Errorf("set ARP socket timeout on %s: %w", ifi.Name, err)
	}
	return c, nil
}

// bind starts the socket receiving ifi's ARP frames.
func (c *arpConn) bind(ifi *net.Interface) error {
	if err := unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("bind ARP socket to %s: %w", ifi.Name, err)
	}
	return nil
}

// release removes the filter newARPSocket attached when held.
func (c *arpConn) release() error {
	if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); err != nil {
		return fmt.Errorf("release ARP socket: %w", err)
	}
	return nil
}

// errTimeout is a read that saw no frame within readTimeout.
var errTimeout = errors.New("no frame")

// read reads one frame into buf, blocking the calling thread.
func (c *arpConn) read(buf []byte) (int, error) {
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return 0, errTimeout
		default:
			return 0, err
		}
	}
}

// send sends frame, a whole Ethernet frame, on the NIC the socket is
// bound to: the frame names its destination, so no address is passed,
// and the reply path allocates nothing.
func (c *arpConn) send(frame []byte) error {
	_, err := unix.Write(c.fd, frame)
	return err
}

// Priorities the reader's thread asks for, best first: a real-time
// priority wakes it as soon as a frame arrives, as the kernel's own
// answer, made in softirq, is sent; a node busy with other work would
// otherwise keep a who-has waiting for a time slice. Priority 1 is the
// lowest real-time one: it waits for any real-time work the node has.
const (
	readerRTPriority = 1
	readerNice       = -10
)

// raiseThreadPriority gives the calling thread, which must be locked to
// its goroutine and die with it, the reader's priority, as far as the
// speaker's capabilities allow (SYS_NICE). It says what it got.
func raiseThreadPriority() string {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: readerRTPriority}
	if err := unix.SchedSetAttr(0, &attr, 0); err == nil {
		return "real-time"
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, readerNice); err == nil {
		return "raised"
	}
	return "normal"
}

// writeTo sends p in an Ethernet frame to dst.
func (c *arpConn) writeTo(p *arp.Packet, dst net.HardwareAddr) error {
	pb, err := p.MarshalBinary()
	if err != nil {
		return fmt.Errorf("encode ARP: %w", err)
	}
	f := &ethernet.Frame{Destination: dst, Source: p.SenderHardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return fmt.Errorf("encode Ethernet: %w", err)
	}
	return c.send(fb)
}

func (c *arpConn) close() error { return unix.Close(c.fd) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Offsets in an Ethernet frame that carries an IPv4-over-Ethernet ARP
// packet.
const (
	frameDst    = 0
	frameSrc    = 6
	frameType   = 12
	arpStart    = 14
	arpOp       = arpStart + 6
	arpSHA      = arpStart + 8
	arpSPA      = arpStart + 14
	arpTHA      = arpStart + 18
	arpTPA      = arpStart + 24
	arpFrameLen = arpStart + 28
)

// arpFrame is a decoded ARP frame; its slices alias the frame.
type arpFrame struct {
	src      net.HardwareAddr // the frame's source
	op       arp.Operation
	sha      net.HardwareAddr
	spa, tpa netip.Addr
}

// parseARP decodes an IPv4-over-Ethernet ARP frame without allocating;
// ok is false for anything else.
func parseARP(b []byte) (f arpFrame, ok bool) {
	if len(b) < arpFrameLen || binary.BigEndian.Uint16(b[frameType:]) != uint16(ethernet.EtherTypeARP) {
		return arpFrame{}, false
	}
	a := b[arpStart:]
	// Ethernet hardware, IPv4 protocol, 6- and 4-byte addresses.
	if binary.BigEndian.Uint16(a[0:]) != 1 || binary.BigEndian.Uint16(a[2:]) != uint16(ethernet.EtherTypeIPv4) || a[4] != 6 || a[5] != 4 {
		return arpFrame{}, false
	}
	return arpFrame{
		src: net.HardwareAddr(b[frameSrc : frameSrc+6]),
		op:  arp.Operation(binary.BigEndian.Uint16(b[arpOp:])),
		sha: net.HardwareAddr(b[arpSHA : arpSHA+6]),
		spa: netip.AddrFrom4([4]byte(b[arpSPA : arpSPA+4])),
		tpa: netip.AddrFrom4([4]byte(b[arpTPA : arpTPA+4])),
	}, true
}

// arpInto writes into out (arpFrameLen bytes) an IPv4-over-Ethernet ARP
// packet from sha, in an Ethernet frame from sha to dst, without
// allocating; spa and tpa are 4-byte addresses. It is the one encoder of
// the frames the speaker sends most: answers and gratuitous ARP.
func arpInto(out []byte, dst net.HardwareAddr, op arp.Operation, sha net.HardwareAddr, spa []byte, tha net.HardwareAddr, tpa []byte) {
	copy(out[frameDst:frameDst+6], dst)
	copy(out[frameSrc:frameSrc+6], sha)
	binary.BigEndian.PutUint16(out[frameType:], uint16(ethernet.EtherTypeARP))
	binary.BigEndian.PutUint16(out[arpStart:], 1) // Ethernet
	binary.BigEndian.PutUint16(out[arpStart+2:], uint16(ethernet.EtherTypeIPv4))
	out[arpStart+4], out[arpStart+5] = 6, 4
	binary.BigEndian.PutUint16(out[arpOp:], uint16(op))
	copy(out[arpSHA:arpSHA+6], sha)
	copy(out[arpSPA:arpSPA+4], spa)
	copy(out[arpTHA:arpTHA+6], tha)
	copy(out[arpTPA:arpTPA+4], tpa)
}

// replyInto writes into out (arpFrameLen bytes) the reply to the request
// req, a frame parseARP accepted, from mac: sent to the request's frame
// source, which is where it came from even when its ARP sender field says
// otherwise.
func replyInto(out, req []byte, mac net.HardwareAddr) {
	arpInto(out, req[frameSrc:frameSrc+6], arp.OperationReply, mac, req[arpTPA:arpTPA+4], req[arpSHA:arpSHA+6], req[arpSPA:arpSPA+4])
}

// gratuitousInto writes into out (arpFrameLen bytes) a gratuitous ARP
// packet of operation op for ip, from mac, broadcast: what
// arp.NewPacket(op, mac, ip, ethernet.Broadcast, ip) encodes, without
// allocating, since a refresh sends two for every owned address.
func gratuitousInto(out []byte, op arp.Operation, mac net.HardwareAddr, ip netip.Addr) {
	a := ip.As4()
	arpInto(out, ethernet.Broadcast, op, mac, a[:], ethernet.Broadcast, a[:])
}
