package announcer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"
)

// writer records annotations on Services off the data path: a write that
// fails, for instance while the API server is down, is retried with
// backoff and never delays an announcement.
type writer struct {
	kube kubernetes.Interface
	log  *slog.Logger
	q    workqueue.TypedRateLimitingInterface[types.NamespacedName]

	mu      sync.Mutex
	pending map[types.NamespacedName]map[string]*string
}

func newWriter(kube kubernetes.Interface, log *slog.Logger) *writer {
	return &writer{
		kube: kube,
		log:  log,
		q: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](100*time.Millisecond, 5*time.Second),
			workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "annotations"}),
		pending: map[types.NamespacedName]map[string]*string{},
	}
}

func (w *writer) set(svc *corev1.Service, key, value string) { w.put(svc, key, &value) }

func (w *writer) put(svc *corev1.Service, key string, value *string) {
	nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	w.mu.Lock()
	if w.pending[nn] == nil {
		w.pending[nn] = map[string]*string{}
	}
	w.pending[nn][key] = value
	w.mu.Unlock()
	w.q.Add(nn)
}

func (w *writer) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		w.q.ShutDown()
	}()
	for {
		nn, quit := w.q.Get()
		if quit {
			return
		}
		w.mu.Lock()
		ann := w.pending[nn]
		delete(w.pending, nn)
		w.mu.Unlock()
		if len(ann) == 0 {
			w.q.Done(nn)
			continue
		}
		if err := w.patch(ctx, nn, ann); err != nil {
			w.log.Debug("annotate Service", "service", nn, "err", err)
			w.mu.Lock()
			// Newer values queued meanwhile win over the failed ones.
			if w.pending[nn] == nil {
				w.pending[nn] = ann
			} else {
				for k, v := range ann {
					if _, newer := w.pending[nn][k]; !newer {
						w.pending[nn][k] = v
					}
				}
			}
			w.mu.Unlock()
			w.q.AddRateLimited(nn)
		} else {
			w.q.Forget(nn)
		}
		w.q.Done(nn)
	}
}

func (w *writer) patch(ctx context.Context, nn types.NamespacedName, ann map[string]*string) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	if err != nil {
		return fmt.Errorf("encode annotations: %w", err)
	}
	// A write to an API server that stopped answering must fail and be
	// retried, not hang and hold every later write back.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = w.kube.CoreV1().Services(nn.Namespace).Patch(ctx, nn.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "porter-speaker"})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("annotate Service %s: %w", nn, err)
	}
	return nil
}
