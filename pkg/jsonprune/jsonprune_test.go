package jsonprune

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestNull(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		paths     []string
		want      string
	}{
		{"a top-level member", `{"a":1,"status":{"x":[1,2]},"b":"}"}`, []string{"status"}, `{"a":1,"status":null,"b":"}"}`},
		{"a nested member", `{"status":{"speaker":{"members":["n1"],"addresses":[{"address":"192.0.2.1"}],"version":"v"}}}`,
			[]string{"status.speaker.addresses"}, `{"status":{"speaker":{"members":["n1"],"addresses":null,"version":"v"}}}`},
		{"every element of an array", `{"items":[{"status":{"u":1},"spec":2},{"spec":3},{"status":"s"}]}`,
			[]string{"items.*.status"}, `{"items":[{"status":null,"spec":2},{"spec":3},{"status":null}]}`},
		{"an absent path", `{"spec":{"address":"192.0.2.0/24"}}`, []string{"status"}, `{"spec":{"address":"192.0.2.0/24"}}`},
		{"a path through a string", `{"status":"x"}`, []string{"status.speaker"}, `{"status":"x"}`},
		{"a path through a number at the end", `{"status":12}`, []string{"status.speaker"}, `{"status":12}`},
		{"a star over an object", `{"items":{"status":1}}`, []string{"items.*.status"}, `{"items":{"status":1}}`},
		{"whitespace kept", "{ \"a\" : [ 1 , 2 ] ,\n \"status\" : { \"b\" : true } }", []string{"status"}, "{ \"a\" : [ 1 , 2 ] ,\n \"status\" : null }"},
		{"quotes, brackets and escapes inside strings", `{"a":"x\"}]{[\\","status":{"k\"":"\\\"}"},"z":0}`, []string{"status"}, `{"a":"x\"}]{[\\","status":null,"z":0}`},
		{"an escaped key", `{"st\u0061tus":{"a":1}}`, []string{"status"}, `{"st\u0061tus":null}`},
		{"a key that only starts the same", `{"statuses":1,"status":2}`, []string{"status"}, `{"statuses":1,"status":null}`},
		{"two paths, one inside the other", `{"status":{"speaker":{"addresses":[1]}},"b":1}`, []string{"status.speaker.addresses", "status"}, `{"status":null,"b":1}`},
		{"two paths apart", `{"a":{"x":1},"b":{"x":2}}`, []string{"b.x", "a.x"}, `{"a":{"x":null},"b":{"x":null}}`},
		{"empty object and array", `{"a":{},"b":[],"status":[]}`, []string{"a.x", "b.*.x", "status"}, `{"a":{},"b":[],"status":null}`},
		{"a top-level array", `[{"status":1},{"status":2}]`, []string{"*.status"}, `[{"status":null},{"status":null}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var paths []Path
			for _, p := range tc.paths {
				paths = append(paths, ParsePath(p))
			}
			doc := []byte(tc.doc)
			got, err := Null(doc, paths...)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if string(doc) != tc.doc {
				t.Errorf("the input was changed: %s", doc)
			}
		})
	}
}

func TestNullRejectsBrokenDocuments(t *testing.T) {
	for _, doc := range []string{
		`{"status":{"a":1}`,    // the object never ends
		`{"status":"abc`,       // nor the string
		`{"status" 1}`,         // no colon
		`{"a":1 "status":2}`,   // no comma
		`{status:1}`,           // an unquoted key
		`{"a":,"status":1}`,    // a missing value
		`{"items":[1 2]}`,      // no comma in an array the path leads through
		`{"status":[{"a":"x]}`, // a string that swallows the rest
	} {
		paths := []Path{ParsePath("status"), ParsePath("items.*.x")}
		if got, err := Null([]byte(doc), paths...); err == nil {
			t.Errorf("%s: no error, got %s", doc, got)
		}
	}
	if _, err := Null([]byte(`{}`), Path{}); err == nil {
		t.Error("an empty path was taken")
	}
}

func TestMember(t *testing.T) {
	for _, tc := range []struct{ doc, key, want string }{
		{`{"type":"ERROR","object":{"kind":"Status"}}`, "type", `"ERROR"`},
		{` { "object" : {"type":"x"} , "type" : "MODIFIED" } `, "type", `"MODIFIED"`},
		{`{"object":{"type":"x"}}`, "type", ``},
		{`{"a":[1,{"b":2}],"n":-1.5e3}`, "n", `-1.5e3`},
		{`{}`, "type", ``},
	} {
		got, err := Member([]byte(tc.doc), tc.key)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.doc, got, err, tc.want)
		}
	}
	for _, doc := range []string{`[1]`, `{"a" 1}`, `{"a":"b`, ``} {
		if got, err := Member([]byte(doc), "type"); err == nil {
			t.Errorf("%s: no error, got %q", doc, got)
		}
	}
}

func TestPath(t *testing.T) {
	p := ParsePath("status.speaker")
	if got := p.Prefix("object").String(); got != "object.status.speaker" {
		t.Errorf("prefixed: %s", got)
	}
	if got := p.String(); got != "status.speaker" {
		t.Errorf("the prefix changed the path: %s", got)
	}
}

// nullAt is Null on a decoded document: what a decoder must read from
// Null's result.
func nullAt(v any, p Path) any {
	if len(p) == 0 {
		return nil
	}
	switch x := v.(type) {
	case map[string]any:
		if p[0] == "*" {
			return x
		}
		if c, ok := x[p[0]]; ok {
			x[p[0]] = nullAt(c, p[1:])
		}
	case []any:
		if p[0] != "*" {
			return x
		}
		for i := range x {
			x[i] = nullAt(x[i], p[1:])
		}
	}
	return v
}

var fuzzPaths = []string{"status", "status.speaker.addresses", "items.*.status", "*.a", "a.*", "a.b.c"}

func FuzzNull(f *testing.F) {
	for _, s := range []string{
		`{"status":{"speaker":{"addresses":[{"address":"192.0.2.1","interface":"eth0"}]}}}`,
		`{"items":[{"status":{"used":{"192.0.2.1":"default/a"}},"spec":{}},{"status":null}]}`,
		`[{"a":1},{"a":[2]},3]`,
		`{"a":{"b":{"c":"\"}"}},"a":5}`,
		`"just a string"`,
		` 12 `,
	} {
		for i := range fuzzPaths {
			f.Add(s, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, doc string, which uint8) {
		p := ParsePath(fuzzPaths[int(which)%len(fuzzPaths)])
		got, err := Null([]byte(doc), p)
		if !json.Valid([]byte(doc)) {
			return
		}
		if err != nil {
			t.Fatalf("valid JSON refused: %v", err)
		}
		if !json.Valid(got) {
			t.Fatalf("made invalid JSON: %s", got)
		}
		in, out := decode(t, []byte(doc)), decode(t, got)
		if want := nullAt(in, p); !reflect.DeepEqual(out, want) {
			t.Fatalf("%s at %s:\ngot  %s", doc, p, got)
		}
	})
}

// decode reads numbers as written: 1E1000 is valid JSON, but no float64.
func decode(t *testing.T, doc []byte) any {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func BenchmarkNull(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"metadata":{"name":"x"},"status":{"used":{`)
	for i := range 10000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`"198.18.0.1":"default/scale-00001"`)
	}
	sb.WriteString(`}}}`)
	doc := []byte(sb.String())
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Null(doc, ParsePath("status")); err != nil {
			b.Fatal(err)
		}
	}
}
