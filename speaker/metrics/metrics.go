// Package metrics holds the speaker's Prometheus metrics in a registry of
// its own, so that tests can run several speakers in one process.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are what a speaker counts.
type Metrics struct {
	Registry *prometheus.Registry

	ARPRequests      *prometheus.CounterVec
	ARPReplies       *prometheus.CounterVec
	GratuitousARPs   *prometheus.CounterVec
	OwnedIPs         prometheus.Gauge
	OwnershipChanges *prometheus.CounterVec
	Members          prometheus.Gauge
	UnknownMembers   prometheus.Gauge
	TakeoversHeld    prometheus.Counter
	TakeoverChecks   prometheus.Counter
	Conflicts        prometheus.Counter
	Quorum           prometheus.Gauge
	HeldDown         prometheus.Gauge
	Yields           prometheus.Counter
}

// New creates and registers the metrics.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		ARPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "porter_arp_requests_seen_total",
			Help: "ARP who-has requests seen, by interface.",
		}, []string{"interface"}),
		ARPReplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "porter_arp_replies_sent_total",
			Help: "ARP replies sent for addresses this node owns, by interface.",
		}, []string{"interface"}),
		GratuitousARPs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "porter_gratuitous_arps_sent_total",
			Help: "Gratuitous ARP packets (requests and replies) sent, by interface.",
		}, []string{"interface"}),
		OwnedIPs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "porter_owned_ips",
			Help: "Addresses this node answers ARP for.",
		}),
		OwnershipChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "porter_ownership_changes_total",
			Help: "Addresses this node started (gained) or stopped (lost) answering for.",
		}, []string{"change"}),
		Members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "porter_live_members",
			Help: "Speakers this one sees alive, itself included.",
		}),
		UnknownMembers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "porter_unknown_members",
			Help: "Gossip members ignored because the cluster does not vouch for them: no such Node, no ready speaker pod there, or another address than its speaker published.",
		}),
		TakeoversHeld: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "porter_takeovers_held_total",
			Help: "Times an address was not taken from a member gossip found failed, as its owner still answered for it or its node was still up.",
		}),
		TakeoverChecks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "porter_takeover_checks_total",
			Help: "Rounds of asking the wire whether a member that failed, or one about to hand over, still answers for its addresses or its node.",
		}),
		Conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "porter_address_conflicts_total",
			Help: "Probes that found an address already answered by another host.",
		}),
		Quorum: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "porter_quorum",
			Help: "1 while this speaker sees a majority of the speakers it expects and may take on addresses; 0 while it only keeps those it has.",
		}),
		HeldDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "porter_held_down_members",
			Help: "Members held down for flapping: they keep what they answer for but take nothing back until their hold-down ends.",
		}),
		Yields: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "porter_yields_total",
			Help: "Addresses this speaker gave up, while cut off or held down, to another speaker that answered for them.",
		}),
	}
	m.Registry.MustRegister(m.ARPRequests, m.ARPReplies, m.GratuitousARPs, m.OwnedIPs, m.OwnershipChanges, m.Members, m.UnknownMembers, m.TakeoversHeld, m.TakeoverChecks, m.Conflicts, m.Quorum, m.HeldDown, m.Yields,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}
