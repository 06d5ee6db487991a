package rbacdrift

import (
	"context"
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// ServiceAccount names one account.
type ServiceAccount struct{ Namespace, Name string }

func (sa ServiceAccount) String() string { return sa.Namespace + "/" + sa.Name }

// subjectIs reports whether s names sa, directly or through a group every
// ServiceAccount of its namespace is in.
func (sa ServiceAccount) subjectIs(s rbacv1.Subject) bool {
	switch s.Kind {
	case rbacv1.ServiceAccountKind:
		return s.Name == sa.Name && s.Namespace == sa.Namespace
	case rbacv1.GroupKind:
		return s.Name == "system:serviceaccounts" || s.Name == "system:serviceaccounts:"+sa.Namespace || s.Name == "system:authenticated"
	}
	return false
}

// FromManifests reads the rules the manifest documents bind to sa.
func FromManifests(docs [][]byte, sa ServiceAccount) ([]Grant, error) {
	type object struct {
		Kind     string              `json:"kind"`
		Metadata metav1.ObjectMeta   `json:"metadata"`
		Rules    []rbacv1.PolicyRule `json:"rules"`
		RoleRef  rbacv1.RoleRef      `json:"roleRef"`
		Subjects []rbacv1.Subject    `json:"subjects"`
	}
	roles := map[string][]rbacv1.PolicyRule{}
	var bindings []object
	for _, d := range docs {
		var o object
		if err := yaml.Unmarshal(d, &o); err != nil {
			return nil, fmt.Errorf("decode manifest: %w", err)
		}
		switch o.Kind {
		case "ClusterRole":
			roles["ClusterRole/"+o.Metadata.Name] = o.Rules
		case "Role":
			roles["Role/"+o.Metadata.Namespace+"/"+o.Metadata.Name] = o.Rules
		case "ClusterRoleBinding", "RoleBinding":
			bindings = append(bindings, o)
		}
	}
	var out []Grant
	for _, b := range bindings {
		if !bound(b.Subjects, sa) {
			continue
		}
		key := "ClusterRole/" + b.RoleRef.Name
		if b.RoleRef.Kind == "Role" {
			key = "Role/" + b.Metadata.Namespace + "/" + b.RoleRef.Name
		}
		for _, r := range roles[key] {
			out = append(out, Grant{Namespace: b.Metadata.Namespace, Rule: r, Via: strings.ToLower(b.Kind) + " " + b.Metadata.Name})
		}
	}
	return out, nil
}

func bound(subjects []rbacv1.Subject, sa ServiceAccount) bool {
	for _, s := range subjects {
		if s.Kind == rbacv1.ServiceAccountKind && sa.subjectIs(s) {
			return true
		}
	}
	return false
}

// bootstrapped marks the API server's own default roles and bindings,
// which every account holds (discovery, self reviews).
const bootstrapped = "kubernetes.io/bootstrapping"

// Live reads the rules the cluster binds to sa now, leaving out the API
// server's own defaults.
func Live(ctx context.Context, cs kubernetes.Interface, sa ServiceAccount) ([]Grant, error) {
	crbs, err := cs.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list ClusterRoleBindings: %w", err)
	}
	rbs, err := cs.RbacV1().RoleBindings("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list RoleBindings: %w", err)
	}
	rules := func(ns string, ref rbacv1.RoleRef) ([]rbacv1.PolicyRule, error) {
		if ref.Kind == "Role" {
			r, err := cs.RbacV1().Roles(ns).Get(ctx, ref.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			if err != nil {
				return nil, fmt.Errorf("read Role %s/%s: %w", ns, ref.Name, err)
			}
			return r.Rules, nil
		}
		r, err := cs.RbacV1().ClusterRoles().Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read ClusterRole %s: %w", ref.Name, err)
		}
		return r.Rules, nil
	}
	var out []Grant
	add := func(meta metav1.ObjectMeta, kind string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) error {
		if meta.Labels[bootstrapped] != "" {
			return nil
		}
		if !slices.ContainsFunc(subjects, sa.subjectIs) {
			return nil
		}
		rs, err := rules(meta.Namespace, ref)
		if err != nil {
			return err
		}
		for _, r := range rs {
			out = append(out, Grant{Namespace: meta.Namespace, Rule: r, Via: kind + " " + meta.Name})
		}
		return nil
	}
	for _, b := range crbs.Items {
		if err := add(b.ObjectMeta, "clusterrolebinding", b.RoleRef, b.Subjects); err != nil {
			return nil, err
		}
	}
	for _, b := range rbs.Items {
		if err := add(b.ObjectMeta, "rolebinding", b.RoleRef, b.Subjects); err != nil {
			return nil, err
		}
	}
	return out, nil
}
