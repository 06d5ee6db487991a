package events

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestRecorderSendsEachEventOnceAWindow(t *testing.T) {
	var mu sync.Mutex
	var got []*corev1.Event
	sink := func(_ context.Context, e *corev1.Event) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e)
		return nil
	}
	r := New("porter-speaker", "node1", sink, 10*time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	svc := corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Name: "web", Namespace: "shop", UID: "u1"}

	r.Eventf(svc, corev1.EventTypeWarning, "AddressRefused", "%s is never announced: %s", "198.18.0.1", "it is a node's")
	r.Eventf(svc, corev1.EventTypeWarning, "AddressRefused", "%s is never announced: %s", "198.18.0.1", "it is a node's")
	r.Eventf(svc, corev1.EventTypeNormal, "Announcing", "announcing %s", "198.18.0.1")
	now = now.Add(11 * time.Minute)
	r.Eventf(svc, corev1.EventTypeWarning, "AddressRefused", "%s is never announced: %s", "198.18.0.1", "it is a node's")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if len(got) != 3 {
		t.Fatalf("sent %d events, want 3 (a repeat inside the window dropped, one after it sent)", len(got))
	}
	e := got[0]
	if e.Namespace != "shop" || e.InvolvedObject.Kind != "Service" || e.InvolvedObject.UID != "u1" || e.Reason != "AddressRefused" ||
		e.Message != "198.18.0.1 is never announced: it is a node's" || e.Type != corev1.EventTypeWarning ||
		e.Source.Component != "porter-speaker" || e.Source.Host != "node1" || e.Count != 1 || e.ReportingController != "porter-speaker" {
		t.Errorf("event %+v", e)
	}
	if got[1].Reason != "Announcing" || got[2].Reason != "AddressRefused" || got[0].Name == got[2].Name {
		t.Errorf("events %s, %s, %s (names %s, %s)", got[0].Reason, got[1].Reason, got[2].Reason, got[0].Name, got[2].Name)
	}
}

func TestRecorderNeverBlocksWhenTheQueueIsFull(t *testing.T) {
	r := New("c", "h", func(context.Context, *corev1.Event) error { return nil }, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() {
		// Nothing drains the queue: the calls past its length must not wait.
		for i := range queueLen + 50 {
			r.Eventf(corev1.ObjectReference{Kind: "Service", Name: "s", Namespace: "n", UID: "u"}, corev1.EventTypeNormal, "R", "event %d", i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Eventf blocked on a full queue")
	}
	if len(r.queue) != queueLen {
		t.Errorf("queue holds %d, want %d", len(r.queue), queueLen)
	}
}
