package rbacdrift

import (
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/porterlb/porter/manifests"
)

func rule(groups, resources, verbs, names string) rbacv1.PolicyRule {
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	// The core group is "", so groups are split even when empty.
	return rbacv1.PolicyRule{APIGroups: strings.Split(groups, ","), Resources: split(resources), Verbs: split(verbs), ResourceNames: split(names)}
}

func TestExtra(t *testing.T) {
	granted := []Grant{
		{Rule: rule("", "services", "get,list,watch", "")},
		{Rule: rule("", "services/status", "update", "")},
		{Namespace: "porter-system", Rule: rule("", "configmaps", "list,update,delete", "")},
		{Namespace: "kube-system", Rule: rule("", "configmaps", "get,update", "kube-proxy")},
	}
	for _, tc := range []struct {
		name string
		live []Grant
		want []string
	}{
		{"exactly the grants", granted, nil},
		{"a subset", []Grant{{Rule: rule("", "services", "get", "")}}, nil},
		{"a cluster-wide grant covers a namespace", []Grant{{Namespace: "default", Rule: rule("", "services", "list", ""), Via: "rolebinding x"}}, nil},
		{"one more verb", []Grant{{Rule: rule("", "services", "get,patch", ""), Via: "clusterrolebinding wide"}},
			[]string{"patch services cluster-wide (clusterrolebinding wide)"}},
		{"a namespaced grant does not cover another namespace", []Grant{{Namespace: "default", Rule: rule("", "configmaps", "delete", ""), Via: "rolebinding x"}},
			[]string{"delete configmaps in default (rolebinding x)"}},
		{"nor cluster-wide", []Grant{{Rule: rule("", "configmaps", "list", ""), Via: "clusterrolebinding y"}},
			[]string{"list configmaps cluster-wide (clusterrolebinding y)"}},
		{"a named grant does not cover all names", []Grant{{Namespace: "kube-system", Rule: rule("", "configmaps", "get", ""), Via: "rolebinding z"}},
			[]string{"get configmaps in kube-system (rolebinding z)"}},
		{"but covers its own name", []Grant{{Namespace: "kube-system", Rule: rule("", "configmaps", "get", "kube-proxy")}}, nil},
		{"wildcards are rights of their own", []Grant{{Rule: rule("*", "*", "*", ""), Via: "clusterrolebinding admin"}},
			[]string{"* *.* cluster-wide (clusterrolebinding admin)"}},
		{"another group", []Grant{{Rule: rule("apps", "daemonsets", "patch", ""), Via: "clusterrolebinding ds"}},
			[]string{"patch daemonsets.apps cluster-wide (clusterrolebinding ds)"}},
		{"non-resource URLs", []Grant{{Rule: rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}, Via: "clusterrolebinding m"}},
			[]string{"get /metrics (clusterrolebinding m)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Extra(granted, tc.live); !slices.Equal(got, tc.want) {
				t.Errorf("Extra = %q, want %q", got, tc.want)
			}
		})
	}
}

// The manifests' own grants, read back, cover themselves and hold what
// each account's rules say: the controller writes, the speaker only
// reads, but for its NodeNICs and Events.
func TestFromManifests(t *testing.T) {
	docs, err := manifests.Documents("rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []Grant {
		t.Helper()
		grants, err := FromManifests(docs, ServiceAccount{Namespace: "porter-system", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if len(grants) == 0 {
			t.Fatalf("no grants read for %s", name)
		}
		if extra := Extra(grants, grants); len(extra) != 0 {
			t.Errorf("the grants of %s do not cover themselves: %v", name, extra)
		}
		return grants
	}
	speaker, controller := read("porter-speaker"), read("porter-controller")
	writes := []Grant{
		{Rule: rule("", "services", "patch", ""), Via: "x"},
		{Rule: rule("", "services/status", "update", ""), Via: "x"},
		{Rule: rule("network.kubesphere.io", "eips", "patch", ""), Via: "x"},
		{Namespace: "kube-system", Rule: rule("", "configmaps", "update", "kube-proxy"), Via: "x"},
		{Namespace: "kube-system", Rule: rule("apps", "daemonsets", "patch", "kube-proxy"), Via: "x"},
		{Namespace: "porter-system", Rule: rule("coordination.k8s.io", "leases", "update", ""), Via: "x"},
		{Namespace: "porter-system", Rule: rule("", "configmaps", "delete", ""), Via: "x"},
	}
	if extra := Extra(controller, writes); len(extra) != 0 {
		t.Errorf("rights the manifests grant the controller are missing: %v", extra)
	}
	if extra := Extra(speaker, writes); len(extra) != len(writes) {
		t.Errorf("the speaker holds some of the controller's writes: only %v are beyond it", extra)
	}
	reads := []Grant{
		{Rule: rule("", "services", "list", "")},
		{Rule: rule("porter.kubesphere.io", "nodenics/status", "patch", "")},
	}
	if extra := Extra(speaker, reads); len(extra) != 0 {
		t.Errorf("rights the manifests grant the speaker are missing: %v", extra)
	}
	notGranted := []Grant{{Namespace: "kube-system", Rule: rule("", "configmaps", "update", "coredns"), Via: "x"}}
	if extra := Extra(controller, notGranted); len(extra) != 1 {
		t.Errorf("a right the manifests do not grant was not found: %v", extra)
	}
	if other, _ := FromManifests(docs, ServiceAccount{Namespace: "default", Name: "porter-speaker"}); len(other) != 0 {
		t.Errorf("a ServiceAccount of another namespace holds %d grants", len(other))
	}
}
