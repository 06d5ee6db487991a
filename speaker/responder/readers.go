package responder

import (
	"fmt"
	"math/bits"
	"net"

	"golang.org/x/sys/unix"
)

// The reply path has one reader per CPU, each with a packet socket of its
// own, joined in a fanout group that hands every frame to the socket of
// the CPU whose softirq received it (PACKET_FANOUT_CPU); each reader's
// thread is bound to that CPU.
//
// The kernel answers for its own addresses inside that softirq. A single
// reader thread is woken wherever it last ran: half the time on the other
// CPU of a two-CPU node, through an inter-processor interrupt, which on a
// virtual machine whose other CPU was idle means waking that virtual CPU.
// That wake, not the answer, was the tail of the round trip. A reader
// bound to the receiving CPU is woken there and, at its real-time
// priority, runs as soon as the softirq is done.

// maxReaders bounds the readers of one NIC. A frame received on CPU c goes
// to reader c % readers, so past the bound some CPUs share readers bound
// elsewhere, and are answered through a wake on another CPU, as a single
// reader always was.
const maxReaders = 64

// readerCPUs lays out the readers of one NIC, given the CPUs this process
// may run on (sorted): reader i serves the frames received on CPU i, and
// is bound to CPU i when the process may run there; -1 is a reader left
// free. With no CPUs known there is one free reader.
func readerCPUs(allowed []int, limit int) []int {
	if len(allowed) == 0 || limit < 1 {
		return []int{-1}
	}
	n := min(allowed[len(allowed)-1]+1, limit)
	may := make(map[int]bool, len(allowed))
	for _, c := range allowed {
		may[c] = true
	}
	out := make([]int, n)
	for i := range out {
		out[i] = -1
		if may[i] {
			out[i] = i
		}
	}
	return out
}

// allowedCPUs are the CPUs the calling thread may run on, in order; nil
// when that cannot be read.
func allowedCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var out []int
	for c := range len(set) * bits.UintSize {
		if set.IsSet(c) {
			out = append(out, c)
		}
	}
	return out
}

// openReaders opens one socket for each entry of cpus, joined in a fanout
// group by CPU in that order, so that socket i gets the frames received
// on CPU i. Where the kernel has no such group (before Linux 4.19, which
// gave groups unique ids), it falls back to a single socket and says why.
func openReaders(ifi *net.Interface, cpus []int) (conns []*arpConn, fallback error, err error) {
	first, err := openARP(ifi)
	if err != nil {
		return nil, nil, err
	}
	if len(cpus) < 2 {
		return []*arpConn{first}, nil, nil
	}
	id, err := first.joinFanout(0)
	if err != nil {
		return []*arpConn{first}, err, nil
	}
	conns = []*arpConn{first}
	for range cpus[1:] {
		c, err := openMember(ifi, id)
		if err != nil {
			for _, c := range conns {
				_ = c.close()
			}
			return nil, nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil, nil
}

// openMember opens a socket for ifi's ARP frames and joins it to the
// fanout group id. A socket joins a group only once bound, and from bind
// to joining it would get every frame, each also handed to the group:
// frames it queued then would be answered twice. So it is held, dropping
// every frame, until it has joined.
func openMember(ifi *net.Interface, id int) (*arpConn, error) {
	c, err := newARPSocket(ifi, true)
	if err != nil {
		return nil, err
	}
	err = c.bind(ifi)
	if err == nil {
		_, err = c.joinFanout(id)
	}
	if err == nil {
		err = c.release()
	}
	if err != nil {
		_ = c.close()
		return nil, err
	}
	return c, nil
}

// fanoutMode hands a frame to the member of the receiving CPU, or, when
// that member's queue is full, to another rather than dropping it.
const fanoutMode = unix.PACKET_FANOUT_CPU | unix.PACKET_FANOUT_FLAG_ROLLOVER

// joinFanout joins c to the fanout group id, or with id 0 to a new group
// with an id the kernel picks; it returns the group's id.
func (c *arpConn) joinFanout(id int) (int, error) {
	mode := fanoutMode
	if id == 0 {
		mode |= unix.PACKET_FANOUT_FLAG_UNIQUEID
	}
	if err := unix.SetsockoptInt(c.fd, unix.SOL_PACKET, unix.PACKET_FANOUT, id|mode<<16); err != nil {
		return 0, fmt.Errorf("join an ARP socket to a fanout group by CPU: %w", err)
	}
	if id != 0 {
		return id, nil
	}
	v, err := unix.GetsockoptInt(c.fd, unix.SOL_PACKET, unix.PACKET_FANOUT)
	if err != nil {
		return 0, fmt.Errorf("read the ARP fanout group's id: %w", err)
	}
	return v & 0xffff, nil
}

// bindThread binds the calling thread, which must be locked to its
// goroutine and die with it, to cpu; it reports whether it did.
func bindThread(cpu int) bool {
	if cpu < 0 {
		return false
	}
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set) == nil
}
