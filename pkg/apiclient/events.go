package apiclient

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

// EventSink writes Events for record.EventBroadcaster, as client-go's
// typed sink does.
func (c *Client) EventSink(ctx context.Context) record.EventSink {
	return eventSink{c: c, ctx: ctx}
}

type eventSink struct {
	c   *Client
	ctx context.Context
}

func (s eventSink) Create(e *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := s.c.base.Post().Namespace(e.Namespace).Resource("events").Body(e).Do(s.ctx).Into(out)
	if err != nil {
		return nil, fmt.Errorf("create Event: %w", err)
	}
	return out, nil
}

func (s eventSink) Update(e *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := s.c.base.Put().Namespace(e.Namespace).Resource("events").Name(e.Name).Body(e).Do(s.ctx).Into(out)
	if err != nil {
		return nil, fmt.Errorf("update Event: %w", err)
	}
	return out, nil
}

func (s eventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := s.c.base.Patch(types.StrategicMergePatchType).Namespace(e.Namespace).Resource("events").Name(e.Name).
		VersionedParams(&metav1.PatchOptions{}, s.c.params).Body(data).Do(s.ctx).Into(out)
	if err != nil {
		return nil, fmt.Errorf("patch Event: %w", err)
	}
	return out, nil
}
