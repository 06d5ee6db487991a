package kubeproxy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
)

// kubeadmConfig returns config.conf from one of kubeadm's own manifests.
func kubeadmConfig(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			continue
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == ConfigMap {
			return cm.Data[ConfigKey]
		}
	}
	t.Fatalf("%s holds no kube-proxy ConfigMap", file)
	return ""
}

// changedLines returns the lines of b that differ from a, which must have
// the same number of lines or one more.
func changedLines(t *testing.T, a, b string) []string {
	t.Helper()
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	i, j := 0, 0
	for i < len(la) && j < len(lb) {
		if la[i] == lb[j] {
			i++
			j++
			continue
		}
		out = append(out, lb[j])
		if len(lb) > len(la) {
			j++ // an inserted line
		} else {
			i++
			j++
		}
	}
	return append(out, lb[j:]...)
}

// sameExceptStrictARP checks that two documents decode to the same data
// apart from ipvs.strictARP.
func sameExceptStrictARP(t *testing.T, a, b string) {
	t.Helper()
	var ma, mb map[string]any
	if err := yaml.Unmarshal([]byte(a), &ma); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(b), &mb); err != nil {
		t.Fatal(err)
	}
	for _, m := range []map[string]any{ma, mb} {
		if ipvs, ok := m["ipvs"].(map[string]any); ok {
			delete(ipvs, "strictARP")
			if len(ipvs) == 0 {
				delete(m, "ipvs")
			}
		}
	}
	if !reflect.DeepEqual(ma, mb) {
		t.Fatalf("documents differ beyond ipvs.strictARP:\n%v\n%v", ma, mb)
	}
}

func TestKubeadmRoundTrip(t *testing.T) {
	for file, mode := range map[string]string{
		"kubeadm-v1.37-ipvs.yaml":     ModeIPVS,
		"kubeadm-v1.37-nftables.yaml": ModeNFTables,
		"kubeadm-v1.37-default.yaml":  ModeIPTables,
	} {
		t.Run(file, func(t *testing.T) {
			doc := kubeadmConfig(t, file)
			c, err := Parse(doc)
			if err != nil {
				t.Fatal(err)
			}
			if c.EffectiveMode() != mode || c.StrictARP || !c.StrictARPSet {
				t.Fatalf("parsed mode %q strictARP %v (set %v)", c.Mode, c.StrictARP, c.StrictARPSet)
			}
			out, changed, err := c.SetStrictARP(true)
			if err != nil || !changed {
				t.Fatalf("SetStrictARP: changed %v, %v", changed, err)
			}
			if d := changedLines(t, doc, out); len(d) != 1 || d[0] != "  strictARP: true" {
				t.Fatalf("changed lines %q, want only the strictARP line", d)
			}
			sameExceptStrictARP(t, doc, out)

			// And back: the original text returns byte for byte.
			c2, err := Parse(out)
			if err != nil || !c2.StrictARP {
				t.Fatalf("reparse: %v, strictARP %v", err, c2.StrictARP)
			}
			back, changed, err := c2.SetStrictARP(false)
			if err != nil || !changed || back != doc {
				t.Fatalf("restoring false did not give back the original (changed %v, err %v)", changed, err)
			}
		})
	}
}

func TestSetStrictARPShapes(t *testing.T) {
	for _, c := range []struct {
		name, in, want string
		changed        bool
	}{
		{"already true", "kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: true\n", "kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: true\n", false},
		{"comment kept", "kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: false # set by hand\n  scheduler: rr\n",
			"kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: true # set by hand\n  scheduler: rr\n", true},
		{"no strictARP key", "kind: KubeProxyConfiguration\nmode: \"ipvs\"\nipvs:\n    scheduler: \"rr\"\n    syncPeriod: 30s\n",
			"kind: KubeProxyConfiguration\nmode: \"ipvs\"\nipvs:\n    strictARP: true\n    scheduler: \"rr\"\n    syncPeriod: 30s\n", true},
		{"no ipvs section", "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs",
			"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: true\n", true},
		{"empty ipvs", "kind: KubeProxyConfiguration\nipvs: {}\nmode: ipvs\n",
			"kind: KubeProxyConfiguration\nipvs:\n  strictARP: true\nmode: ipvs\n", true},
		{"null ipvs", "kind: KubeProxyConfiguration\nipvs:\nmode: ipvs\n",
			"kind: KubeProxyConfiguration\nipvs:\n  strictARP: true\nmode: ipvs\n", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse(c.in)
			if err != nil {
				t.Fatal(err)
			}
			out, changed, err := cfg.SetStrictARP(true)
			if err != nil {
				t.Fatal(err)
			}
			if out != c.want || changed != c.changed {
				t.Fatalf("got changed=%v\n%q\nwant changed=%v\n%q", changed, out, c.changed, c.want)
			}
			if again, err := Parse(out); err != nil || !again.StrictARP {
				t.Fatalf("result does not parse as strictARP true: %v", err)
			}
		})
	}
}

func TestParseRefusesMalformed(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"kind: KubeProxyConfiguration\nipvs:\n\tstrictARP: true\n", "parse config.conf"},
		{"- a\n- b\n", "want one YAML mapping"},
		{"", "want one YAML mapping"},
		{"kind: KubeletConfiguration\n", "kind is KubeletConfiguration"},
		{"mode: ipvs\n", "kind is none"},
		{"kind: KubeProxyConfiguration\nmode: userspace-ish\n", `unknown mode "userspace-ish"`},
		{"kind: KubeProxyConfiguration\nipvs: [1]\n", "ipvs is not a mapping"},
		{"kind: KubeProxyConfiguration\nipvs:\n  strictARP: maybe\n", `ipvs.strictARP is "maybe"`},
	} {
		if _, err := Parse(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", c.in, err, c.want)
		}
	}
}
