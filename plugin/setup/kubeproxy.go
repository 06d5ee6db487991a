package setup

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/pkg/kubeproxy"
	"github.com/porterlb/porter/plugin/steps"
)

// Annotations Porter keeps on the kube-proxy ConfigMap so that a rerun can
// resume and uninstall can restore.
const (
	// PreviousStrictARPAnnotation holds ipvs.strictARP as it was before
	// Porter first changed it: "true", "false" or "unset".
	PreviousStrictARPAnnotation = kubeproxy.PreviousStrictARPAnnotation
	// StrictARPChangedAnnotation is when Porter last changed strictARP;
	// kube-proxy pods started before then still run the old value.
	StrictARPChangedAnnotation = "porter.kubesphere.io/strictarp-changed-at"
	// RestartedAtAnnotation is the pod template annotation that
	// `kubectl rollout restart` sets.
	RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

	fieldManager = "kubectl-porter"
)

func dryRunOpts(dry steps.DryRun) []string {
	if dry == steps.Server {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// StrictARP sets ipvs.strictARP: true in kube-proxy's configuration, so that
// nodes stop answering ARP for addresses kube-proxy binds to kube-ipvs0 and
// only the announcing node answers for a LoadBalancer IP.
type StrictARP struct {
	Client kubernetes.Interface
	// Restart, when set, restarts kube-proxy after Undo changed the value.
	Restart *RestartKubeProxy
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (s *StrictARP) Name() string { return "strictARP" }

func (s *StrictARP) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// load returns the ConfigMap and its parsed configuration; a nil ConfigMap
// means there is none.
func (s *StrictARP) load(ctx context.Context) (*corev1.ConfigMap, *kubeproxy.Config, error) {
	cm, err := s.Client.CoreV1().ConfigMaps(kubeproxy.Namespace).Get(ctx, kubeproxy.ConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read ConfigMap %s/%s: %w", kubeproxy.Namespace, kubeproxy.ConfigMap, err)
	}
	doc, ok := cm.Data[kubeproxy.ConfigKey]
	if !ok {
		return nil, nil, &steps.Hinted{
			Err:  fmt.Errorf("ConfigMap %s/%s has no %s key; it was left untouched", kubeproxy.Namespace, kubeproxy.ConfigMap, kubeproxy.ConfigKey),
			Hint: "this kube-proxy is not configured the kubeadm way; set ipvs strictARP yourself if it runs in ipvs mode",
		}
	}
	cfg, err := kubeproxy.Parse(doc)
	if err != nil {
		return nil, nil, &steps.Hinted{
			Err:  fmt.Errorf("ConfigMap %s/%s: %w; it was left untouched", kubeproxy.Namespace, kubeproxy.ConfigMap, err),
			Hint: "fix it with `kubectl -n kube-system edit configmap kube-proxy`, then run `kubectl porter init` again",
		}
	}
	return cm, cfg, nil
}

func (s *StrictARP) Check(ctx context.Context) (steps.State, error) {
	cm, cfg, err := s.load(ctx)
	switch {
	case err != nil:
		return steps.State{}, err
	case cm == nil:
		return steps.State{Skip: true, Summary: "no kube-proxy ConfigMap in kube-system (kube-proxy replaced, e.g. by Cilium, or k3s): strictARP is not needed"}, nil
	case cfg.EffectiveMode() != kubeproxy.ModeIPVS:
		return steps.State{Skip: true, Summary: fmt.Sprintf("kube-proxy runs in %s mode, which binds no LoadBalancer IPs to an interface: strictARP is not needed", cfg.EffectiveMode())}, nil
	case cfg.StrictARP:
		return steps.State{Done: true, Summary: "ipvs.strictARP is true"}, nil
	}
	return steps.State{Summary: "ipvs.strictARP is false"}, nil
}

func (s *StrictARP) Plan(ctx context.Context) (steps.Plan, error) {
	cm, cfg, err := s.load(ctx)
	if err != nil {
		return steps.Plan{}, err
	}
	out, _, err := cfg.SetStrictARP(true)
	if err != nil {
		return steps.Plan{}, err
	}
	return steps.Plan{
		Summary: "set ipvs.strictARP: true in ConfigMap kube-system/kube-proxy",
		Diff:    lineDiff("configmap/kube-proxy "+kubeproxy.ConfigKey, cm.Data[kubeproxy.ConfigKey], out),
	}, nil
}

func (s *StrictARP) Apply(ctx context.Context, dry steps.DryRun) error {
	_, err := s.set(ctx, true, dry)
	return err
}

// set writes strictARP v, recording what it replaced the first time.
func (s *StrictARP) set(ctx context.Context, v bool, dry steps.DryRun) (bool, error) {
	cm, cfg, err := s.load(ctx)
	if err != nil || cm == nil {
		return false, err
	}
	out, changed, err := cfg.SetStrictARP(v)
	if err != nil || !changed {
		return false, err
	}
	cm = cm.DeepCopy()
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	if v {
		if _, kept := cm.Annotations[PreviousStrictARPAnnotation]; !kept {
			prev := "unset"
			if cfg.StrictARPSet {
				prev = fmt.Sprint(cfg.StrictARP)
			}
			cm.Annotations[PreviousStrictARPAnnotation] = prev
		}
	} else {
		delete(cm.Annotations, PreviousStrictARPAnnotation)
	}
	cm.Annotations[StrictARPChangedAnnotation] = s.now().UTC().Format(time.RFC3339)
	cm.Data[kubeproxy.ConfigKey] = out
	// Update, not patch: the resourceVersion makes a concurrent edit fail
	// instead of being overwritten.
	_, err = s.Client.CoreV1().ConfigMaps(kubeproxy.Namespace).Update(ctx, cm, metav1.UpdateOptions{FieldManager: fieldManager, DryRun: dryRunOpts(dry)})
	if err != nil {
		return false, fmt.Errorf("patch kube-proxy ConfigMap: %w", err)
	}
	return true, nil
}

func (s *StrictARP) Verify(ctx context.Context) error {
	_, cfg, err := s.load(ctx)
	if err != nil {
		return err
	}
	if cfg == nil || !cfg.StrictARP {
		return fmt.Errorf("ipvs.strictARP did not read back as true")
	}
	return nil
}

// Undo restores the value strictARP had before Porter changed it, and
// restarts kube-proxy when that changed the configuration.
func (s *StrictARP) Undo(ctx context.Context, dry steps.DryRun) error {
	cm, _, err := s.load(ctx)
	if err != nil || cm == nil {
		return err
	}
	prev, ok := cm.Annotations[PreviousStrictARPAnnotation]
	if !ok {
		return nil
	}
	changed, err := s.set(ctx, prev == "true", dry)
	if err != nil || !changed || s.Restart == nil || dry != steps.Write {
		return err
	}
	if err := s.Restart.Apply(ctx, dry); err != nil {
		return err
	}
	return s.Restart.Verify(ctx)
}

// UndoPlan says what Undo would restore.
func (s *StrictARP) UndoPlan(ctx context.Context) (string, error) {
	cm, cfg, err := s.load(ctx)
	if err != nil || cm == nil {
		return "", err
	}
	prev, ok := cm.Annotations[PreviousStrictARPAnnotation]
	if !ok {
		return "", nil
	}
	if _, changed, err := cfg.SetStrictARP(prev == "true"); err != nil || !changed {
		return "", err
	}
	return fmt.Sprintf("restore ipvs.strictARP to its value before init (%s) and restart kube-proxy", prev), nil
}

// RestartKubeProxy restarts the kube-proxy DaemonSet after strictARP
// changed, the way `kubectl rollout restart` does, and waits for the
// rollout.
type RestartKubeProxy struct {
	Client   kubernetes.Interface
	Timeout  time.Duration
	Progress func(string)
	Now      func() time.Time
	// Poll is the rollout polling interval; zero means 500ms.
	Poll time.Duration
}

func (r *RestartKubeProxy) Name() string { return "restart kube-proxy" }

func (r *RestartKubeProxy) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// pending reports whether pods may still run a configuration older than
// Porter's last change.
func (r *RestartKubeProxy) pending(ctx context.Context) (*appsv1.DaemonSet, bool, string, error) {
	cm, err := r.Client.CoreV1().ConfigMaps(kubeproxy.Namespace).Get(ctx, kubeproxy.ConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false, "no kube-proxy ConfigMap: nothing to restart", nil
	}
	if err != nil {
		return nil, false, "", fmt.Errorf("read ConfigMap %s/%s: %w", kubeproxy.Namespace, kubeproxy.ConfigMap, err)
	}
	ds, err := r.Client.AppsV1().DaemonSets(kubeproxy.Namespace).Get(ctx, kubeproxy.DaemonSet, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false, "no kube-proxy DaemonSet: nothing to restart", nil
	}
	if err != nil {
		return nil, false, "", fmt.Errorf("read DaemonSet %s/%s: %w", kubeproxy.Namespace, kubeproxy.DaemonSet, err)
	}
	changed, ok := cm.Annotations[StrictARPChangedAnnotation]
	if !ok {
		// strictARP about to be set (this run's previous step, or a dry
		// run's preview) means a restart will follow.
		if cfg, err := kubeproxy.Parse(cm.Data[kubeproxy.ConfigKey]); err == nil && cfg.EffectiveMode() == kubeproxy.ModeIPVS && !cfg.StrictARP {
			return ds, true, "kube-proxy restarts once strictARP is set", nil
		}
		return ds, false, "Porter has not changed kube-proxy's configuration: no restart needed", nil
	}
	if restartPredates(ds.Spec.Template.Annotations[RestartedAtAnnotation], changed) {
		return ds, true, "kube-proxy pods predate the strictARP change", nil
	}
	if !rolledOut(ds) {
		return ds, true, "the kube-proxy rollout has not finished", nil
	}
	return ds, false, "kube-proxy runs the current configuration", nil
}

func (r *RestartKubeProxy) Check(ctx context.Context) (steps.State, error) {
	ds, pending, why, err := r.pending(ctx)
	if err != nil {
		return steps.State{}, err
	}
	if ds == nil {
		return steps.State{Skip: true, Summary: why}, nil
	}
	return steps.State{Done: !pending, Summary: why}, nil
}

func (r *RestartKubeProxy) Plan(ctx context.Context) (steps.Plan, error) {
	ds, err := r.Client.AppsV1().DaemonSets(kubeproxy.Namespace).Get(ctx, kubeproxy.DaemonSet, metav1.GetOptions{})
	if err != nil {
		return steps.Plan{}, fmt.Errorf("read DaemonSet %s/%s: %w", kubeproxy.Namespace, kubeproxy.DaemonSet, err)
	}
	return steps.Plan{Summary: fmt.Sprintf("restart DaemonSet kube-system/kube-proxy (%d pods) so it reads strictARP", ds.Status.DesiredNumberScheduled)}, nil
}

func (r *RestartKubeProxy) Apply(ctx context.Context, dry steps.DryRun) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, RestartedAtAnnotation, r.now().UTC().Format(time.RFC3339))
	_, err := r.Client.AppsV1().DaemonSets(kubeproxy.Namespace).Patch(ctx, kubeproxy.DaemonSet, types.StrategicMergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: fieldManager, DryRun: dryRunOpts(dry)})
	if err != nil {
		return fmt.Errorf("restart kube-proxy DaemonSet: %w", err)
	}
	return nil
}

// restartPredates reports whether the restart time is before the change
// time. An unreadable restart time counts as long ago; an unreadable change
// time (a hand-edited annotation) asks for nothing, so it cannot cause a
// restart on every run.
func restartPredates(restartedAt, changedAt string) bool {
	changed, err := time.Parse(time.RFC3339, changedAt)
	if err != nil {
		return false
	}
	restarted, err := time.Parse(time.RFC3339, restartedAt)
	return err != nil || restarted.Before(changed)
}

// rolledOut is the DaemonSet completion rule `kubectl rollout status` uses.
func rolledOut(ds *appsv1.DaemonSet) bool {
	s := ds.Status
	return s.ObservedGeneration >= ds.Generation &&
		s.UpdatedNumberScheduled >= s.DesiredNumberScheduled &&
		s.NumberAvailable >= s.DesiredNumberScheduled
}

// Verify waits for the rollout, reporting progress, and names the pods and
// nodes that hold it up when it times out.
func (r *RestartKubeProxy) Verify(ctx context.Context) error {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	poll := r.Poll
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ds, err := r.Client.AppsV1().DaemonSets(kubeproxy.Namespace).Get(ctx, kubeproxy.DaemonSet, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read DaemonSet %s/%s: %w", kubeproxy.Namespace, kubeproxy.DaemonSet, err)
		}
		if rolledOut(ds) {
			return nil
		}
		msg := fmt.Sprintf("%d/%d nodes updated, %d available", ds.Status.UpdatedNumberScheduled, ds.Status.DesiredNumberScheduled, ds.Status.NumberAvailable)
		if msg != last && r.Progress != nil {
			r.Progress(msg)
			last = msg
		}
		if time.Now().After(deadline) {
			return &steps.Hinted{
				Err:  fmt.Errorf("kube-proxy rollout did not finish within %s (%s); not ready: %s", timeout, msg, r.stuckPods(ctx, ds)),
				Hint: "fix those pods (kubectl -n kube-system describe pod NAME), then run `kubectl porter init` again to resume; a longer --timeout may also do",
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for kube-proxy rollout: %w", ctx.Err())
		case <-time.After(poll):
		}
	}
}

// stuckPods lists "pod on node" for pods of ds that are not ready.
func (r *RestartKubeProxy) stuckPods(ctx context.Context, ds *appsv1.DaemonSet) string {
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		sel = labels.Everything()
	}
	pods, err := r.Client.CoreV1().Pods(kubeproxy.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return "(could not list pods: " + err.Error() + ")"
	}
	var stuck []string
	for _, p := range pods.Items {
		ready := false
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready || p.DeletionTimestamp != nil {
			node := p.Spec.NodeName
			if node == "" {
				node = "no node"
			}
			stuck = append(stuck, fmt.Sprintf("%s on %s (%s)", p.Name, node, p.Status.Phase))
		}
	}
	if len(stuck) == 0 {
		return "no pod is reported unready; nodes may lack a pod"
	}
	return strings.Join(stuck, ", ")
}

// Undo does nothing: undoing a restart is another restart, which
// StrictARP.Undo makes when it restores a different value.
func (r *RestartKubeProxy) Undo(context.Context, steps.DryRun) error { return nil }
