package backend

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/mdlayher/arp"

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

// ReadARP hands each packet c reads to each until the deadline, and
// returns nil then.
func ReadARP(c *arp.Client, until time.Time, each func(*arp.Packet)) error {
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
