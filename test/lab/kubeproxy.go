package lab

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"strings"
	"text/template"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/scheme"
)

//go:embed kube-proxy.yaml
var kubeProxyManifest string

var kubeProxyTemplate = template.Must(template.New("kube-proxy").Parse(kubeProxyManifest))

// KubeProxy shapes the kube-proxy that InstallKubeProxy creates.
type KubeProxy struct {
	// Mode is ipvs, iptables or nftables. Default ipvs.
	Mode string
	// StrictARP is ipvs.strictARP in config.conf.
	StrictARP bool
}

// InstallKubeProxy creates kube-proxy in kube-system the way kubeadm does:
// the ServiceAccount, the ConfigMap `kube-proxy` holding config.conf and
// kubeconfig.conf, and the DaemonSet `kube-proxy`.
func (c *Cluster) InstallKubeProxy(ctx context.Context, kp KubeProxy) error {
	if kp.Mode == "" {
		kp.Mode = "ipvs"
	}
	var buf bytes.Buffer
	err := kubeProxyTemplate.Execute(&buf, map[string]any{
		"Mode":      kp.Mode,
		"StrictARP": kp.StrictARP,
		"APIServer": strings.TrimPrefix(c.Config.Host, "https://"),
	})
	if err != nil {
		return fmt.Errorf("render kube-proxy manifest: %w", err)
	}
	for _, doc := range strings.Split(buf.String(), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			return fmt.Errorf("decode kube-proxy manifest: %w", err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = c.Client.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ConfigMap:
			_, err = c.Client.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.DaemonSet:
			_, err = c.Client.AppsV1().DaemonSets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			return fmt.Errorf("kube-proxy manifest: unexpected %T", obj)
		}
		if err != nil {
			return fmt.Errorf("create kube-proxy object: %w", err)
		}
	}
	return nil
}

// UninstallKubeProxy removes what InstallKubeProxy created.
func (c *Cluster) UninstallKubeProxy(ctx context.Context) error {
	fg := metav1.DeletePropagationForeground
	del := metav1.DeleteOptions{PropagationPolicy: &fg}
	for _, err := range []error{
		c.Client.AppsV1().DaemonSets("kube-system").Delete(ctx, "kube-proxy", del),
		c.Client.CoreV1().ConfigMaps("kube-system").Delete(ctx, "kube-proxy", del),
		c.Client.CoreV1().ServiceAccounts("kube-system").Delete(ctx, "kube-proxy", del),
	} {
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("remove kube-proxy: %w", err)
		}
	}
	// Wait until the objects are gone, so the next install can reuse the
	// names.
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, dsErr := c.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", getOpts)
		_, cmErr := c.Client.CoreV1().ConfigMaps("kube-system").Get(ctx, "kube-proxy", getOpts)
		_, saErr := c.Client.CoreV1().ServiceAccounts("kube-system").Get(ctx, "kube-proxy", getOpts)
		return apierrors.IsNotFound(dsErr) && apierrors.IsNotFound(cmErr) && apierrors.IsNotFound(saErr), nil
	})
}

// WaitDaemonSet waits until the DaemonSet's current template runs, ready, on
// every node it targets.
func (c *Cluster) WaitDaemonSet(ctx context.Context, namespace, name string, timeout time.Duration) (*appsv1.DaemonSet, error) {
	var ds *appsv1.DaemonSet
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var err error
		ds, err = c.Client.AppsV1().DaemonSets(namespace).Get(ctx, name, getOpts)
		if err != nil {
			return false, nil //nolint:nilerr // polled again until the deadline
		}
		s := ds.Status
		return s.ObservedGeneration >= ds.Generation &&
			s.DesiredNumberScheduled > 0 &&
			s.UpdatedNumberScheduled == s.DesiredNumberScheduled &&
			s.NumberReady == s.DesiredNumberScheduled &&
			s.NumberAvailable == s.DesiredNumberScheduled &&
			s.NumberUnavailable == 0, nil
	})
	if err != nil {
		if ds != nil {
			return ds, fmt.Errorf("wait for DaemonSet %s/%s to roll out: %w (status %+v)", namespace, name, err, ds.Status)
		}
		return nil, fmt.Errorf("wait for DaemonSet %s/%s to roll out: %w", namespace, name, err)
	}
	return ds, nil
}
