package dataplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/test/backend"
	"github.com/porterlb/porter/test/lab"
	"github.com/porterlb/porter/test/netlab"
)

// applyPool applies an Eip with the real kubectl, as an admin who skips
// the plugin would, and deletes it when the test ends.
func applyPool(t *testing.T, name, address string, extra string) {
	t.Helper()
	manifest := fmt.Sprintf("apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata:\n  name: %s\nspec:\n  address: %s\n  protocol: layer2\n%s", name, address, extra)
	cmd := env.Cluster.Kubectl(context.Background(), "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply Eip %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		_ = env.Cluster.Kubectl(context.Background(), "delete", "eip", name, "--ignore-not-found").Run()
	})
}

// run runs a command on a lab host and undoes it when the test ends.
func run(t *testing.T, h *netlab.Host, do, undo []string) {
	t.Helper()
	if out, err := h.Run(context.Background(), do...); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(do, " "), err, out)
	}
	if undo != nil {
		t.Cleanup(func() { _, _ = h.Run(context.Background(), undo...) })
	}
}

// report reads the NIC report the speaker of node published.
func report(t *testing.T, node string) *v1alpha1.NodeNICs {
	t.Helper()
	u, err := dynamicClient(t).Resource(v1alpha1.NodeNICsResource).Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return decodeNICs(t, u)
}

// forgeIngress writes ip into the Service's status, as a stale or foreign
// allocation would, so that only the announcer stands in the way.
func forgeIngress(t *testing.T, name string, ip netip.Addr) {
	t.Helper()
	cs := env.Cluster.Client.CoreV1().Services("default")
	poll(t, 10*time.Second, "writing the Service status", func(ctx context.Context) (bool, error) {
		svc, err := cs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip.String()}}
		_, err = cs.UpdateStatus(ctx, svc, metav1.UpdateOptions{})
		return err == nil, nil
	})
}

// isNodeMAC reports whether mac is a lab node's NIC.
func isNodeMAC(mac string) bool {
	for _, n := range env.Net.Nodes {
		if mac == n.MAC.String() || n.MAC2 != nil && mac == n.MAC2.String() {
			return true
		}
	}
	return false
}

// nodeMACs are the MACs of the lab nodes' NICs among macs.
func nodeMACs(macs []string) []string {
	var out []string
	for _, m := range macs {
		if isNodeMAC(m) {
			out = append(out, m)
		}
	}
	return out
}

// neverAnsweredByNodes asks for ip from the client for a while and fails
// on any answer from a node, but for the node whose own address ip is
// (except).
func neverAnsweredByNodes(t *testing.T, ip netip.Addr, within time.Duration, except ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, m := range nodeMACs(whoHas(t, ip, 200*time.Millisecond)) {
			if !slices.Contains(except, m) {
				t.Fatalf("ARP for %s answered by %s (%s)", ip, m, nodeByMAC(m))
			}
		}
	}
}

// Each reserved class, put inside a pool applied with kubectl and then
// asked for by a Service, is never answered for by any speaker: not when
// the Service asks for it (the allocator refuses), and not when its status
// names it anyway (the announcer refuses).
func TestReservedAddressesAreNeverAnswered(t *testing.T) {
	node2, node3 := env.Net.Nodes[1], env.Net.Nodes[2]
	secondary := netip.MustParseAddr("198.18.0.50")
	gateway := netip.MustParseAddr("198.18.0.254")
	// A secondary address, as keepalived or kube-vip holds one: no Node
	// object names it, only node2's speaker reports it.
	run(t, node2, []string{"ip", "addr", "add", secondary.String() + "/24", "dev", netlab.NIC1},
		[]string{"ip", "addr", "del", secondary.String() + "/24", "dev", netlab.NIC1})
	// A router that is not the API server: node3's default route.
	run(t, node3, []string{"ip", "route", "replace", "default", "via", gateway.String()},
		[]string{"ip", "route", "replace", "default", "via", env.Net.LANIP.String()})
	applyPool(t, "reserved", "198.18.0.1-198.18.0.254", "")
	startSpeakers(t)
	poll(t, 15*time.Second, "node2 to report its secondary address and node3 its gateway", func(context.Context) (bool, error) {
		r2, r3 := report(t, node2.Name), report(t, node3.Name)
		if r2 == nil || r3 == nil {
			return false, nil
		}
		has := false
		for _, n := range r2.Status.NICs {
			has = has || slices.Contains(n.Addresses, secondary.String()+"/24")
		}
		return has && slices.Contains(r3.Status.Gateways, gateway.String()), nil
	})

	for _, c := range []struct {
		name   string
		ip     netip.Addr
		reason string
		// owner is the MAC that rightly answers, if any.
		owner string
	}{
		{"secondary", secondary, "is an address of NIC eth0 on node node2", node2.MAC.String()},
		{"gateway", gateway, "is the default gateway of node node3", ""},
		{"apiserver", env.Net.LANIP, "is an address of the API server", ""},
		{"internalip", env.Net.Nodes[0].IP, "is the InternalIP of node node1", env.Net.Nodes[0].MAC.String()},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := "reserved-" + c.name
			createService(t, name, func(s *corev1.Service) {
				s.Spec.LoadBalancerIP = c.ip.String()
				s.Annotations[lbservice.PoolAnnotation] = "reserved"
			})
			waitEvent(t, name, "AddressRefused", c.reason)
			// Not held on the nodes' loopback, as kube-proxy would: the
			// API server's address there would cut the nodes off from it.
			forgeIngress(t, name, c.ip)
			waitEvent(t, name, "AddressRefused", "never announced")
			// The node whose own address it is answers with its kernel;
			// the LAN namespace answers for the API server's. No speaker
			// may.
			var except []string
			if c.owner != "" {
				except = append(except, c.owner)
			}
			neverAnsweredByNodes(t, c.ip, 2*time.Second, except...)
			for _, n := range env.Net.Nodes {
				if r := report(t, n.Name); r != nil && r.Status.Speaker != nil && r.Status.Speaker.Announcing != 0 {
					t.Errorf("the speaker on %s announces %d address(es)", n.Name, r.Status.Speaker.Announcing)
				}
			}
		})
	}
	poll(t, 10*time.Second, "each reserved class in the pool's status.conflicts", func(context.Context) (bool, error) {
		var all []string
		for _, c := range getPool(t, "reserved").Status.Conflicts {
			all = append(all, c.Address+" "+c.Reason)
		}
		joined := strings.Join(all, "\n")
		for _, w := range []string{"198.18.0.50 is an address of NIC eth0 on node node2", "198.18.0.254 is the default gateway of node node3", "198.18.0.1 is an address of the API server", "198.18.0.11 is the InternalIP of node node1"} {
			if !strings.Contains(joined, w) {
				return false, nil
			}
		}
		return true, nil
	})
}

// A forged announcer annotation says the address was announced before;
// the speaker decides the probe from its own memory, so it probes, finds
// the host that has the address, and stays silent.
func TestForgedAnnouncerAnnotationDoesNotSkipTheProbe(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	startSpeakers(t)
	taken := netip.MustParseAddr("198.18.0.105")
	client := env.Net.Client
	run(t, client, []string{"ip", "addr", "add", taken.String() + "/24", "dev", netlab.NIC1},
		[]string{"ip", "addr", "del", taken.String() + "/24", "dev", netlab.NIC1})
	createService(t, "forged", func(s *corev1.Service) {
		s.Spec.LoadBalancerIP = taken.String()
		s.Annotations[lbservice.AnnouncerAnnotation] = taken.String() + " node1 eth0"
	})
	ip := waitIP(t, "forged")
	waitEvent(t, "forged", "AddressConflict", client.MAC.String())
	// The client holds the address; no node may answer for it, and no
	// speaker reports it, whatever the annotation says.
	neverAnsweredByNodes(t, ip, 2*time.Second)
	if by := reportedBy(t, ip); len(by) != 0 {
		t.Errorf("%s is reported announced by %v, want by none", ip, by)
	}
}

// A host that starts answering for an announced address takes it: the
// speaker withdraws within a second and says so in the pool's status and
// in `kubectl porter status`.
func TestHostClaimingAnAnnouncedAddressWins(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	startSpeakers(t)
	createService(t, "claimed")
	ip := waitIP(t, "claimed")
	owner := ownerOf(t, "claimed", ip)
	poll(t, 10*time.Second, owner+"'s report to list "+ip.String(), func(context.Context) (bool, error) {
		return slices.Equal(reportedBy(t, ip), []string{owner}), nil
	})
	client := env.Net.Client
	run(t, client, []string{"ip", "addr", "add", ip.String() + "/24", "dev", netlab.NIC1},
		[]string{"ip", "addr", "del", ip.String() + "/24", "dev", netlab.NIC1})
	// The host announces itself, as a DHCP client or a new node does.
	at := time.Now()
	announce(t, client, ip)
	var took time.Duration
	poll(t, 5*time.Second, "the speaker on "+owner+" to stop answering", func(context.Context) (bool, error) {
		if len(nodeMACs(whoHas(t, ip, 50*time.Millisecond))) == 0 {
			took = time.Since(at)
			return true, nil
		}
		return false, nil
	})
	t.Logf("the speaker on %s withdrew %s %s after the claim", owner, ip, took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("withdrew after %s, want within 1s", took)
	}
	neverAnsweredByNodes(t, ip, time.Second)
	poll(t, 10*time.Second, owner+"'s report to drop "+ip.String(), func(context.Context) (bool, error) {
		return len(reportedBy(t, ip)) == 0, nil
	})
	poll(t, 10*time.Second, "the conflict in the pool's status", func(context.Context) (bool, error) {
		for _, c := range getPool(t, "main").Status.Conflicts {
			if c.Address == ip.String() && c.MAC == client.MAC.String() {
				return true, nil
			}
		}
		return false, nil
	})
	out, _ := env.Kubectl(context.Background(), "porter", "status", "-o", "json").Output()
	var rep struct {
		Services []struct{ Name, IP, Reason string }
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("kubectl porter status -o json: %v\n%s", err, out)
	}
	found := false
	for _, s := range rep.Services {
		if s.Name == "default/claimed" {
			found = strings.Contains(s.Reason, "answered on the wire by "+client.MAC.String())
			if !found {
				t.Errorf("status says %+v, want the conflict", s)
			}
		}
	}
	if !found {
		t.Errorf("status lists no default/claimed: %s", out)
	}
}

// Two overlapping pools applied with kubectl, the newer disabled and first
// by name: the older pool holds the shared addresses, and its Services
// stay announced.
func TestNewerDisabledOverlappingPoolSilencesNothing(t *testing.T) {
	applyPool(t, "z-older", "198.18.0.120-198.18.0.129", "")
	startSpeakers(t)
	createService(t, "older", func(s *corev1.Service) { s.Annotations[lbservice.PoolAnnotation] = "z-older" })
	ip := waitIP(t, "older")
	poll(t, 10*time.Second, "one node answering for "+ip.String(), func(context.Context) (bool, error) {
		return len(nodeMACs(whoHas(t, ip, 200*time.Millisecond))) == 1, nil
	})
	time.Sleep(time.Second) // the creation timestamps have one-second resolution
	applyPool(t, "a-newer", "198.18.0.120-198.18.0.139", "  disable: true\n")
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if macs := nodeMACs(whoHas(t, ip, 200*time.Millisecond)); len(macs) != 1 {
			t.Fatalf("after the newer disabled pool: %s answered by %v, want one node", ip, macs)
		}
	}
	poll(t, 10*time.Second, "the newer pool listing the shared range as the older's", func(context.Context) (bool, error) {
		for _, c := range getPool(t, "a-newer").Status.Conflicts {
			if c.Address == "198.18.0.120-198.18.0.129" && strings.Contains(c.Reason, "Eip z-older") {
				return true, nil
			}
		}
		return false, nil
	})
}

// Nothing Porter decides reads a Service annotation a tenant can write: a
// conflict "reported" on someone else's Service changes nothing.
func TestTenantConflictAnnotationChangesNothing(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	startSpeakers(t)
	cs := env.Cluster.Client.CoreV1().Services("default")
	tenant := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant", Namespace: "default", Annotations: map[string]string{
			"porter.kubesphere.io/address-conflict": "198.18.0.100 de:ad:be:ef:00:01",
			lbservice.AnnouncerAnnotation:           "198.18.0.100 node3 eth0",
		}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if _, err := cs.Create(context.Background(), tenant, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.Remove(t, "Service tenant", func(ctx context.Context) error {
		return cs.Delete(ctx, "tenant", metav1.DeleteOptions{})
	})
	createService(t, "victim", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.18.0.100" })
	ip := waitIP(t, "victim")
	if ip.String() != "198.18.0.100" {
		t.Fatalf("victim got %s, want the address it asked for", ip)
	}
	poll(t, 10*time.Second, "one node answering for "+ip.String(), func(context.Context) (bool, error) {
		return len(nodeMACs(whoHas(t, ip, 200*time.Millisecond))) == 1, nil
	})
	for _, c := range getPool(t, "main").Status.Conflicts {
		if c.Address == ip.String() {
			t.Errorf("the pool lists a conflict a tenant wrote: %+v", c)
		}
	}
}

// announce sends one gratuitous ARP for ip from host's NIC1, as a host
// that takes an address does.
func announce(t *testing.T, host *netlab.Host, ip netip.Addr) {
	t.Helper()
	err := backend.OnARP(host, netlab.NIC1, func(c *arp.Client, ifi *net.Interface) error {
		p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, ip, ethernet.Broadcast, ip)
		if err != nil {
			return err
		}
		return c.WriteTo(p, ethernet.Broadcast)
	})
	if err != nil {
		t.Fatalf("gratuitous ARP for %s from %s: %v", ip, host.Name, err)
	}
}
