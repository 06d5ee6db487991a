package dataplane

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/memberkey"
	"github.com/porterlb/porter/speaker/owner"
	"github.com/porterlb/porter/test/lab"
	"github.com/porterlb/porter/test/netlab"
)

// rogueIP is the InternalIP of the Node the foreign speaker poses as. No
// NIC holds it, so the foreign speaker itself can serve no pool: what is
// tested is what the real speakers make of it.
const rogueIP = "198.18.0.251"

// startRogue runs a porter-speaker on the client, which is no node of the
// cluster, as a Node named rogue that runs no speaker pod, with the
// cluster admin's credentials.
func startRogue(t *testing.T, extra ...string) *speaker {
	t.Helper()
	ctx := context.Background()
	if _, err := env.Cluster.CreateNode(ctx, lab.Node{Name: "rogue", InternalIP: netip.MustParseAddr(rogueIP)}); err != nil {
		t.Fatal(err)
	}
	lab.Remove(t, "NodeNICs rogue", func(ctx context.Context) error {
		return dynamicClient(t).Resource(v1alpha1.NodeNICsResource).Delete(ctx, "rogue", metav1.DeleteOptions{})
	})
	lab.Remove(t, "Node rogue", func(ctx context.Context) error {
		return env.Cluster.Client.CoreV1().Nodes().Delete(ctx, "rogue", metav1.DeleteOptions{})
	})
	kc, err := env.Cluster.LANKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--node-name", "rogue", "--kubeconfig", kc, "--bind-address", env.Net.Client.IP.String(), "--metrics-address", ""}, extra...)
	return startSpeaker(t, env.Net.Client, args...)
}

// A member that has the key but that the cluster does not vouch for (no
// speaker pod on its Node) is ignored: it is no candidate, its MAC is no
// member's, every real speaker names it, and so does status.
func TestForeignMemberWithTheKeyCountsForNothing(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	startSpeakers(t)
	startRogue(t)
	poll(t, 30*time.Second, "every speaker to name rogue as unknown", func(context.Context) (bool, error) {
		for _, n := range env.Net.Nodes {
			r := report(t, n.Name)
			if r == nil || r.Status.Speaker == nil {
				return false, nil
			}
			found := false
			for _, u := range r.Status.Speaker.UnknownMembers {
				found = found || strings.HasPrefix(u, "rogue ("+env.Net.Client.IP.String())
			}
			if !found {
				return false, nil
			}
		}
		return true, nil
	})
	for _, n := range env.Net.Nodes {
		if m := report(t, n.Name).Status.Speaker.Members; len(m) != len(env.Net.Nodes) {
			t.Errorf("%s counts members %v, want the %d nodes only", n.Name, m, len(env.Net.Nodes))
		}
	}
	for _, name := range []string{"r1", "r2", "r3", "r4", "r5"} {
		createService(t, name)
		ip := waitIP(t, name)
		poll(t, 10*time.Second, "one node answering for "+ip.String(), func(context.Context) (bool, error) {
			macs := whoHas(t, ip, 200*time.Millisecond)
			return len(macs) == 1 && len(nodeMACs(macs)) == 1, nil
		})
	}
	out, err := env.Kubectl(context.Background(), "porter", "status", "-o", "json").Output()
	if err != nil && len(out) == 0 {
		t.Fatalf("kubectl porter status: %v", err)
	}
	var rep struct {
		Categories []struct {
			Name   string
			Checks []struct{ Name, State, Detail string }
		}
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	named := false
	for _, c := range rep.Categories {
		for _, ch := range c.Checks {
			named = named || ch.Name == "unknown" && strings.Contains(ch.Detail, "rogue")
		}
	}
	if !named {
		t.Errorf("status does not name the foreign member:\n%s", out)
	}
}

// Without the key, a speaker cannot join: keyed speakers drop its gossip.
func TestMemberWithoutTheKeyCannotJoin(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	startSpeakers(t)
	// No Secret in default: with --insecure-member it gossips in clear.
	startRogue(t, "--namespace", "default", "--insecure-member")
	poll(t, 30*time.Second, "the keyless speaker to publish its view", func(context.Context) (bool, error) {
		r := report(t, "rogue")
		return r != nil && r.Status.Speaker != nil && r.Status.Speaker.MemberAddress != "", nil
	})
	// It keeps trying to join (every 500 ms); give it time to.
	time.Sleep(3 * time.Second)
	if r := report(t, "rogue"); len(r.Status.Speaker.MemberKeys) != 0 || len(r.Status.Speaker.UnknownMembers) != 0 {
		t.Errorf("the keyless speaker reports keys %v and sees %v", r.Status.Speaker.MemberKeys, r.Status.Speaker.UnknownMembers)
	}
	want := memberkey.Fingerprint(labKey)
	for _, n := range env.Net.Nodes {
		sp := report(t, n.Name).Status.Speaker
		if len(sp.UnknownMembers) != 0 || len(sp.Members) != len(env.Net.Nodes) {
			t.Errorf("%s sees members %v and unknown %v; the keyless speaker joined", n.Name, sp.Members, sp.UnknownMembers)
		}
		if len(sp.MemberKeys) != 1 || sp.MemberKeys[0] != want {
			t.Errorf("%s reports keys %v, want [%s]", n.Name, sp.MemberKeys, want)
		}
	}
}

// Speakers that start together, with the address already allocated, come
// up without a conflict among themselves, and when the owner is killed
// soon after, another takes over at once, not after a re-probe. Each
// round starts every speaker afresh, so that one that decides before it
// has joined the others gets its chance to probe an address a peer
// holds.
func TestSpeakersStartedTogetherTakeOverAtOnce(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	sp := startSpeakers(t)
	createService(t, "together")
	ip := waitIP(t, "together")
	ownerOf(t, "together", ip)
	for round := 1; round <= 3; round++ {
		for _, s := range sp {
			s.signal(t, syscall.SIGTERM)
		}
		for _, s := range sp {
			s.exited(t, 15*time.Second)
		}
		sp = startSpeakers(t)
		var owner string
		poll(t, 15*time.Second, "one speaker to report "+ip.String(), func(context.Context) (bool, error) {
			by := reportedBy(t, ip)
			if len(by) == 1 {
				owner = by[0]
			}
			return len(by) == 1, nil
		})
		time.Sleep(2 * time.Second) // long enough for any probe to finish
		for _, n := range env.Net.Nodes {
			if c := report(t, n.Name).Status.Conflicts; len(c) != 0 {
				t.Errorf("round %d: %s reports conflicts %v among speakers", round, n.Name, c)
			}
		}
		at := time.Now()
		sp[owner].signal(t, syscall.SIGKILL)
		next := servedBy(t, ip, 5*time.Second, func(n string) bool { return n != owner })
		t.Logf("round %d: the speaker on %s killed; %s served after %s", round, owner, next, time.Since(at).Round(time.Millisecond))
		sp[owner].exited(t, 5*time.Second)
		sp[owner] = startSpeaker(t, nodeByName(owner))
		waitMembers(t, len(env.Net.Nodes))
	}
	for _, e := range events(t, "together") {
		if strings.HasPrefix(e, "AddressConflict") {
			t.Errorf("a conflict among speakers: %s", e)
		}
	}
}

// gossipCut drops every packet to or from the member port that node
// sends, so the node stays on the LAN and only gossip is cut. The kernel
// here has no tc actions, so the filter sends those packets to an htb
// class whose queue holds none.
func gossipCut(t *testing.T, n *netlab.Host) func() {
	t.Helper()
	del := []string{"tc", "qdisc", "del", "dev", netlab.NIC1, "root"}
	run(t, n, []string{"tc", "qdisc", "add", "dev", netlab.NIC1, "root", "handle", "1:", "htb", "default", "10"}, del)
	for _, c := range [][]string{
		{"tc", "class", "add", "dev", netlab.NIC1, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"},
		{"tc", "class", "add", "dev", netlab.NIC1, "parent", "1:", "classid", "1:20", "htb", "rate", "8bit", "ceil", "8bit"},
		{"tc", "qdisc", "add", "dev", netlab.NIC1, "parent", "1:20", "handle", "20:", "pfifo", "limit", "0"},
		{"tc", "filter", "add", "dev", netlab.NIC1, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "dport", "7947", "0xffff", "flowid", "1:20"},
		{"tc", "filter", "add", "dev", netlab.NIC1, "parent", "1:", "protocol", "ip", "prio", "2", "u32", "match", "ip", "sport", "7947", "0xffff", "flowid", "1:20"},
	} {
		run(t, n, c, nil)
	}
	return func() { run(t, n, del, nil) }
}

// owners maps each address to the one node that answers ARP for it, and
// fails when none or several do. Silence is asked again twice: one
// request or reply lost to a stalled process on a loaded machine is not
// an address dropped, which stays silent every time. Two answers fail at
// once.
func owners(t *testing.T, ips []netip.Addr) map[netip.Addr]string {
	t.Helper()
	out := map[netip.Addr]string{}
	for _, ip := range ips {
		macs := whoHas(t, ip, 150*time.Millisecond)
		for try := 0; len(macs) == 0 && try < 2; try++ {
			macs = whoHas(t, ip, 150*time.Millisecond)
		}
		if len(macs) != 1 {
			t.Errorf("%s answered by %v, want exactly one node", ip, macs)
			continue
		}
		out[ip] = nodeByMAC(macs[0])
	}
	return out
}

// A node cut off from gossip only, still on the LAN: the others find it
// failed, ask the wire before taking its addresses, hear it still answer,
// and leave them. The cut-off node sees one speaker of three, no quorum,
// so it takes on nothing new: a Service created meanwhile goes to the
// others. The client asks for every address every 50 ms throughout, and no
// address is ever answered by two MACs; none moves, then or after the heal.
func TestGossipOnlyPartitionMovesNothing(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	startSpeakersAtRest(t)
	var ips []netip.Addr
	for i := range 6 {
		name := fmt.Sprintf("part-%d", i)
		createService(t, name)
		ips = append(ips, waitIP(t, name))
	}
	poll(t, 10*time.Second, "every address answered by one node", func(context.Context) (bool, error) {
		for _, ip := range ips {
			if len(whoHas(t, ip, 150*time.Millisecond)) != 1 {
				return false, nil
			}
		}
		return true, nil
	})
	before := owners(t, ips)
	cut := nodeByName(before[ips[0]])
	// A free address of the pool that the hash gives the node to be cut
	// off, when all three count.
	var names []string
	for _, n := range env.Net.Nodes {
		names = append(names, n.Name)
	}
	var lateIP netip.Addr
	for ip := netip.MustParseAddr("198.18.0.100"); ip.Compare(netip.MustParseAddr("198.18.0.109")) <= 0; ip = ip.Next() {
		if !slices.Contains(ips, ip) && owner.Pick(ip, names) == cut.Name {
			lateIP = ip
			break
		}
	}
	if !lateIP.IsValid() {
		t.Fatalf("no free address of the pool hashes to %s", cut.Name)
	}
	smp := sampleARP(t, append(slices.Clone(ips), lateIP), 50*time.Millisecond)
	heal := gossipCut(t, cut)
	poll(t, 10*time.Second, "the others to lose "+cut.Name+" from gossip", func(context.Context) (bool, error) {
		for _, n := range env.Net.Nodes {
			if n.Name == cut.Name {
				continue
			}
			if m := report(t, n.Name).Status.Speaker.Members; slices.Contains(m, cut.Name) {
				return false, nil
			}
		}
		return true, nil
	})
	poll(t, 10*time.Second, cut.Name+" to lose its quorum", func(context.Context) (bool, error) {
		return strings.Contains(httpGet(t, cut, "/metrics"), "porter_quorum 0"), nil
	})
	// A Service created now, asking for the address the hash gives the
	// cut-off node: it must not take it, as it has no quorum.
	createService(t, "part-late", func(s *corev1.Service) { s.Spec.LoadBalancerIP = lateIP.String() })
	waitIP(t, "part-late")
	var late string
	poll(t, 10*time.Second, "one node answering for the Service created during the partition", func(context.Context) (bool, error) {
		macs := whoHas(t, lateIP, 150*time.Millisecond)
		if len(macs) == 1 {
			late = nodeByMAC(macs[0])
		}
		return len(macs) == 1, nil
	})
	if late == cut.Name {
		t.Errorf("%s, cut off from gossip without a quorum, took on %s", cut.Name, lateIP)
	}
	var others []*netlab.Host
	for _, n := range env.Net.Nodes {
		if n.Name != cut.Name {
			others = append(others, n)
		}
	}
	rounds := map[string]float64{}
	for _, n := range others {
		rounds[n.Name] = counter(t, n, "porter_takeover_checks_total")
	}
	start := time.Now()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		if now := owners(t, ips); !maps.Equal(now, before) {
			t.Fatalf("during the partition: owners %v, want %v", now, before)
		}
	}
	// The cut-off node keeps answering, and each of the others asks the
	// wire about it again every 250 ms: not as fast as it answers.
	window := time.Since(start)
	for _, n := range others {
		asked := counter(t, n, "porter_takeover_checks_total") - rounds[n.Name]
		if limit := 2*float64(window/(250*time.Millisecond)) + 2; asked > limit {
			t.Errorf("%s asked the wire about %s %.0f times in %s, want at most %.0f: once every 250 ms", n.Name, cut.Name, asked, window.Round(time.Millisecond), limit)
		}
		t.Logf("%s asked the wire about %s %.0f times in %s", n.Name, cut.Name, asked, window.Round(time.Millisecond))
	}
	heal()
	waitMembers(t, len(env.Net.Nodes))
	// Past the hold-down of the node the others found failed.
	time.Sleep(7 * time.Second)
	smp.finish(t)
	if d := smp.doubles(); len(d) > 0 {
		t.Errorf("%d double answers in %d rounds of ARP, 50 ms apart; first: %v", len(d), smp.count(), d[:min(len(d), 5)])
	}
	t.Logf("%d rounds of ARP for %d addresses, every 50 ms, from before the cut to 7 s after the heal", smp.count(), len(ips)+1)
	if now := owners(t, ips); !maps.Equal(now, before) {
		t.Errorf("after the heal: owners %v, want %v", now, before)
	}
}

// A speaker frozen past --starved-grace loses its address, and when it
// thaws it gives it up at once to the node that took it, which keeps it
// for the hold-down before it goes back: a node that flaps is damped.
func TestFlappingSpeakerIsHeldDown(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	sp := startSpeakersAtRest(t)
	createService(t, "flap")
	ip := waitIP(t, "flap")
	owner := ownerOf(t, "flap", ip)
	sp[owner].signal(t, syscall.SIGSTOP)
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			sp[owner].signal(t, syscall.SIGCONT)
		}
	})
	var next string
	poll(t, 10*time.Second, "another node answering for "+ip.String(), func(context.Context) (bool, error) {
		macs := whoHas(t, ip, 100*time.Millisecond)
		for _, m := range macs {
			if n := nodeByMAC(m); n != owner {
				next = n
			}
		}
		return next != "", nil
	})
	smp := sampleARP(t, []netip.Addr{ip}, 50*time.Millisecond)
	sp[owner].signal(t, syscall.SIGCONT)
	thawed = true
	waitMembers(t, len(env.Net.Nodes))
	back := time.Now()
	// The thawed speaker's first answers come from requests queued while
	// it was frozen; after a second it must have yielded.
	time.Sleep(time.Second)
	for end := back.Add(4 * time.Second); time.Now().Before(end); {
		macs := whoHas(t, ip, 100*time.Millisecond)
		if len(macs) != 1 || nodeByMAC(macs[0]) != next {
			names := []string{}
			for _, m := range macs {
				names = append(names, nodeByMAC(m))
			}
			t.Fatalf("%s after %s came back: answered by %v, want %s alone for the hold-down", time.Since(back).Round(time.Millisecond), owner, names, next)
		}
	}
	if m := httpGet(t, nodeByName(next), "/metrics"); !strings.Contains(m, "porter_held_down_members 1") {
		t.Errorf("%s does not count %s held down", next, owner)
	}
	poll(t, 10*time.Second, owner+" answering for "+ip.String()+" again after its hold-down", func(context.Context) (bool, error) {
		macs := whoHas(t, ip, 150*time.Millisecond)
		return len(macs) == 1 && nodeByMAC(macs[0]) == owner, nil
	})
	took := time.Since(back)
	smp.finish(t)
	if took < 4*time.Second {
		t.Errorf("%s took its address back %s after it came back, inside its 5 s hold-down", owner, took.Round(time.Millisecond))
	}
	// Doubles only in the second after the thaw, while the speaker works
	// through what queued up when it was frozen.
	all := smp.doubles()
	t.Logf("%s took %s back %s after it came back; double answers in %d rounds: %v", owner, ip, took.Round(time.Millisecond), smp.count(), all)
	for _, d := range all {
		if d.at.After(back.Add(time.Second)) {
			t.Errorf("double answer later than a second after the thaw: %v", d)
		}
	}
}

// A speaker frozen (SIGSTOP, the far end of CPU starvation) for less than
// --starved-grace: gossip finds it failed, but its node still answers ARP,
// so nobody takes its address, and it keeps it when it thaws.
func TestFrozenSpeakerKeepsItsAddresses(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	sp := startSpeakersAtRest(t)
	createService(t, "frozen")
	ip := waitIP(t, "frozen")
	owner := ownerOf(t, "frozen", ip)
	sp[owner].signal(t, syscall.SIGSTOP)
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			sp[owner].signal(t, syscall.SIGCONT)
		}
	})
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		for _, mac := range whoHas(t, ip, 100*time.Millisecond) {
			if n := nodeByMAC(mac); n != owner {
				t.Fatalf("%s answered for %s while the speaker on %s was frozen", n, ip, owner)
			}
		}
	}
	sp[owner].signal(t, syscall.SIGCONT)
	thawed = true
	waitMembers(t, len(env.Net.Nodes))
	poll(t, 5*time.Second, owner+" answering for "+ip.String()+" again", func(context.Context) (bool, error) {
		macs := whoHas(t, ip, 150*time.Millisecond)
		return len(macs) == 1 && nodeByMAC(macs[0]) == owner, nil
	})
	for _, n := range env.Net.Nodes {
		if n.Name == owner {
			continue
		}
		if b := httpGet(t, n, "/metrics"); strings.Contains(b, `porter_ownership_changes_total{change="gained"}`) {
			t.Errorf("%s gained an address while %s was frozen", n.Name, owner)
		}
	}
}

// Two speakers: a majority of two is both, so the quorum leans on the
// wire. Cut off from each other's gossip, each still sees the other's
// node answer ARP: both keep what they hold, take on nothing, and no
// address is answered twice. When one node dies, the survivor finds it
// gone on the wire and takes over.
func TestTwoNodesKeepTheirAddressesWhenCutAndTakeOverWhenOneDies(t *testing.T) {
	third := env.Net.Nodes[2]
	ctx := context.Background()
	if err := env.Cluster.Client.CoreV1().Pods("porter-system").Delete(ctx, "porter-speaker-"+third.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		poll(t, 30*time.Second, "the old speaker pod on "+third.Name+" to go", func(ctx context.Context) (bool, error) {
			_, err := env.Cluster.Client.CoreV1().Pods("porter-system").Get(ctx, "porter-speaker-"+third.Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err := speakerPodAndToken(context.Background(), env, third.Name); err != nil {
			t.Errorf("restore the speaker pod on %s: %v", third.Name, err)
		}
	})
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	sp := map[string]*speaker{}
	for _, n := range env.Net.Nodes[:2] {
		sp[n.Name] = startSpeaker(t, n)
	}
	waitMembers(t, 2)
	var ips []netip.Addr
	for i := range 4 {
		name := fmt.Sprintf("two-%d", i)
		createService(t, name)
		ips = append(ips, waitIP(t, name))
	}
	poll(t, 10*time.Second, "every address answered by one node", func(context.Context) (bool, error) {
		for _, ip := range ips {
			if len(whoHas(t, ip, 150*time.Millisecond)) != 1 {
				return false, nil
			}
		}
		return true, nil
	})
	before := owners(t, ips)

	smp := sampleARP(t, ips, 50*time.Millisecond)
	heal := gossipCut(t, env.Net.Nodes[0])
	for _, n := range env.Net.Nodes[:2] {
		poll(t, 10*time.Second, n.Name+" to lose its quorum", func(context.Context) (bool, error) {
			return strings.Contains(httpGet(t, n, "/metrics"), "porter_quorum 0"), nil
		})
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		if now := owners(t, ips); !maps.Equal(now, before) {
			t.Fatalf("cut off: owners %v, want %v", now, before)
		}
	}
	heal()
	waitMembers(t, 2)
	time.Sleep(7 * time.Second) // past the hold-down
	smp.finish(t)
	if d := smp.doubles(); len(d) > 0 {
		t.Fatalf("%d double answers in %d rounds of ARP; first: %v", len(d), smp.count(), d[:min(len(d), 5)])
	}

	// Node death: the speaker killed and the cable pulled together.
	dead := nodeByName(before[ips[0]])
	var survivor *netlab.Host
	for _, n := range env.Net.Nodes[:2] {
		if n != dead {
			survivor = n
		}
	}
	at := time.Now()
	sp[dead.Name].signal(t, syscall.SIGKILL)
	if err := dead.SetCable(ctx, netlab.NIC1, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dead.SetCable(context.Background(), netlab.NIC1, true) })
	servedBy(t, ips[0], 10*time.Second, func(n string) bool { return n == survivor.Name })
	t.Logf("%s died: %s, alone of two, served %s after %s", dead.Name, survivor.Name, ips[0], time.Since(at).Round(time.Millisecond))
	if m := httpGet(t, survivor, "/metrics"); !strings.Contains(m, "porter_quorum 1") {
		t.Errorf("%s has no quorum after %s died", survivor.Name, dead.Name)
	}
}

// The cable of whichever node owns the address is pulled and put back,
// again and again. A node cut off this way sees every other fail; that is
// its own isolation, and must not hold the others down: at no point may
// every node be held down and the address go silent.
func TestRepeatedCablePullsNeverSilenceAnAddress(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	startSpeakersAtRest(t)
	createService(t, "pulls")
	ip := waitIP(t, "pulls")
	for i := range 4 {
		var owner string
		poll(t, 15*time.Second, fmt.Sprintf("round %d: one node answering for %s", i+1, ip), func(context.Context) (bool, error) {
			macs := whoHas(t, ip, 150*time.Millisecond)
			if len(macs) == 1 {
				owner = nodeByMAC(macs[0])
			}
			return len(macs) == 1, nil
		})
		n := nodeByName(owner)
		if err := n.SetCable(context.Background(), netlab.NIC1, false); err != nil {
			t.Fatal(err)
		}
		next := servedBy(t, ip, 10*time.Second, func(s string) bool { return s != owner })
		if err := n.SetCable(context.Background(), netlab.NIC1, true); err != nil {
			t.Fatal(err)
		}
		waitMembers(t, len(env.Net.Nodes))
		t.Logf("round %d: cable of %s pulled, %s took over, cable back", i+1, owner, next)
	}
	poll(t, 15*time.Second, "one node answering for "+ip.String()+" after the last pull", func(context.Context) (bool, error) {
		return len(whoHas(t, ip, 150*time.Millisecond)) == 1, nil
	})
}

// A speaker stopped gracefully and started again, as a rolling update
// does: its addresses went to another node, and the new process finds
// them answered there. It takes each back only once that node has let it
// go, so no address is ever answered twice. (The graceful stop itself
// overlaps the two owners for a moment by design, --handoff-grace, so
// the sampling starts once the stop is over.)
func TestRestartedSpeakerNeverAnswersTwice(t *testing.T) {
	createPool(t, "main", "198.18.0.100-198.18.0.109")
	sp := startSpeakersAtRest(t)
	var ips []netip.Addr
	for i := range 4 {
		name := fmt.Sprintf("restart-%d", i)
		createService(t, name)
		ips = append(ips, waitIP(t, name))
	}
	owner := ownerOf(t, "restart-0", ips[0])
	for round := range 3 {
		sp[owner].signal(t, syscall.SIGTERM)
		sp[owner].exited(t, 15*time.Second)
		servedBy(t, ips[0], 10*time.Second, func(n string) bool { return n != owner })
		smp := sampleARP(t, ips, 50*time.Millisecond)
		sp[owner] = startSpeaker(t, nodeByName(owner))
		waitMembers(t, len(env.Net.Nodes))
		poll(t, 15*time.Second, fmt.Sprintf("round %d: %s answering for %s again", round+1, owner, ips[0]), func(context.Context) (bool, error) {
			macs := whoHas(t, ips[0], 150*time.Millisecond)
			return len(macs) == 1 && nodeByMAC(macs[0]) == owner, nil
		})
		smp.finish(t)
		if d := smp.doubles(); len(d) > 0 {
			t.Errorf("round %d: %d double answers in %d rounds of ARP while %s started again; first: %v", round+1, len(d), smp.count(), owner, d[:min(len(d), 5)])
		}
	}
}
