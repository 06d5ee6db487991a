package addrpolicy

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
)

func TestReportSamePolicy(t *testing.T) {
	since := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	base := func() *v1alpha1.NodeNICs {
		return &v1alpha1.NodeNICs{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: v1alpha1.NodeNICsStatus{
			NICs:      []v1alpha1.NIC{{Name: "eth0", MAC: "02:00:00:00:00:01", Up: true, Carrier: true, Addresses: []string{"198.18.0.11/24"}}},
			Gateways:  []string{"198.18.0.1"},
			Conflicts: []v1alpha1.AddressConflict{{Address: "198.18.0.40", MAC: "02:00:00:00:00:09", Since: since}},
			UpdatedAt: since,
			Speaker: &v1alpha1.SpeakerStatus{MemberAddress: "198.18.0.11:7947", Members: []string{"n1"},
				Addresses: []v1alpha1.AnnouncedAddress{{Address: "198.18.0.50", Interface: "eth0"}}},
		}}
	}
	for _, tc := range []struct {
		name   string
		change func(*v1alpha1.NodeNICs)
		same   bool
	}{
		{"nothing", func(*v1alpha1.NodeNICs) {}, true},
		{"the gossip address", func(n *v1alpha1.NodeNICs) { n.Status.Speaker.MemberAddress = "198.18.0.11:7948" }, true},
		{"the members seen", func(n *v1alpha1.NodeNICs) { n.Status.Speaker.Members = nil }, true},
		{"the addresses announced", func(n *v1alpha1.NodeNICs) { n.Status.Speaker.Addresses = nil }, true},
		{"the time of the last write", func(n *v1alpha1.NodeNICs) { n.Status.UpdatedAt = metav1.Now() }, true},
		{"a NIC's carrier", func(n *v1alpha1.NodeNICs) { n.Status.NICs[0].Carrier = false }, false},
		{"a NIC's address", func(n *v1alpha1.NodeNICs) { n.Status.NICs[0].Addresses = []string{"198.18.0.12/24"} }, false},
		{"a gateway", func(n *v1alpha1.NodeNICs) { n.Status.Gateways = nil }, false},
		{"a conflict's MAC", func(n *v1alpha1.NodeNICs) { n.Status.Conflicts[0].MAC = "02:00:00:00:00:0a" }, false},
		{"a conflict's start", func(n *v1alpha1.NodeNICs) { n.Status.Conflicts[0].Since = metav1.NewTime(since.Add(time.Second)) }, false},
		{"published no more", func(n *v1alpha1.NodeNICs) { n.Status.UpdatedAt = metav1.Time{} }, false},
	} {
		was := DecodeReport(base())
		n := base()
		tc.change(n)
		now := DecodeReport(n)
		if got := was.SamePolicy(&now.Report); got != tc.same {
			t.Errorf("%s: SamePolicy = %v, want %v", tc.name, got, tc.same)
		}
	}
}

// A decoded report keeps no list of announced addresses, and gives back
// the conflicts its speaker wrote, so that a restarted speaker can write
// them again unchanged.
func TestDecodeReport(t *testing.T) {
	since := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	conflicts := []v1alpha1.AddressConflict{
		{Address: "198.18.0.40", MAC: "02:00:00:00:00:09", Since: since},
		{Address: "2001:db8::40", MAC: "02:00:00:00:00:0a", Since: since},
	}
	inv := &v1alpha1.NodeNICs{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u", ResourceVersion: "5"}, Status: v1alpha1.NodeNICsStatus{
		Conflicts: conflicts,
		Speaker: &v1alpha1.SpeakerStatus{MemberAddress: "198.18.0.11:7947",
			Addresses: []v1alpha1.AnnouncedAddress{{Address: "198.18.0.50", Interface: "eth0"}}},
	}}
	r := DecodeReport(inv)
	if r.Announced != nil {
		t.Errorf("a decoded report keeps announced addresses: %v", r.Announced)
	}
	if full := ReportFromNodeNICs(inv); len(full.Announced) != 1 {
		t.Errorf("a full report has announced addresses %v, want one", full.Announced)
	}
	if r.MemberAddress != "198.18.0.11:7947" {
		t.Errorf("member address %q, want the speaker's", r.MemberAddress)
	}
	if got := r.APIConflicts(); !reflect.DeepEqual(got, conflicts) {
		t.Errorf("conflicts back as %+v, want %+v", got, conflicts)
	}
	if m := r.GetObjectMeta(); m.GetName() != "n1" || m.GetUID() != "u" || m.GetResourceVersion() != "5" {
		t.Errorf("decoded report names itself %s/%s/%s", m.GetName(), m.GetUID(), m.GetResourceVersion())
	}
	if got := (&Report{}).APIConflicts(); got != nil {
		t.Errorf("no conflicts come back as %v, want nil", got)
	}
}
