package rbacdrift

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

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

// Bindings are the cluster's role bindings, read once for every account
// asked about.
type Bindings struct {
	cluster []rbacv1.ClusterRoleBinding
	ns      []rbacv1.RoleBinding
}

// ReadBindings lists every ClusterRoleBinding and RoleBinding.
func ReadBindings(ctx context.Context, cs kubernetes.Interface) (*Bindings, error) {
	var (
		wg     sync.WaitGroup
		crbs   *rbacv1.ClusterRoleBindingList
		crbErr error
		rbs    *rbacv1.RoleBindingList
		rbErr  error
	)
	wg.Go(func() { crbs, crbErr = cs.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{}) })
	rbs, rbErr = cs.RbacV1().RoleBindings("").List(ctx, metav1.ListOptions{})
	wg.Wait()
	if crbErr != nil {
		return nil, fmt.Errorf("list ClusterRoleBindings: %w", crbErr)
	}
	if rbErr != nil {
		return nil, fmt.Errorf("list RoleBindings: %w", rbErr)
	}
	return &Bindings{cluster: crbs.Items, ns: rbs.Items}, nil
}

// Live reads the rules the cluster binds to sa now, leaving out the API
// server's own defaults. The roles it names are read at once.
func (b *Bindings) Live(ctx context.Context, cs kubernetes.Interface, sa ServiceAccount) ([]Grant, error) {
	type bound struct {
		meta metav1.ObjectMeta
		kind string
		ref  rbacv1.RoleRef
	}
	var todo []bound
	add := func(meta metav1.ObjectMeta, kind string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		if meta.Labels[bootstrapped] == "" && slices.ContainsFunc(subjects, sa.subjectIs) {
			todo = append(todo, bound{meta, kind, ref})
		}
	}
	for _, x := range b.cluster {
		add(x.ObjectMeta, "clusterrolebinding", x.RoleRef, x.Subjects)
	}
	for _, x := range b.ns {
		add(x.ObjectMeta, "rolebinding", x.RoleRef, x.Subjects)
	}
	rules := make([][]rbacv1.PolicyRule, len(todo))
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, t := range todo {
		wg.Go(func() { rules[i], errs[i] = roleRules(ctx, cs, t.meta.Namespace, t.ref) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []Grant
	for i, t := range todo {
		for _, r := range rules[i] {
			out = append(out, Grant{Namespace: t.meta.Namespace, Rule: r, Via: t.kind + " " + t.meta.Name})
		}
	}
	return out, nil
}

// roleRules reads the rules of the role ref names; a role that is gone
// grants nothing.
func roleRules(ctx context.Context, cs kubernetes.Interface, ns string, ref rbacv1.RoleRef) ([]rbacv1.PolicyRule, error) {
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
