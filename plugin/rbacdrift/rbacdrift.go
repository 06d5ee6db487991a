// Package rbacdrift finds rights a ServiceAccount holds beyond what
// Porter's manifests grant it: someone bound it more, or widened one of
// its roles. A speaker runs on every node, so every right it holds is a
// right of every node's root.
package rbacdrift

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
)

// Grant is one rule a ServiceAccount holds, where it holds it, and what
// gave it.
type Grant struct {
	// Namespace is where the rule applies; empty for cluster-wide.
	Namespace string
	Rule      rbacv1.PolicyRule
	// Via names the binding, for people.
	Via string
}

// atom is one right: a verb on one resource of one group (or one
// non-resource URL), for one name or all ("").
type atom struct {
	url, group, resource, verb, name string
}

func atoms(r rbacv1.PolicyRule) []atom {
	var out []atom
	for _, u := range r.NonResourceURLs {
		for _, v := range r.Verbs {
			out = append(out, atom{url: u, verb: v})
		}
	}
	names := r.ResourceNames
	if len(names) == 0 {
		names = []string{""}
	}
	for _, g := range r.APIGroups {
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				for _, n := range names {
					out = append(out, atom{group: g, resource: res, verb: v, name: n})
				}
			}
		}
	}
	return out
}

func has(list []string, s string) bool {
	return slices.Contains(list, s) || slices.Contains(list, "*")
}

// covers reports whether rule r grants a.
func covers(r rbacv1.PolicyRule, a atom) bool {
	if a.url != "" {
		return has(r.Verbs, a.verb) && slices.ContainsFunc(r.NonResourceURLs, func(u string) bool {
			return u == a.url || u == "*" || (strings.HasSuffix(u, "*") && strings.HasPrefix(a.url, strings.TrimSuffix(u, "*")))
		})
	}
	if !has(r.APIGroups, a.group) || !has(r.Resources, a.resource) || !has(r.Verbs, a.verb) {
		return false
	}
	return len(r.ResourceNames) == 0 || (a.name != "" && slices.Contains(r.ResourceNames, a.name))
}

// Extra returns what the live grants give beyond the granted ones, one
// line a right, sorted. A cluster-wide grant covers every namespace; a
// namespaced one only its own.
func Extra(granted, live []Grant) []string {
	seen := map[string]bool{}
	for _, l := range live {
		for _, a := range atoms(l.Rule) {
			ok := slices.ContainsFunc(granted, func(g Grant) bool {
				return (g.Namespace == "" || g.Namespace == l.Namespace) && covers(g.Rule, a)
			})
			if ok {
				continue
			}
			seen[describe(a, l)] = true
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func describe(a atom, l Grant) string {
	where := "cluster-wide"
	if l.Namespace != "" {
		where = "in " + l.Namespace
	}
	if a.url != "" {
		return fmt.Sprintf("%s %s (%s)", a.verb, a.url, l.Via)
	}
	what := a.resource
	if a.group != "" {
		what += "." + a.group
	}
	if a.name != "" {
		what += "/" + a.name
	}
	return fmt.Sprintf("%s %s %s (%s)", a.verb, what, where, l.Via)
}
