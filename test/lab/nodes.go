package lab

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

var getOpts = metav1.GetOptions{}

// Node describes a kwok node to create.
type Node struct {
	Name       string
	InternalIP netip.Addr
	// ExternalIP is optional.
	ExternalIP  netip.Addr
	Labels      map[string]string
	Annotations map[string]string
	Taints      []corev1.Taint
}

// CreateNode creates a node that kwok keeps Ready and waits until it is.
func (c *Cluster) CreateNode(ctx context.Context, n Node) (*corev1.Node, error) {
	if n.Name == "" || !n.InternalIP.IsValid() {
		return nil, fmt.Errorf("lab: node needs a name and an InternalIP, got %q %v", n.Name, n.InternalIP)
	}
	labels := map[string]string{
		"kubernetes.io/hostname": n.Name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
		"type":                   "kwok",
	}
	for k, v := range n.Labels {
		labels[k] = v
	}
	annotations := map[string]string{
		// kwok manages the nodes that carry this annotation.
		"kwok.x-k8s.io/node": "fake",
	}
	for k, v := range n.Annotations {
		annotations[k] = v
	}
	addresses := []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: n.InternalIP.String()},
		{Type: corev1.NodeHostName, Address: n.Name},
	}
	if n.ExternalIP.IsValid() {
		addresses = append(addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: n.ExternalIP.String()})
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels, Annotations: annotations},
		Spec:       corev1.NodeSpec{Taints: n.Taints},
		// Status is kept on create, as when a kubelet registers. kwok
		// keeps addresses it finds and adds the conditions.
		Status: corev1.NodeStatus{
			Addresses:   addresses,
			Capacity:    capacity,
			Allocatable: capacity,
		},
	}
	created, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create node %s: %w", n.Name, err)
	}
	var ready *corev1.Node
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := c.Client.CoreV1().Nodes().Get(ctx, n.Name, getOpts)
		if err != nil {
			return false, nil //nolint:nilerr // polled again until the deadline
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready = got
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return created, fmt.Errorf("wait for node %s to be Ready: %w", n.Name, err)
	}
	return ready, nil
}

// DeleteNode deletes a node and waits until it is gone.
func (c *Cluster) DeleteNode(ctx context.Context, name string) error {
	if err := c.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete node %s: %w", name, err)
	}
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().Nodes().Get(ctx, name, getOpts)
		return err != nil, nil
	})
}
