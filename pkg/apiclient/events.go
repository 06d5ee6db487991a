package apiclient

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// CreateEvent writes a new Event.
func (c *Client) CreateEvent(ctx context.Context, e *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	if err := c.base.Post().Namespace(e.Namespace).Resource("events").Body(e).Do(ctx).Into(out); err != nil {
		return nil, fmt.Errorf("create Event: %w", err)
	}
	return out, nil
}

// UpdateEvent replaces an Event.
func (c *Client) UpdateEvent(ctx context.Context, e *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	if err := c.base.Put().Namespace(e.Namespace).Resource("events").Name(e.Name).Body(e).Do(ctx).Into(out); err != nil {
		return nil, fmt.Errorf("update Event: %w", err)
	}
	return out, nil
}

// PatchEvent patches an Event by strategic merge patch.
func (c *Client) PatchEvent(ctx context.Context, e *corev1.Event, data []byte) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := c.base.Patch(types.StrategicMergePatchType).Namespace(e.Namespace).Resource("events").Name(e.Name).
		VersionedParams(&metav1.PatchOptions{}, c.params).Body(data).Do(ctx).Into(out)
	if err != nil {
		return nil, fmt.Errorf("patch Event: %w", err)
	}
	return out, nil
}
