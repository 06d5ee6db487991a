package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/porterlb/porter/pkg/apiclient"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/facts"
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

// The decode section compares like with like: the speaker's cache keeps
// the same from an event decoded whole as from one without the lists.
func TestDecodeEventsKeepTheSame(t *testing.T) {
	api, err := apiclient.New(&rest.Config{Host: "https://192.0.2.1:6443"})
	if err != nil {
		t.Fatal(err)
	}
	pool, report, err := decodeEvents(50)
	if err != nil {
		t.Fatal(err)
	}
	for k, line := range map[string][]byte{"eips": pool, "nodenics": report} {
		kind := apiclient.Eips
		if k == "nodenics" {
			kind = apiclient.NodeNICs
		}
		whole := api.Resource(kind)
		lean, err := whole.Without(facts.LeanUnread(kind)...)
		if err != nil {
			t.Fatal(err)
		}
		a, err := decodeLean(whole, line)
		if err != nil {
			t.Fatal(err)
		}
		b, err := decodeLean(lean, line)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: %+v decoded whole, %+v without the lists", k, a, b)
		}
		_, full, err := whole.DecodeEvent(line)
		if err != nil {
			t.Fatal(err)
		}
		_, part, err := lean.DecodeEvent(line)
		if err != nil {
			t.Fatal(err)
		}
		switch k {
		case "eips":
			if n := len(full.(*v1alpha2.Eip).Status.Used); n != 50 {
				t.Errorf("the pool event lists %d used addresses, want 50", n)
			}
			if part.(*v1alpha2.Eip).Status.Used != nil {
				t.Error("the speaker decoded the pool's used addresses")
			}
		case "nodenics":
			if n := len(full.(*v1alpha1.NodeNICs).Status.Speaker.Addresses); n != 50 {
				t.Errorf("the report lists %d addresses, want 50", n)
			}
			if part.(*v1alpha1.NodeNICs).Status.Speaker.Addresses != nil {
				t.Error("the speaker decoded the report's announced addresses")
			}
		}
	}
}
