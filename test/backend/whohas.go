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

// WhoHas asks from host's nic, with a raw socket (so that it works even
// where the kernel holds ip itself), who has ip, and returns every MAC
// that answered within wait, sorted. Only replies to this request count,
// not a gratuitous ARP reply a new owner broadcasts in the same moment.
func WhoHas(host *netlab.Host, nic string, ip netip.Addr, wait time.Duration) ([]string, error) {
	var macs []string
	err := host.Do(func() error {
		ifi, err := net.InterfaceByName(nic)
		if err != nil {
			return err
		}
		c, err := arp.Dial(ifi)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		if err := c.Request(ip); err != nil {
			return err
		}
		if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
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
			if p.Operation == arp.OperationReply && p.SenderIP == ip && slices.Equal(p.TargetHardwareAddr, ifi.HardwareAddr) && !slices.Contains(macs, p.SenderHardwareAddr.String()) {
				macs = append(macs, p.SenderHardwareAddr.String())
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("ARP who-has %s from %s: %w", ip, host.Name, err)
	}
	slices.Sort(macs)
	return macs, nil
}
