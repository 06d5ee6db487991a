package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"

	"github.com/porterlb/porter/pkg/apiclient"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/facts"
)

// decodeAt is the count of used or announced addresses in the watch
// events the decode section measures: the scale the speaker's memory is
// held to.
const decodeAt = 10000

// watchDecode measures what a speaker spends on one watch event of a
// pool whose status lists decodeAt used addresses, and of a NIC report
// that lists as many announced ones: from the event's bytes to what its
// cache keeps. The controller writes such a pool's status up to once a
// second while Services come and go, and every speaker on every node
// reads each write. The baseline is the same event decoded whole, as the
// speaker read it before it left those lists undecoded.
func (b *bench) watchDecode(context.Context) error {
	api, err := apiclient.New(&rest.Config{Host: "https://192.0.2.1:6443"}) // never contacted
	if err != nil {
		return err
	}
	pool, report, err := decodeEvents(decodeAt)
	if err != nil {
		return err
	}
	for _, ev := range []struct {
		what string
		kind apiclient.Kind
		line []byte
	}{
		{fmt.Sprintf("a pool status write, %d used addresses", decodeAt), apiclient.Eips, pool},
		{fmt.Sprintf("a NIC report, %d announced addresses", decodeAt), apiclient.NodeNICs, report},
	} {
		whole := api.Resource(ev.kind)
		lean, err := whole.Without(facts.LeanUnread(ev.kind)...)
		if err != nil {
			return err
		}
		// Both must keep the same thing, or the comparison means nothing.
		a, err := decodeLean(whole, ev.line)
		if err != nil {
			return err
		}
		l, err := decodeLean(lean, ev.line)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(a, l) {
			return fmt.Errorf("%s: the speaker's cache would keep %+v, not %+v as from the whole event", ev.what, l, a)
		}
		w, s := eventCost(whole, ev.line), eventCost(lean, ev.line)
		fmt.Fprintf(os.Stderr, "%s (%d KiB): whole %s, speaker %s\n", ev.what, len(ev.line)>>10, w, s)
		base := "the same event decoded whole"
		note := fmt.Sprintf("%d KiB event; from its bytes to what the cache keeps (facts.Lean); median of %d", len(ev.line)>>10, decodeRounds)
		b.res.add(Figure{Section: "watch decode", Name: "speaker CPU per event, " + ev.what, Value: float64(s.NsPerOp()) / 1e3, Unit: "µs",
			Baseline: float64(w.NsPerOp()) / 1e3, BaselineName: base, Note: note})
		b.res.add(Figure{Section: "watch decode", Name: "speaker allocations per event, " + ev.what, Value: float64(s.AllocsPerOp()), Unit: "allocations",
			Baseline: float64(w.AllocsPerOp()), BaselineName: base})
		b.res.add(Figure{Section: "watch decode", Name: "speaker memory allocated per event, " + ev.what, Value: float64(s.AllocedBytesPerOp()) / 1024, Unit: "KiB",
			Baseline: float64(w.AllocedBytesPerOp()) / 1024, BaselineName: base})
	}
	return nil
}

// decodeRounds is how many benchmark runs each cost is the median of.
const decodeRounds = 5

// eventCost is the median run, by time, of decoding line with r and
// trimming it as the speaker's cache does.
func eventCost(r apiclient.Resource, line []byte) testing.BenchmarkResult {
	runs := make([]testing.BenchmarkResult, decodeRounds)
	for i := range runs {
		runs[i] = testing.Benchmark(func(tb *testing.B) {
			tb.ReportAllocs()
			for tb.Loop() {
				if _, err := decodeLean(r, line); err != nil {
					tb.Fatal(err)
				}
			}
		})
	}
	slices.SortFunc(runs, func(x, y testing.BenchmarkResult) int { return cmp.Compare(x.NsPerOp(), y.NsPerOp()) })
	return runs[len(runs)/2]
}

func decodeLean(r apiclient.Resource, line []byte) (any, error) {
	_, obj, err := r.DecodeEvent(line)
	if err != nil {
		return nil, err
	}
	return facts.Lean(obj)
}

// decodeEvents are a MODIFIED watch event of a pool with n used addresses
// and of a NIC report announcing n, every other status field set too.
func decodeEvents(n int) (pool, report []byte, err error) {
	eip := &v1alpha2.Eip{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha2.GroupVersion.String(), Kind: "Eip"},
		ObjectMeta: metav1.ObjectMeta{Name: "scale", UID: "0b9a6c1e-5d1f-4f4e-9d55-5f0c4a3e2b10", ResourceVersion: "123456"},
		Spec:       v1alpha2.EipSpec{Address: "198.18.64.0-198.18.127.255", Protocol: v1alpha2.ProtocolLayer2},
		Status: v1alpha2.EipStatus{Usage: n, PoolSize: 16384, Used: map[string]string{}, FirstIP: "198.18.64.0", LastIP: "198.18.127.255",
			Ready: true, V4: true, Conflicts: []v1alpha2.EipConflict{{Address: "198.18.64.0", Reason: "is the network address"}}},
	}
	nics := &v1alpha1.NodeNICs{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "NodeNICs"},
		ObjectMeta: metav1.ObjectMeta{Name: "node-0001", UID: "6f1d2c3b-1a2b-4c5d-8e9f-0a1b2c3d4e5f", ResourceVersion: "123457"},
		Status: v1alpha1.NodeNICsStatus{
			NICs:      []v1alpha1.NIC{{Name: "eth0", MAC: "02:00:00:00:00:01", Up: true, Carrier: true, Addresses: []string{"198.18.0.1/24"}}},
			Primary:   "eth0",
			Gateways:  []string{"198.18.0.254"},
			UpdatedAt: metav1.Now(),
			Speaker: &v1alpha1.SpeakerStatus{MemberAddress: "198.18.0.1:7946", Members: []string{"node-0001", "node-0002", "node-0003"}, Announcing: n,
				MemberKeys: []string{"sha256:0123456789abcdef"}, Version: "v0.0.0"},
		},
	}
	for i := range n {
		ip := fmt.Sprintf("198.18.%d.%d", 64+i/256, i%256)
		eip.Status.Used[ip] = fmt.Sprintf("default/scale-%05d", i)
		nics.Status.Speaker.Addresses = append(nics.Status.Speaker.Addresses, v1alpha1.AnnouncedAddress{Address: ip, Interface: "eth0"})
	}
	if pool, err = watchEvent(eip); err != nil {
		return nil, nil, err
	}
	report, err = watchEvent(nics)
	return pool, report, err
}

func watchEvent(obj runtime.Object) ([]byte, error) {
	b, err := json.Marshal(struct {
		Type   string         `json:"type"`
		Object runtime.Object `json:"object"`
	}{"MODIFIED", obj})
	if err != nil {
		return nil, fmt.Errorf("encode a watch event: %w", err)
	}
	return b, nil
}
