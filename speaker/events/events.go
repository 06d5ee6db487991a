// Package events records the speaker's Events.
//
// client-go's event recorder links the strategic merge patch code, and
// with it OpenAPI models, to aggregate repeated Events: megabytes of
// binary on every node, for a speaker that tells a few kinds of things,
// each once. This recorder sends each Event once, drops one repeated
// within the dedupe window, and never blocks the data path: when the API
// server is slow, Events wait in a bounded queue, and are dropped when it
// is full.
package events

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Sink writes an Event to the API server.
type Sink func(ctx context.Context, e *corev1.Event) error

// Recorder records Events about the objects it is given references to.
type Recorder struct {
	source corev1.EventSource
	sink   Sink
	log    *slog.Logger
	window time.Duration
	now    func() time.Time
	queue  chan *corev1.Event

	mu sync.Mutex
	// sent is when each (object, reason, message), by its hash, was last
	// queued: a speaker that gains 10,000 addresses tells 10,000.
	sent map[uint64]time.Time
}

// queueLen bounds the Events waiting for the API server: at the
// speaker's 20 writes a second, about 13 seconds of them. A node that
// gains 10,000 addresses at once tells of the first few hundred, and its
// log and metrics of all.
const queueLen = 256

// New is a Recorder for component on host, writing to sink. An Event that
// repeats one queued within window is dropped.
func New(component, host string, sink Sink, window time.Duration, log *slog.Logger) *Recorder {
	return &Recorder{
		source: corev1.EventSource{Component: component, Host: host},
		sink:   sink, log: log, window: window, now: time.Now,
		queue: make(chan *corev1.Event, queueLen), sent: map[uint64]time.Time{},
	}
}

// Eventf records an Event about the object ref names, as client-go's
// EventRecorder does. The speaker caches summaries, not objects, so it
// names what it tells about.
func (r *Recorder) Eventf(ref corev1.ObjectReference, eventType, reason, messageFmt string, args ...any) {
	msg := fmt.Sprintf(messageFmt, args...)
	now := r.now()
	h := fnv.New64a()
	for _, part := range []string{string(ref.UID), ref.Namespace, ref.Name, reason, msg} {
		_, _ = h.Write([]byte(part))
		_, _ = h.Write([]byte{0})
	}
	key := h.Sum64()
	r.mu.Lock()
	if at, ok := r.sent[key]; ok && now.Sub(at) < r.window {
		r.mu.Unlock()
		return
	}
	r.sent[key] = now
	if len(r.sent) > 2*queueLen {
		for k, at := range r.sent {
			if now.Sub(at) >= r.window {
				delete(r.sent, k)
			}
		}
	}
	r.mu.Unlock()
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	t := metav1.NewTime(now)
	e := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()), Namespace: ns},
		InvolvedObject:      ref,
		Reason:              reason,
		Message:             msg,
		Source:              r.source,
		FirstTimestamp:      t,
		LastTimestamp:       t,
		Count:               1,
		Type:                eventType,
		ReportingController: r.source.Component,
		ReportingInstance:   r.source.Host,
	}
	select {
	case r.queue <- e:
	default:
		r.log.Debug("event queue full; dropping an event", "reason", reason, "object", ref.Name)
	}
}

// Run writes queued Events until ctx ends.
func (r *Recorder) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-r.queue:
			if err := r.sink(ctx, e); err != nil && ctx.Err() == nil {
				r.log.Debug("write event", "reason", e.Reason, "object", e.InvolvedObject.Name, "err", err)
			}
		}
	}
}
