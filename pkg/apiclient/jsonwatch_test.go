package apiclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
)

// A JSON watch stream decodes event by event, whatever an event's size,
// and an error event arrives as the Status it is, for the reflector to
// read (410 Gone makes it list again).
func TestJSONWatchDecodesEachEvent(t *testing.T) {
	s, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]string{}
	for i := range 2000 {
		used[fmt.Sprintf("198.18.%d.%d", 64+i/256, i%256)] = fmt.Sprintf("default/scale-%05d", i)
	}
	eip := func(rv string, used map[string]string) string {
		b, err := json.Marshal(&v1alpha2.Eip{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha2.GroupVersion.String(), Kind: "Eip"},
			ObjectMeta: metav1.ObjectMeta{Name: "scale", ResourceVersion: rv},
			Spec:       v1alpha2.EipSpec{Address: "198.18.64.0-198.18.103.255", Protocol: v1alpha2.ProtocolLayer2},
			Status:     v1alpha2.EipStatus{Used: used},
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	big := eip("2", used)
	if len(big) < 16*4096 {
		t.Fatalf("the large event is %d bytes; want several times the reader's buffer", len(big))
	}
	stream := `{"type":"ADDED","object":` + eip("1", nil) + "}\n\n" +
		`{"type":"MODIFIED","object":` + big + "}\n" +
		`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410}}` + "\n"
	d := &jsonEvents{body: io.NopCloser(strings.NewReader(stream)), decoder: serializer.NewCodecFactory(s).UniversalDeserializer()}
	d.r = newLineReader(d.body)

	typ, obj, err := d.Decode()
	if e, ok := obj.(*v1alpha2.Eip); err != nil || typ != watch.Added || !ok || e.ResourceVersion != "1" {
		t.Fatalf("first event: %s %T %v", typ, obj, err)
	}
	typ, obj, err = d.Decode()
	if e, ok := obj.(*v1alpha2.Eip); err != nil || typ != watch.Modified || !ok || len(e.Status.Used) != len(used) || e.Spec.Address == "" {
		t.Fatalf("large event: %s %T %v", typ, obj, err)
	}
	typ, obj, err = d.Decode()
	if st, ok := obj.(*metav1.Status); err != nil || typ != watch.Error || !ok || st.Code != 410 {
		t.Fatalf("error event: %s %T %v", typ, obj, err)
	}
	if _, _, err := d.Decode(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the stream: %v, want EOF", err)
	}
}

// Fields a reader never uses are blanked before an event is decoded, and
// only those.
func TestJSONWatchLeavesUnreadFieldsUndecoded(t *testing.T) {
	b, err := json.Marshal(&v1alpha2.Eip{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha2.GroupVersion.String(), Kind: "Eip"},
		ObjectMeta: metav1.ObjectMeta{Name: "scale", ResourceVersion: "5"},
		Spec:       v1alpha2.EipSpec{Address: "198.18.64.0/24", Protocol: v1alpha2.ProtocolLayer2},
		Status:     v1alpha2.EipStatus{Usage: 1, Used: map[string]string{"198.18.64.1": "default/a"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(&rest.Config{Host: "https://192.0.2.1:6443"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Resource(Eips).Without("status")
	if err != nil {
		t.Fatal(err)
	}
	typ, obj, err := r.DecodeEvent([]byte(`{"type":"MODIFIED","object":` + string(b) + "}"))
	e, ok := obj.(*v1alpha2.Eip)
	if err != nil || typ != watch.Modified || !ok {
		t.Fatalf("event: %s %T %v", typ, obj, err)
	}
	if e.Status.Used != nil || e.Status.Usage != 0 {
		t.Errorf("the status was decoded: %+v", e.Status)
	}
	if e.Spec.Address != "198.18.64.0/24" || e.ResourceVersion != "5" {
		t.Errorf("more than the status was left out: %+v", e)
	}
	// An error event's Status keeps its own "status" field.
	typ, obj, err = r.DecodeEvent([]byte(`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410}}`))
	if st, ok := obj.(*metav1.Status); err != nil || typ != watch.Error || !ok || st.Status != metav1.StatusFailure || st.Code != 410 {
		t.Errorf("error event: %s %+v %v", typ, obj, err)
	}
}
