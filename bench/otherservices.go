package main

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// otherServicesNS holds the section's Services, so that one namespace
// deletion takes them all away.
const otherServicesNS = "bench-other-types"

// otherServices measures what Services that are not LoadBalancers cost a
// speaker, which asks the API server for LoadBalancers only, and a
// controller replica, which watches every Service: each process's RSS
// with o.otherServices headless ClusterIP Services in the cluster, against
// its own just before they were made.
func (b *bench) otherServices(ctx context.Context) error {
	n := b.o.otherServices
	node := b.env.Net.Nodes[0]
	proc := b.speakers.Proc(node.Name)
	if proc == nil {
		return fmt.Errorf("no speaker runs on %s", node.Name)
	}
	fast, err := kubernetes.NewForConfig(withQPS(b.env.Cluster.Config))
	if err != nil {
		return err
	}
	spk0, ctl0, err := b.settledMem(ctx, proc.Pid())
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: otherServicesNS}}
	if _, err := fast.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", otherServicesNS, err)
	}
	defer func() {
		if err := b.deleteNamespace(context.WithoutCancel(ctx), fast, otherServicesNS); err != nil {
			b.res.problem("%v", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "creating %d headless ClusterIP Services\n", n)
	if err := createHeadless(ctx, fast, n); err != nil {
		return err
	}
	spk, ctl, err := b.settledMem(ctx, proc.Pid())
	if err != nil {
		return err
	}
	if b.speakers.Proc(node.Name) != proc {
		return fmt.Errorf("the speaker on %s restarted during the section", node.Name)
	}
	label := fmt.Sprintf("%d Services that are not LoadBalancers", n)
	b.res.add(Figure{Section: "memory", Name: "speaker RSS beside " + label, Value: mib(spk.RSS), Unit: "MiB",
		Baseline: mib(spk0.RSS), BaselineName: "the same speaker before they were made",
		Note: fmt.Sprintf("anonymous %.1f MiB, against %.1f; it watches LoadBalancer Services only", mib(spk.Anon), mib(spk0.Anon))})
	b.res.add(Figure{Section: "memory", Name: "controller RSS beside " + label, Value: mib(ctl.RSS), Unit: "MiB",
		Baseline: mib(ctl0.RSS), BaselineName: "the same replica before they were made",
		Note: fmt.Sprintf("the larger replica; anonymous %.1f MiB, against %.1f; it watches every Service", mib(ctl.Anon), mib(ctl0.Anon))})
	return nil
}

// settledMem waits for the caches to take in what changed and returns the
// largest of five readings, 2 s apart, of the speaker pid's memory and the
// controller's.
func (b *bench) settledMem(ctx context.Context, pid int) (spk, ctl mem, err error) {
	wait := 20 * time.Second
	for range 5 {
		select {
		case <-ctx.Done():
			return mem{}, mem{}, ctx.Err()
		case <-time.After(wait):
		}
		wait = 2 * time.Second
		s, err := memOf(pid)
		if err != nil {
			return mem{}, mem{}, err
		}
		c, err := b.controllerMem()
		if err != nil {
			return mem{}, mem{}, err
		}
		if s.RSS > spk.RSS {
			spk = s
		}
		if c.RSS > ctl.RSS {
			ctl = c
		}
	}
	return spk, ctl, nil
}

// createHeadless creates n headless Services in otherServicesNS. Headless,
// they take no ClusterIP from the Service range.
func createHeadless(ctx context.Context, kube kubernetes.Interface, n int) error {
	return parallel(0, n, 32, func(i int) error {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("other-%05d", i)},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: corev1.ClusterIPNone,
				Ports: []corev1.ServicePort{{Port: 80}}},
		}
		if _, err := kube.CoreV1().Services(otherServicesNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create Service %s/%s: %w", otherServicesNS, svc.Name, err)
		}
		return nil
	})
}

// deleteNamespace deletes ns and waits until the namespace controller has
// emptied and removed it.
func (b *bench) deleteNamespace(ctx context.Context, kube kubernetes.Interface, ns string) error {
	if err := kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	err := poll(ctx, 5*time.Minute, func() bool {
		_, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if err != nil {
		return fmt.Errorf("wait for namespace %s to go: %w", ns, err)
	}
	return nil
}
