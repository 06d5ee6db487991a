// Package guard is Porter's "commit confirmed": before a change that could
// cut the operator off (the kube-proxy restart after strictARP, a new or
// enabled pool), the plugin records in the cluster how to undo the change
// and how long it may stand unconfirmed. It removes the record once it has
// checked that it can still reach the API server and the targets the user
// named. If the record is still there when that time has passed, the
// operator has lost access, and the elected allocator undoes the change by
// itself.
//
// No two machines' clocks are ever compared: a plan carries a duration,
// never a time, and the allocator times it on its own clock from when it
// first sees each version of the plan. Each guarded command has a plan of
// its own, so concurrent commands never overwrite or confirm each other's.
package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/manifests"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/kubeproxy"
)

// Where plans live, and how they are told apart.
const (
	// Namespace is Porter's own.
	Namespace = manifests.Namespace
	// Label marks a ConfigMap in Namespace as a plan. The admission
	// policy in manifests/guard-policy.yaml lets only those allowed to
	// create lockoutguards.porter.kubesphere.io write such a ConfigMap.
	Label = "porter.kubesphere.io/lockout-guard"
	// NamePrefix starts each plan's generated name.
	NamePrefix = "porter-guard-"
	planKey    = "plan.json"
)

// The virtual resource the admission policy asks the authorizer about: a
// cluster admin holds it through "*", and the allocator by its ClusterRole.
const (
	PermissionGroup    = "porter.kubesphere.io"
	PermissionResource = "lockoutguards"
	PermissionVerb     = "create"
)

// Timeouts. The allocator looks at plans every second, and a kube-proxy
// restart takes seconds: a plan shorter than MinTimeout would roll back
// changes that were never given a chance to be confirmed.
const (
	MinTimeout     = 10 * time.Second
	DefaultTimeout = 2 * time.Minute
)

// CheckTimeout refuses a timeout a plan may not have.
func CheckTimeout(d time.Duration) error {
	if d < MinTimeout {
		return fmt.Errorf("--confirm-timeout must be at least %s (got %s): the change has to be applied and confirmed within it; to apply without the guard, use --no-guard", MinTimeout, d)
	}
	return nil
}

// Plan is the undo the allocator runs when a plan stands unconfirmed for
// its Timeout.
type Plan struct {
	// Timeout is how long each version of the plan stands unconfirmed.
	Timeout metav1.Duration `json:"timeout"`
	// Beat changes each time the plugin extends the plan: every write
	// makes a new version, whose timeout starts afresh.
	Beat int `json:"beat,omitempty"`
	// Change says what was being changed, for logs and Events.
	Change string `json:"change"`
	// StrictARP, when set, is the value to restore, restarting kube-proxy.
	StrictARP *bool `json:"strictARP,omitempty"`
	// DisableEips are pools to disable: their addresses stop being
	// announced at once.
	DisableEips []string `json:"disableEips,omitempty"`
	// RollingBack is set by the allocator, on the version it found
	// expired, before it undoes anything: a plugin that confirms late
	// finds its plan changed under it, and learns the change is undone.
	RollingBack bool `json:"rollingBack,omitempty"`
}

// TimeoutOrDefault is the plan's timeout as the allocator applies it: never
// under MinTimeout, whoever wrote the plan, and DefaultTimeout if unset.
func (p Plan) TimeoutOrDefault() time.Duration {
	switch d := p.Timeout.Duration; {
	case d <= 0:
		return DefaultTimeout
	case d < MinTimeout:
		return MinTimeout
	default:
		return d
	}
}

// ErrRolledBack says the allocator took the plan over: the change was, or
// is being, undone in the cluster.
var ErrRolledBack = errors.New("the change was rolled back in the cluster: it was not confirmed in time")

// Armed is one command's plan as written.
type Armed struct {
	Name            string
	ResourceVersion string
	Plan            Plan
}

func encode(p Plan) (map[string]string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return map[string]string{planKey: string(b)}, nil
}

// Decode reads a plan ConfigMap.
func Decode(cm *corev1.ConfigMap) (Armed, error) {
	var p Plan
	if err := json.Unmarshal([]byte(cm.Data[planKey]), &p); err != nil {
		return Armed{}, fmt.Errorf("read lockout guard plan %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return Armed{Name: cm.Name, ResourceVersion: cm.ResourceVersion, Plan: p}, nil
}

// Arm records a new plan, creating the namespace if needed.
func Arm(ctx context.Context, cs kubernetes.Interface, p Plan) (*Armed, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "porter"}}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("arm guard: create namespace %s: %w", Namespace, err)
	}
	data, err := encode(p)
	if err != nil {
		return nil, fmt.Errorf("arm guard: %w", err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{GenerateName: NamePrefix, Namespace: Namespace,
			Labels: map[string]string{"app.kubernetes.io/part-of": "porter", Label: "plan"}},
		Data: data,
	}
	got, err := cs.CoreV1().ConfigMaps(Namespace).Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("arm guard: create its ConfigMap in %s: %w", Namespace, err)
	}
	return &Armed{Name: got.Name, ResourceVersion: got.ResourceVersion, Plan: p}, nil
}

// Rewrite writes p as the plan's next version, which starts its timeout
// afresh. It writes only over the version this command wrote last: if the
// allocator has taken the plan over, it returns ErrRolledBack.
func (a *Armed) Rewrite(ctx context.Context, cs kubernetes.Interface, p Plan) error {
	p.Beat = a.Plan.Beat + 1
	data, err := encode(p)
	if err != nil {
		return fmt.Errorf("rewrite guard: %w", err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: Namespace, ResourceVersion: a.ResourceVersion,
			Labels: map[string]string{"app.kubernetes.io/part-of": "porter", Label: "plan"}},
		Data: data,
	}
	got, err := cs.CoreV1().ConfigMaps(Namespace).Update(ctx, cm, metav1.UpdateOptions{})
	switch {
	case apierrors.IsConflict(err), apierrors.IsNotFound(err):
		return ErrRolledBack
	case err != nil:
		return fmt.Errorf("rewrite guard %s/%s: %w", Namespace, a.Name, err)
	}
	a.ResourceVersion, a.Plan = got.ResourceVersion, p
	return nil
}

// Confirm removes the plan: the change stands. It removes only the version
// this command wrote last; if the allocator has taken the plan over, the
// change is being undone and Confirm returns ErrRolledBack.
func (a *Armed) Confirm(ctx context.Context, cs kubernetes.Interface) error {
	rv := a.ResourceVersion
	err := cs.CoreV1().ConfigMaps(Namespace).Delete(ctx, a.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
	switch {
	case apierrors.IsConflict(err), apierrors.IsNotFound(err):
		return ErrRolledBack
	case err != nil:
		return fmt.Errorf("clear guard %s/%s: %w", Namespace, a.Name, err)
	}
	return nil
}

// Drop removes the plan whatever its version: the command undid the
// change itself, or never made it.
func (a *Armed) Drop(ctx context.Context, cs kubernetes.Interface) error {
	err := cs.CoreV1().ConfigMaps(Namespace).Delete(ctx, a.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("clear guard %s/%s: %w", Namespace, a.Name, err)
	}
	return nil
}

// List reads every plan; a ConfigMap that holds no readable plan is
// returned among the errors, and left alone.
func List(ctx context.Context, cs kubernetes.Interface) ([]Armed, []error, error) {
	l, err := cs.CoreV1().ConfigMaps(Namespace).List(ctx, metav1.ListOptions{LabelSelector: Label})
	if err != nil {
		return nil, nil, fmt.Errorf("list lockout guard plans: %w", err)
	}
	var out []Armed
	var bad []error
	for i := range l.Items {
		a, err := Decode(&l.Items[i])
		if err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, a)
	}
	return out, bad, nil
}

// Execute undoes the guarded change: pools first, since that stops their
// announcements at once, then strictARP. It can be run again safely.
func Execute(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, p Plan) error {
	for _, name := range p.DisableEips {
		patch := []byte(`{"spec":{"disable":true}}`)
		_, err := dyn.Resource(v1alpha2.EipResource).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "porter-guard"})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("roll back: disable Eip %s: %w", name, err)
		}
	}
	if p.StrictARP != nil {
		if err := restoreStrictARP(ctx, cs, *p.StrictARP); err != nil {
			return err
		}
	}
	return nil
}

func restoreStrictARP(ctx context.Context, cs kubernetes.Interface, v bool) error {
	cm, err := cs.CoreV1().ConfigMaps(kubeproxy.Namespace).Get(ctx, kubeproxy.ConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("roll back: read kube-proxy ConfigMap: %w", err)
	}
	cfg, err := kubeproxy.Parse(cm.Data[kubeproxy.ConfigKey])
	if err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	out, changed, err := cfg.SetStrictARP(v)
	if err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	if !changed {
		return nil
	}
	cm = cm.DeepCopy()
	cm.Data[kubeproxy.ConfigKey] = out
	delete(cm.Annotations, kubeproxy.PreviousStrictARPAnnotation)
	if _, err := cs.CoreV1().ConfigMaps(kubeproxy.Namespace).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "porter-guard"}); err != nil {
		return fmt.Errorf("roll back: patch kube-proxy ConfigMap: %w", err)
	}
	patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().UTC().Format(time.RFC3339))
	if _, err := cs.AppsV1().DaemonSets(kubeproxy.Namespace).Patch(ctx, kubeproxy.DaemonSet, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "porter-guard"}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("roll back: restart kube-proxy: %w", err)
	}
	return nil
}
