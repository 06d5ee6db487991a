package main

import (
	"strings"
	"testing"
	"time"
)

func TestSumMetric(t *testing.T) {
	text := `# HELP porter_gratuitous_arps_sent_total Gratuitous ARP packets sent.
# TYPE porter_gratuitous_arps_sent_total counter
porter_gratuitous_arps_sent_total{interface="eth0"} 4
porter_gratuitous_arps_sent_total{interface="eth1"} 2
porter_gratuitous_arps_sent_totally_other 100
porter_live_members 3
`
	for name, want := range map[string]float64{"porter_gratuitous_arps_sent_total": 6, "porter_live_members": 3} {
		got, err := sumMetric(strings.NewReader(text), name)
		if err != nil || got != want {
			t.Errorf("%s: got %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := sumMetric(strings.NewReader(text), "porter_owned_ips"); err == nil {
		t.Error("a missing metric read as zero")
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := quantile(ds, q); got != want {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("quantile sorted its input in place")
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("quantile of nothing")
	}
}

func TestFigureRatio(t *testing.T) {
	var r Results
	r.add(Figure{Name: "x", Value: 150, Baseline: 100})
	if r.Figures[0].Ratio != 1.5 {
		t.Errorf("ratio %v", r.Figures[0].Ratio)
	}
}
