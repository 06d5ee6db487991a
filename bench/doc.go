package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// writeDoc writes docs/benchmarks.md: the method, then the latest run's
// figures, then how they compare with other tools' published failover
// times.
func writeDoc(path string, r *Results) error {
	var b bytes.Buffer
	b.WriteString(`# Benchmarks

` + "`make bench`" + ` (as root) measures Porter in the network lab and the lab
cluster, and rewrites this page and ` + "`bench/results.json`" + `. It is not part
of ` + "`make test`" + `: it is a measurement, and it reports every figure even
when one misses its target.

These machines are small and shared, so no figure is read alone. Each stands
beside a baseline measured in the same run, on the same machine, and the
ratio between the two is what carries from one run to the next.

## Method

- **Lab.** Three lab nodes, each a network namespace with a veth pair into a
  bridge (the LAN), a client namespace on the same LAN, and a real control
  plane (kube-apiserver, etcd, controller manager, scheduler) with kwok. The
  speakers run as real processes, one per pod of the DaemonSet that
  ` + "`kubectl porter init`" + ` deployed, authenticated as the speaker's
  ServiceAccount and with the DaemonSet's defaults. Each node holds Service
  addresses on ` + "`lo`" + ` under strictARP's sysctls, as IPVS kube-proxy does,
  and runs a backend that answers with its node's name.
- **ARP reply round trip.** The client sends who-has requests from a raw
  socket and times each reply, for an address the speaker owns and, as the
  baseline, for the owning node's own address, which its kernel answers. The
  two are interleaved request by request so both see the same noise.
- **Watch decode.** In the bench process, no lab involved: the CPU,
  allocations and memory a speaker spends on one watch event, from its
  bytes to what its cache keeps, for a pool whose status lists ` + fmt.Sprint(decodeAt) + `
  used addresses and for a NIC report that lists as many announced ones.
  The speaker leaves those lists undecoded (` + "`facts.LeanUnread`" + `); the
  baseline is the same event decoded whole, then trimmed the same way. The
  section first checks that both keep the same thing. Each figure is the
  median of ` + fmt.Sprint(decodeRounds) + ` Go benchmark runs.
- **Failover.** The client connects to the Service address every
  ` + probeEvery.String() + ` (TCP, 100 ms connect timeout). The announcing node then
  fails: its speaker is killed (SIGKILL), its link goes down, the node dies
  (its speaker killed and its link down together), or its speaker is
  stopped gracefully (SIGTERM). *Client outage* is the longest gap between
  two served connects after the failure; *takeover* is the time until the
  client is first served by another node. When only the speaker is killed,
  the node's kernel still holds the address and keeps serving the client
  until the new owner's gratuitous ARP moves it, so the outage stays near
  the probe period; the takeover waits out --starved-grace (3 s), since
  from outside a dead speaker on a live node looks like a starved one, and
  is held to 5 s. Node death is held to 500 ms of client outage. Before each trial
  every speaker sees every other, and the client's neighbour cache is
  flushed so that it starts at the current owner. The baseline is the
  probe floor: the p99 gap between served connects while nothing fails.
- **MetalLB, in the same run.** MetalLB v0.16.2's speaker and controller
  (built by ` + "`make metallb`" + ` from the module proxy, in a tools module of
  their own) run beside Porter in the same lab: their own namespace, load
  balancer class, pool, memberlist port and key, with MetalLB's default
  memberlist timers. Its Service has one ready endpoint, as MetalLB announces
  nothing without one. The same client, prober and trial code measure it
  (node death, and both false-failover scenarios). Its figures are named
  "MetalLB …" and carry no target.
- **False failovers.** Nothing fails; for each scenario, ` + "`-false-failover-for`" + `
  (3 minutes) with the client connecting every ` + probeEvery.String() + `: every thread of
  every speaker at nice 19 against 8 busy loops at nice 0 on the 2 cores; or
  5% of the frames (ARP included) dropped both ways on every node's LAN NIC,
  by nftables at the NIC's ingress and egress hooks (the kernel has no
  netem). Figures: the owner changes the client saw (the node serving it
  changed), and the addresses the speakers say they gained (Porter:
  ` + "`porter_ownership_changes_total{change=\"gained\"}`" + `; MetalLB: its "service has IP,
  announcing" log lines). Porter's target is 0, over IPv4 and IPv6 alike.
- **Scale.** The DaemonSet is pinned to one lab node, so one speaker owns
  every address, in a cluster of 1,000 nodes. Services are created in a 10,240-address pool until there are
  1,000, then 10,000. Figures: the time until every Service has an address
  (baseline: creating them, API writes alone), the ARP round trip for
  random owned addresses (baseline: the node's kernel), and the time from
  a restart of the speaker until its metrics count gratuitous ARP for every
  address (baseline: one address). The round trip is measured as soon
  as every Service is announced and annotated, before the speaker's NIC
  report lists every address (a write it defers, 10 s at 10,000, and
  which may land during the measurement); then once the report lists
  them all; and at the largest scale once more, settled, 10 s after the
  restart. The target applies to the second, where memory is read too.
  One measurement lasts about half a second, and its p99 is its
  20th-worst reply, so whatever else the machine does in that
  half-second moves it: at each scale, after the target's
  measurement, ` + "`-arp-rounds`" + ` more rounds of as many requests, one to three
  seconds apart, give the median round's p99 beside that round's kernel
  p99, and the spread of the rounds' ratios.
- **Memory.** At one address, at 1,000 and at 10,000 Services on 1,000
  nodes, the pinned speaker's RSS from ` + "`/proc/<pid>/status`" + `: whole, anonymous
  (heap and stacks), file-backed (its executable's pages) and its peak
  since start (VmHWM), each beside the same figure at one address; and the
  larger controller replica's RSS. The speakers run as the DaemonSet
  declares them, so the Go runtime's soft limit comes from the container's
  memory limit. MetalLB's speakers are measured in the same run, on the
  same nodes, at their one bench Service and at 1,000 Services of their
  own (each with a ready endpoint, without which MetalLB announces
  nothing); the largest of the three is reported. Binary sizes are those of
  a stripped release build, beside the same build of an earlier revision
  (` + "`-size-baseline`" + `) and MetalLB's speaker.
- **Soak.** With 10,000 Services in place, for ` + "`-soak-for`" + ` (30 minutes)
  one Service is created and one deleted every 0.6 s (100 of each a
  minute), so addresses are released and taken all the time. The pairs
  are due on a fixed schedule and up to four are in flight, so a slow
  answer from the API server does not lower the rate; the count replaced
  is reported against the count due (at least 0.95×). Every 30 s
  the speaker's RSS, its goroutines (` + "`go_goroutines`" + ` from its
  ` + "`/metrics`" + `) and its open sockets (` + "`/proc/<pid>/fd`" + `) are sampled,
  with the controller's RSS. Each figure is the median of the last
  quarter's samples beside the median of the second quarter's, past the
  first churn's warm-up: flat is at most 1.1× for RSS and goroutines. The
  socket count steps between neighbours as connections come and go, so
  it grows only if the last quarter's fewest is above the second
  quarter's most. The speaker's CPU over the whole soak stands beside its CPU
  at rest with the same Services, over the ` + cpuWindow.String() + ` before the churn.
- **Plugin.** Before the scale section, the cluster is grown to 1,000 kwok
  nodes. ` + "`kubectl porter status`" + ` is timed beside ` + "`kubectl get nodes`" + `
  and its API requests counted from client-go's ` + "`-v=6`" + ` log, once then
  and once more after the scale section, with 10,000 Services to list.
  ` + "`kubectl porter version --client`" + ` is timed beside
  ` + "`kubectl version --client`" + `, both through the real kubectl.
- **Other Service types.** After the plugin section, ` + "`-other-services`" + `
  (10,000) headless ClusterIP Services are created in a namespace of their
  own, and deleted with it after. The first lab node's speaker, which
  asks the API server for LoadBalancer Services only, and the larger
  controller replica, which watches every Service, are read (RSS, the
  largest of five readings 2 s apart, 20 s after the last change) beside
  the same process just before the Services were made.

## Latest results

`)
	fmt.Fprintf(&b, "Run %s, commit %s, %s. Machine: %s, %d cores, %d GiB, Linux %s, %s.\n\n",
		r.Started.Format("2006-01-02 15:04 UTC"), r.Commit, r.Duration, r.Machine.CPU, r.Machine.Cores, r.Machine.MemoryGiB, r.Machine.Kernel, r.Machine.Go)
	r.table(&b)
	sideBySide(&b, r)
	if len(r.Problems) > 0 {
		b.WriteString("\nNot measured in this run:\n\n")
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "- %s\n", p)
		}
	}
	b.WriteString(`
## Beside other tools

Published failover times of other Layer 2 and VRRP-style announcers, for
scale; they were not measured here.

| tool | failover |
|---|---|
| kube-vip (ARP, leader election) | about 3 s (its documentation) |
| MetalLB (Layer 2, memberlist) | measured above, in the same run |
| VRRP, 1 s advertisements | about 3.6 s (RFC 5798: 3 × interval + skew) |
| Cilium L2 announcements (Lease) | 10–20 s with default timers |

Porter's failover rests on a memberlist failure detector with LAN timers and
on gratuitous ARP from the new owner; docs/speaker.md explains the timers.
`)
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// sideBySide puts each MetalLB figure beside Porter's of the same name,
// from the same run.
func sideBySide(b *bytes.Buffer, r *Results) {
	porter := map[string]Figure{}
	for _, f := range r.Figures {
		if !strings.HasPrefix(f.Name, "MetalLB ") {
			porter[f.Section+"/"+f.Name] = f
		}
	}
	var rows []string
	for _, m := range r.Figures {
		name, ok := strings.CutPrefix(m.Name, "MetalLB ")
		if !ok {
			continue
		}
		p, ok := porter[m.Section+"/"+name]
		if !ok {
			continue
		}
		ratio := ""
		if p.Value != 0 {
			ratio = fmt.Sprintf("%s×", trim(round(m.Value/p.Value, 2)))
		}
		rows = append(rows, fmt.Sprintf("| %s | %s %s | %s %s | %s |", name, trim(p.Value), p.Unit, trim(m.Value), m.Unit, ratio))
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\n### Porter beside MetalLB v0.16.2, same run\n\n| figure | Porter | MetalLB | MetalLB ÷ Porter |\n|---|---|---|---|\n")
	for _, row := range rows {
		b.WriteString(row + "\n")
	}
}
