package setup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/porterlb/porter/manifests"
	"github.com/porterlb/porter/pkg/memberkey"
	"github.com/porterlb/porter/plugin/steps"
)

// ManifestHashAnnotation records the hash of the manifest an object was
// applied from, so that a rerun can tell "already applied" without writing.
const ManifestHashAnnotation = "porter.kubesphere.io/manifest-hash"

// SpeakerDaemonSet names the speaker's DaemonSet.
const SpeakerDaemonSet = "porter-speaker"

// ControllerDeployment names the controller's Deployment.
const ControllerDeployment = "porter-controller"

// retired are objects earlier versions installed that these manifests no
// longer hold. Apply deletes them, so that an upgrade drops the rights
// they gave: until porter-controller, the speakers themselves could roll
// kube-proxy back.
var retired = []struct{ group, version, resource, namespace, name string }{
	{"rbac.authorization.k8s.io", "v1", "rolebindings", "kube-system", "porter-speaker-guard"},
	{"rbac.authorization.k8s.io", "v1", "roles", "kube-system", "porter-speaker-guard"},
}

// Speaker applies the embedded manifests (namespace, CRDs, RBAC and the
// speaker DaemonSet) with server-side apply, and waits for the speakers.
type Speaker struct {
	Client   kubernetes.Interface
	Dynamic  dynamic.Interface
	Mapper   meta.RESTMapper
	Image    string
	Timeout  time.Duration
	Progress func(string)
	// RemoveCRDs makes Undo delete the CRDs too, and with them every
	// object of their kinds, except the CRDs named in KeepCRDs.
	RemoveCRDs bool
	KeepCRDs   []string
}

func (s *Speaker) Name() string { return "deploy speaker" }

// undoes reports whether Undo deletes o.
func (s *Speaker) undoes(o *unstructured.Unstructured) bool {
	if o.GetKind() != "CustomResourceDefinition" {
		return true
	}
	return s.RemoveCRDs && !slices.Contains(s.KeepCRDs, o.GetName())
}

// UndoPlan lists the objects Undo would delete that exist.
func (s *Speaker) UndoPlan(ctx context.Context) (string, error) {
	objs, err := s.objects()
	if err != nil {
		return "", err
	}
	var names []string
	for _, o := range objs {
		if !s.undoes(o.obj) {
			continue
		}
		_, err := o.res.Get(ctx, o.obj.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return "", fmt.Errorf("get %s: %w", describe(o.obj), err)
		}
		names = append(names, describe(o.obj))
	}
	if _, err := s.Client.CoreV1().Secrets(manifests.Namespace).Get(ctx, memberkey.SecretName, metav1.GetOptions{}); err == nil {
		names = append(names, "secret "+manifests.Namespace+"/"+memberkey.SecretName)
	}
	gone, err := s.retiredPresent(ctx)
	if err != nil {
		return "", err
	}
	names = append(names, gone...)
	if len(names) == 0 {
		return "", nil
	}
	return "delete " + strings.Join(names, ", "), nil
}

type manifestObject struct {
	obj  *unstructured.Unstructured
	res  dynamic.ResourceInterface
	hash string
}

// applyOrder is the order kinds are created in, so that nothing is created
// before what it lives in or refers to; Undo deletes in reverse.
var applyOrder = []string{"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Service", "Deployment", "DaemonSet"}

func applyRank(o *unstructured.Unstructured) int {
	if i := slices.Index(applyOrder, o.GetKind()); i >= 0 {
		return i
	}
	return len(applyOrder)
}

// objects decodes the embedded manifests, with the image set, in the
// order they are applied.
func (s *Speaker) objects() ([]manifestObject, error) {
	var out []manifestObject
	for _, name := range manifests.Names() {
		docs, err := manifests.Documents(name)
		if err != nil {
			return nil, err
		}
		for _, doc := range docs {
			var m map[string]any
			if err := yaml.Unmarshal(doc, &m); err != nil {
				return nil, fmt.Errorf("decode manifest %s: %w", name, err)
			}
			if len(m) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: m}
			if (u.GetKind() == "DaemonSet" && u.GetName() == SpeakerDaemonSet || u.GetKind() == "Deployment" && u.GetName() == ControllerDeployment) && s.Image != "" {
				containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
				for i := range containers {
					containers[i].(map[string]any)["image"] = s.Image
				}
				if err := unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers"); err != nil {
					return nil, fmt.Errorf("set the image of %s: %w", u.GetName(), err)
				}
			}
			b, _ := json.Marshal(u.Object)
			sum := sha256.Sum256(b)
			hash := hex.EncodeToString(sum[:8])
			ann := u.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[ManifestHashAnnotation] = hash
			u.SetAnnotations(ann)

			gvk := u.GroupVersionKind()
			mapping, err := s.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				return nil, fmt.Errorf("map %s: %w", gvk, err)
			}
			var res dynamic.ResourceInterface = s.Dynamic.Resource(mapping.Resource)
			if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
				res = s.Dynamic.Resource(mapping.Resource).Namespace(u.GetNamespace())
			}
			out = append(out, manifestObject{obj: u, res: res, hash: hash})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return applyRank(out[i].obj) < applyRank(out[j].obj) })
	return out, nil
}

func describe(u *unstructured.Unstructured) string {
	name := strings.ToLower(u.GetKind()) + "/" + u.GetName()
	if ns := u.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return name
}

// stale lists the objects missing or applied from another manifest.
func (s *Speaker) stale(ctx context.Context) ([]manifestObject, []string, error) {
	objs, err := s.objects()
	if err != nil {
		return nil, nil, err
	}
	var todo []manifestObject
	var why []string
	for _, o := range objs {
		cur, err := o.res.Get(ctx, o.obj.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			todo, why = append(todo, o), append(why, "create "+describe(o.obj))
		case err != nil:
			return nil, nil, fmt.Errorf("read %s: %w", describe(o.obj), err)
		case cur.GetAnnotations()[ManifestHashAnnotation] != o.hash:
			todo, why = append(todo, o), append(why, "update "+describe(o.obj))
		}
	}
	gone, err := s.retiredPresent(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range gone {
		why = append(why, "delete "+r+" (no longer shipped)")
	}
	sec, err := s.Client.CoreV1().Secrets(manifests.Namespace).Get(ctx, memberkey.SecretName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		why = append(why, createKey)
	case err != nil:
		return nil, nil, fmt.Errorf("read the member key Secret: %w", err)
	default:
		// A broken key is never replaced here: the speakers keep the
		// keys they have, and a new one would cut them off from each
		// other.
		if _, err := memberkey.Parse(sec.Data[memberkey.DataKey]); err != nil {
			return nil, nil, &steps.Hinted{
				Err:  fmt.Errorf("the Secret %s/%s holds no usable gossip key: %w; nothing was changed", manifests.Namespace, memberkey.SecretName, err),
				Hint: "restore the Secret from a backup, or delete it and restart the speakers (kubectl -n porter-system rollout restart daemonset/porter-speaker) after init makes a new one",
			}
		}
	}
	return todo, why, nil
}

func (s *Speaker) retiredResource(i int) dynamic.ResourceInterface {
	r := retired[i]
	return s.Dynamic.Resource(schema.GroupVersionResource{Group: r.group, Version: r.version, Resource: r.resource}).Namespace(r.namespace)
}

// retiredPresent lists the retired objects that exist.
func (s *Speaker) retiredPresent(ctx context.Context) ([]string, error) {
	var out []string
	for i, r := range retired {
		_, err := s.retiredResource(i).Get(ctx, r.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case apierrors.IsForbidden(err):
			// Whoever may not read it cannot have it deleted by init
			// either; status flags the rights it still gives.
			continue
		case err != nil:
			return nil, fmt.Errorf("read %s %s/%s: %w", r.resource, r.namespace, r.name, err)
		}
		out = append(out, r.namespace+"/"+strings.TrimSuffix(r.resource, "s")+"/"+r.name)
	}
	return out, nil
}

// deleteRetired deletes the retired objects; a missing one is done.
func (s *Speaker) deleteRetired(ctx context.Context, dry steps.DryRun) error {
	for i, r := range retired {
		err := s.retiredResource(i).Delete(ctx, r.name, metav1.DeleteOptions{DryRun: dryRunOpts(dry)})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s %s/%s, which this version no longer ships: %w", r.resource, r.namespace, r.name, err)
		}
	}
	return nil
}

// createKey is what stale says when the gossip key's Secret is missing.
const createKey = "create secret " + manifests.Namespace + "/" + memberkey.SecretName + " (a new gossip key)"

// createKey makes the Secret holding a new random gossip key. It only
// ever creates: an existing key is changed by rotate-key alone.
func (s *Speaker) createKey(ctx context.Context, dry steps.DryRun) error {
	k, err := memberkey.New()
	if err != nil {
		return err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: memberkey.SecretName, Namespace: manifests.Namespace,
			Labels: map[string]string{"app.kubernetes.io/part-of": "porter"}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{memberkey.DataKey: memberkey.Format([][]byte{k})},
	}
	_, err = s.Client.CoreV1().Secrets(manifests.Namespace).Create(ctx, sec, metav1.CreateOptions{DryRun: dryRunOpts(dry)})
	switch {
	case err == nil, apierrors.IsAlreadyExists(err):
		return nil
	case dry == steps.Server && apierrors.IsNotFound(err):
		return nil // the namespace is not persisted by a dry run
	}
	return fmt.Errorf("create the member key Secret: %w", err)
}

func (s *Speaker) Check(ctx context.Context) (steps.State, error) {
	todo, why, err := s.stale(ctx)
	if err != nil {
		return steps.State{}, err
	}
	if len(why) > 0 {
		return steps.State{Summary: fmt.Sprintf("%d object(s) to apply", max(len(todo), len(why)))}, nil
	}
	ds, err := s.Client.AppsV1().DaemonSets(manifests.Namespace).Get(ctx, SpeakerDaemonSet, metav1.GetOptions{})
	if err != nil {
		return steps.State{}, fmt.Errorf("read speaker DaemonSet: %w", err)
	}
	if !rolledOut(ds) {
		return steps.State{Summary: "the speaker rollout has not finished"}, nil
	}
	dep, err := s.Client.AppsV1().Deployments(manifests.Namespace).Get(ctx, ControllerDeployment, metav1.GetOptions{})
	if err != nil {
		return steps.State{}, fmt.Errorf("read controller Deployment: %w", err)
	}
	if !deploymentRolledOut(dep) {
		return steps.State{Summary: "the controller rollout has not finished"}, nil
	}
	return steps.State{Done: true, Summary: fmt.Sprintf("speaker running on %d node(s), controller %d/%d ready", ds.Status.NumberReady, dep.Status.ReadyReplicas, replicas(dep))}, nil
}

func (s *Speaker) Plan(ctx context.Context) (steps.Plan, error) {
	_, why, err := s.stale(ctx)
	if err != nil {
		return steps.Plan{}, err
	}
	if len(why) == 0 {
		return steps.Plan{Summary: "wait for the speaker and controller rollouts"}, nil
	}
	return steps.Plan{Summary: "apply " + strings.Join(why, ", ")}, nil
}

func (s *Speaker) Apply(ctx context.Context, dry steps.DryRun) (err error) {
	todo, why, err := s.stale(ctx)
	if err != nil {
		return err
	}
	force := true
	defer func() {
		if err == nil && slices.Contains(why, createKey) {
			err = s.createKey(ctx, dry)
		}
	}()
	for _, o := range todo {
		b, err := json.Marshal(o.obj.Object)
		if err != nil {
			return fmt.Errorf("encode %s: %w", describe(o.obj), err)
		}
		_, err = o.res.Patch(ctx, o.obj.GetName(), types.ApplyPatchType, b, metav1.PatchOptions{FieldManager: fieldManager, Force: &force, DryRun: dryRunOpts(dry)})
		if err != nil && dry == steps.Server && o.obj.GetNamespace() != "" && apierrors.IsNotFound(err) {
			// The namespace is created by this very step, which a dry
			// run does not persist; its objects cannot be checked yet.
			continue
		}
		if err != nil {
			return fmt.Errorf("apply %s: %w", describe(o.obj), err)
		}
	}
	return s.deleteRetired(ctx, dry)
}

// Verify waits until the CRDs are served, every node runs a ready
// speaker and the controller's replicas are ready.
func (s *Speaker) Verify(ctx context.Context) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	last := ""
	for {
		pending := []string{}
		for _, name := range []string{"eips.network.kubesphere.io", "nodenics.porter.kubesphere.io"} {
			u, err := s.Dynamic.Resource(crds).Get(ctx, name, metav1.GetOptions{})
			if err != nil || !established(u) {
				pending = append(pending, "CRD "+name)
			}
		}
		ds, err := s.Client.AppsV1().DaemonSets(manifests.Namespace).Get(ctx, SpeakerDaemonSet, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read speaker DaemonSet: %w", err)
		}
		dep, err := s.Client.AppsV1().Deployments(manifests.Namespace).Get(ctx, ControllerDeployment, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read controller Deployment: %w", err)
		}
		if len(pending) == 0 && rolledOut(ds) && ds.Status.DesiredNumberScheduled > 0 && deploymentRolledOut(dep) {
			return nil
		}
		msg := fmt.Sprintf("%d/%d speakers ready, %d/%d controllers ready", ds.Status.NumberReady, ds.Status.DesiredNumberScheduled, dep.Status.ReadyReplicas, replicas(dep))
		if msg != last && s.Progress != nil {
			s.Progress(msg)
			last = msg
		}
		if time.Now().After(deadline) {
			return &steps.Hinted{
				Err:  fmt.Errorf("not ready within %s (%s); %s", timeout, msg, strings.Join(pending, ", ")),
				Hint: "see kubectl -n porter-system get pods -o wide; run `kubectl porter init` again to resume",
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the speakers and the controller: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// deploymentRolledOut is the Deployment completion rule `kubectl rollout
// status` uses.
func deploymentRolledOut(d *appsv1.Deployment) bool {
	st := d.Status
	return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas >= replicas(d) &&
		st.Replicas <= st.UpdatedReplicas && st.AvailableReplicas >= st.UpdatedReplicas
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// Undo deletes what Apply created, in reverse order, except the CRDs: they
// hold the pools, which outlive the speaker unless removed on purpose.
func (s *Speaker) Undo(ctx context.Context, dry steps.DryRun) error {
	objs, err := s.objects()
	if err != nil {
		return err
	}
	err = s.Client.CoreV1().Secrets(manifests.Namespace).Delete(ctx, memberkey.SecretName, metav1.DeleteOptions{DryRun: dryRunOpts(dry)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the member key Secret: %w", err)
	}
	if err := s.deleteRetired(ctx, dry); err != nil {
		return err
	}
	for i := len(objs) - 1; i >= 0; i-- {
		o := objs[i]
		if !s.undoes(o.obj) {
			continue
		}
		err := o.res.Delete(ctx, o.obj.GetName(), metav1.DeleteOptions{DryRun: dryRunOpts(dry)})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s: %w", describe(o.obj), err)
		}
	}
	return nil
}

// Permissions are the verbs server-side apply needs on each object.
func (s *Speaker) Permissions() []Permission {
	var out []Permission
	objs, err := s.objects()
	if err != nil {
		return nil
	}
	for _, o := range objs {
		gvk := o.obj.GroupVersionKind()
		m, err := s.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			continue
		}
		for _, verb := range []string{"get", "create", "patch"} {
			out = append(out, Permission{Verb: verb, Group: m.Resource.Group, Resource: m.Resource.Resource, Namespace: o.obj.GetNamespace(), Name: o.obj.GetName()})
		}
	}
	for _, verb := range []string{"get", "create", "delete"} {
		out = append(out, Permission{Verb: verb, Resource: "secrets", Namespace: manifests.Namespace, Name: memberkey.SecretName})
	}
	for _, r := range retired {
		out = append(out, Permission{Verb: "delete", Group: r.group, Resource: r.resource, Namespace: r.namespace, Name: r.name})
	}
	return out
}
