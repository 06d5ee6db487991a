package backend

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"

	"github.com/porterlb/porter/test/netlab"
)

// OnARP runs fn with a raw ARP socket on host's nic.
func OnARP(host *netlab.Host, nic string, fn func(*arp.Client, *net.Interface) error) error {
	return host.Do(func() error {
		ifi, err := net.InterfaceByName(nic)
		if err != nil {
			return err
		}
		c, err := arp.Dial(ifi)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		return fn(c, ifi)
	})
}

// drainGrace is how long ReadARP keeps reading after its deadline. Go
// fails a read whose deadline has passed before it asks the socket, so a
// reader descheduled past the deadline (a loaded 2-core CI machine, the
// race detector) would drop replies that arrived in time and report
// "nobody answered". What is already queued is read within this grace.
const drainGrace = 20 * time.Millisecond

// ReadARP hands each packet c reads to each until the deadline, then
// what had already arrived by then, and returns nil.
func ReadARP(c *arp.Client, until time.Time, each func(*arp.Packet)) error {
	if err := readARP(c, until, each); err != nil {
		return err
	}
	return readARP(c, time.Now().Add(drainGrace), each)
}

func readARP(c *arp.Client, until time.Time, each func(*arp.Packet)) error {
	if err := c.SetReadDeadline(until); err != nil {
		return err
	}
	for {
		p, _, err := c.Read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			return err
		}
		each(p)
	}
}

// WhoHas asks from host's nic, with a raw socket (so that it works even
// where the kernel holds ip itself), who has ip, and returns every MAC
// that answered within wait, sorted. Only replies to this request count,
// not a gratuitous ARP reply a new owner broadcasts in the same moment.
func WhoHas(host *netlab.Host, nic string, ip netip.Addr, wait time.Duration) ([]string, error) {
	var macs []string
	err := OnARP(host, nic, func(c *arp.Client, ifi *net.Interface) error {
		if err := c.Request(ip); err != nil {
			return err
		}
		return ReadARP(c, time.Now().Add(wait), func(p *arp.Packet) {
			if p.Operation == arp.OperationReply && p.SenderIP == ip && slices.Equal(p.TargetHardwareAddr, ifi.HardwareAddr) && !slices.Contains(macs, p.SenderHardwareAddr.String()) {
				macs = append(macs, p.SenderHardwareAddr.String())
			}
		})
	})
	if err != nil {
		return nil, fmt.Errorf("ARP who-has %s from %s: %w", ip, host.Name, err)
	}
	slices.Sort(macs)
	return macs, nil
}

// WhoHas6 asks from host's nic, with its own ICMPv6 socket, who has the
// IPv6 address ip: a Neighbor Solicitation to ip's solicited-node group,
// as the kernel sends one. It returns every MAC that a solicited
// advertisement for ip named within wait, sorted; unsolicited ones a new
// owner sends in the same moment do not count.
func WhoHas6(host *netlab.Host, nic string, ip netip.Addr, wait time.Duration) ([]string, error) {
	var macs []string
	err := host.Do(func() error {
		ifi, err := net.InterfaceByName(nic)
		if err != nil {
			return err
		}
		c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		g, err := ndp.SolicitedNodeMulticast(ip)
		if err != nil {
			return err
		}
		ns := &ndp.NeighborSolicitation{TargetAddress: ip,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}}
		if err := c.WriteTo(ns, nil, g); err != nil {
			return err
		}
		if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
			return err
		}
		for {
			m, _, _, err := c.ReadFrom()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return nil
				}
				return err
			}
			na, ok := m.(*ndp.NeighborAdvertisement)
			if !ok || !na.Solicited || na.TargetAddress.WithZone("") != ip {
				continue
			}
			for _, o := range na.Options {
				if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target && !slices.Contains(macs, l.Addr.String()) {
					macs = append(macs, l.Addr.String())
				}
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("NDP who-has %s from %s: %w", ip, host.Name, err)
	}
	slices.Sort(macs)
	return macs, nil
}
