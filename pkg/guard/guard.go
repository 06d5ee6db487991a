// Package guard is Porter's "commit confirmed": before a change that could
// cut the operator off (the kube-proxy restart after strictARP, a new or
// enabled pool), the plugin records in the cluster a deadline and how to
// undo the change. It clears the record once it has checked that it can
// still reach the API server and the targets the user named. If the record
// is still there at the deadline, the operator has lost access, and the
// elected speaker undoes the change by itself.
package guard

import (
	"context"
	"encoding/json"
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

// Where the guard lives.
const (
	// Namespace is Porter's own.
	Namespace = manifests.Namespace
	Name      = "porter-guard"
	planKey   = "plan.json"
)

// Plan is the undo the speaker runs when the deadline passes.
type Plan struct {
	Deadline time.Time `json:"deadline"`
	// Change says what was being changed, for logs and Events.
	Change string `json:"change"`
	// StrictARP, when set, is the value to restore, restarting kube-proxy.
	StrictARP *bool `json:"strictARP,omitempty"`
	// DisableEips are pools to disable: their addresses stop being
	// announced at once.
	DisableEips []string `json:"disableEips,omitempty"`
}

// Arm records p, creating the namespace if needed. Arming again replaces
// the plan, which is how a live plugin pushes its deadline out.
func Arm(ctx context.Context, cs kubernetes.Interface, p Plan) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "porter"}}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("arm guard: create namespace %s: %w", Namespace, err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("arm guard: encode plan: %w", err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "porter"}},
		Data:       map[string]string{planKey: string(b)},
	}
	_, err = cs.CoreV1().ConfigMaps(Namespace).Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = cs.CoreV1().ConfigMaps(Namespace).Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("arm guard: write ConfigMap %s/%s: %w", Namespace, Name, err)
	}
	return nil
}

// Clear removes the guard: the change is confirmed.
func Clear(ctx context.Context, cs kubernetes.Interface) error {
	err := cs.CoreV1().ConfigMaps(Namespace).Delete(ctx, Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("clear guard: %w", err)
	}
	return nil
}

// Load reads the armed plan; nil when there is none.
func Load(ctx context.Context, cs kubernetes.Interface) (*Plan, error) {
	cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read guard: %w", err)
	}
	var p Plan
	if err := json.Unmarshal([]byte(cm.Data[planKey]), &p); err != nil {
		return nil, fmt.Errorf("read guard %s/%s: %w", Namespace, Name, err)
	}
	return &p, nil
}

// Execute undoes the guarded change: pools first, since that stops their
// announcements at once, then strictARP.
func Execute(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, p *Plan) error {
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
