// Package kubeproxy reads and edits kube-proxy's configuration as kubeadm
// stores it: a KubeProxyConfiguration document under the key config.conf of
// the ConfigMap kube-system/kube-proxy.
//
// Edits are surgical. The document is parsed with the yaml.v3 node API only
// to find where a value sits; the change is then made to the original text
// at that spot, so every other byte (fields, key order, quoting, comments)
// stays as it was.
package kubeproxy

import (
	"errors"
	"fmt"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Where kubeadm keeps kube-proxy's configuration.
const (
	Namespace = "kube-system"
	ConfigMap = "kube-proxy"
	ConfigKey = "config.conf"
	DaemonSet = "kube-proxy"
)

// PreviousStrictARPAnnotation, on the kube-proxy ConfigMap, holds
// ipvs.strictARP as it was before Porter first changed it: "true", "false"
// or "unset".
const PreviousStrictARPAnnotation = "porter.kubesphere.io/previous-strictarp"

// Proxy modes.
const (
	ModeIPVS     = "ipvs"
	ModeIPTables = "iptables"
	ModeNFTables = "nftables"
)

// Config is what Porter needs to know of a KubeProxyConfiguration.
type Config struct {
	// Mode is the proxy mode as written; empty means the platform
	// default, iptables on Linux.
	Mode string
	// StrictARP is ipvs.strictARP; StrictARPSet says whether the key is
	// present at all.
	StrictARP    bool
	StrictARPSet bool

	doc        string
	root       *yaml.Node
	ipvs       *yaml.Node // the mapping under "ipvs", if present
	strictNode *yaml.Node // the value of ipvs.strictARP, if present
}

// EffectiveMode is the mode kube-proxy runs in.
func (c *Config) EffectiveMode() string {
	if c.Mode == "" {
		return ModeIPTables
	}
	return c.Mode
}

// Parse reads a config.conf document.
func Parse(doc string) (*Config, error) {
	var file yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &file); err != nil {
		return nil, fmt.Errorf("parse %s: %w", ConfigKey, err)
	}
	if file.Kind != yaml.DocumentNode || len(file.Content) != 1 || file.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("parse %s: want one YAML mapping (a KubeProxyConfiguration)", ConfigKey)
	}
	root := file.Content[0]
	c := &Config{doc: doc, root: root}
	if kind := scalar(root, "kind"); kind == nil || kind.Value != "KubeProxyConfiguration" {
		got := "none"
		if kind != nil {
			got = kind.Value
		}
		return nil, fmt.Errorf("parse %s: kind is %s, want KubeProxyConfiguration", ConfigKey, got)
	}
	if m := scalar(root, "mode"); m != nil {
		c.Mode = strings.TrimSpace(m.Value)
	}
	switch c.Mode {
	case "", ModeIPVS, ModeIPTables, ModeNFTables, "kernelspace":
	default:
		return nil, fmt.Errorf("parse %s: unknown mode %q", ConfigKey, c.Mode)
	}
	if ipvs := value(root, "ipvs"); ipvs != nil {
		switch {
		case ipvs.Kind == yaml.MappingNode:
			c.ipvs = ipvs
		case ipvs.Kind == yaml.ScalarNode && ipvs.Tag == "!!null":
		default:
			return nil, fmt.Errorf("parse %s: ipvs is not a mapping", ConfigKey)
		}
	}
	if c.ipvs != nil {
		if s := value(c.ipvs, "strictARP"); s != nil {
			var b bool
			if s.Kind != yaml.ScalarNode || s.Decode(&b) != nil {
				return nil, fmt.Errorf("parse %s: ipvs.strictARP is %q, want true or false", ConfigKey, s.Value)
			}
			c.StrictARP, c.StrictARPSet, c.strictNode = b, true, s
		}
	}
	return c, nil
}

// SetStrictARP returns the document with ipvs.strictARP set to v, changing
// nothing else, and whether that changed the text.
func (c *Config) SetStrictARP(v bool) (string, bool, error) {
	want := "false"
	if v {
		want = "true"
	}
	switch {
	case c.strictNode != nil:
		if c.StrictARP == v && c.strictNode.Value == want {
			return c.doc, false, nil
		}
		out, err := replaceScalar(c.doc, c.strictNode, want)
		return out, err == nil, err
	case c.ipvs != nil && len(c.ipvs.Content) > 0:
		// Insert strictARP as the mapping's first key, indented like it.
		first := c.ipvs.Content[0]
		out, err := insertLine(c.doc, first.Line, strings.Repeat(" ", first.Column-1)+"strictARP: "+want)
		return out, err == nil, err
	default:
		// No ipvs section (or an empty one): add one at the end.
		out := c.doc
		if i := keyNode(c.root, "ipvs"); i != nil {
			// "ipvs: {}" or "ipvs:" with null: replace that line.
			lines := strings.Split(out, "\n")
			line := lines[i.Line-1]
			indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
			lines[i.Line-1] = indent + "ipvs:\n" + indent + "  strictARP: " + want
			return strings.Join(lines, "\n"), true, nil
		}
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		return out + "ipvs:\n  strictARP: " + want + "\n", true, nil
	}
}

// replaceScalar rewrites the scalar n, a plain single-line value, in doc.
func replaceScalar(doc string, n *yaml.Node, v string) (string, error) {
	lines := strings.Split(doc, "\n")
	if n.Line < 1 || n.Line > len(lines) {
		return "", errors.New("locate ipvs.strictARP: position out of range")
	}
	line := lines[n.Line-1]
	col := n.Column - 1
	rest := line[col:]
	// The value's source text runs to the end of the token: up to a
	// comment or the end of the line.
	end := len(rest)
	if i := strings.Index(rest, " #"); i >= 0 {
		end = i
	}
	token := strings.TrimRight(rest[:end], " \t")
	if strings.Trim(token, `"'`) != n.Value {
		return "", fmt.Errorf("locate ipvs.strictARP: found %q where %q was parsed", token, n.Value)
	}
	lines[n.Line-1] = line[:col] + v + rest[len(token):]
	return strings.Join(lines, "\n"), nil
}

func insertLine(doc string, before int, text string) (string, error) {
	lines := strings.Split(doc, "\n")
	if before < 1 || before > len(lines) {
		return "", errors.New("locate ipvs section: position out of range")
	}
	lines = append(lines[:before-1], append([]string{text}, lines[before-1:]...)...)
	return strings.Join(lines, "\n"), nil
}

// keyNode returns the key node for key in mapping m.
func keyNode(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i]
		}
	}
	return nil
}

// value returns the value node for key in mapping m.
func value(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalar(m *yaml.Node, key string) *yaml.Node {
	if v := value(m, key); v != nil && v.Kind == yaml.ScalarNode {
		return v
	}
	return nil
}
