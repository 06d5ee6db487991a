package speaker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/porterlb/porter/pkg/apiclient"
	"github.com/porterlb/porter/pkg/facts"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/test/lab"
)

// speakerSources builds the Services informer as the speaker does, over
// cfg, and starts it.
func speakerSources(ctx context.Context, t *testing.T, cfg *rest.Config, onAll func(error)) *facts.Sources {
	t.Helper()
	api, err := apiclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src, err := facts.NewSources(ctx, api, facts.SourceOptions{Transform: facts.Lean, Unread: facts.LeanUnread, LoadBalancersOnly: true, OnAllServices: onAll})
	if err != nil {
		t.Fatalf("build the speaker's informers: %v", err)
	}
	src.Start(ctx.Done())
	t.Cleanup(src.Shutdown)
	if !cache.WaitForCacheSync(ctx.Done(), src.Services.HasSynced) {
		t.Fatal("the Services cache never synced")
	}
	return src
}

// typedService creates a Service of type typ in default, removed when the
// test ends.
func typedService(ctx context.Context, t *testing.T, name string, typ corev1.ServiceType) {
	t.Helper()
	svcs := env.Cluster.Client.CoreV1().Services("default")
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{lbservice.LBAnnotation: "porter"}},
		Spec:       corev1.ServiceSpec{Type: typ, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if _, err := svcs.Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.Remove(t, "Service "+name, func(ctx context.Context) error {
		return svcs.Delete(ctx, name, metav1.DeleteOptions{})
	})
}

func retype(ctx context.Context, t *testing.T, name string, typ corev1.ServiceType) {
	t.Helper()
	svcs := env.Cluster.Client.CoreV1().Services("default")
	svc, err := svcs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.Type = typ
	if typ != corev1.ServiceTypeLoadBalancer {
		for i := range svc.Spec.Ports {
			svc.Spec.Ports[i].NodePort = 0
		}
	}
	if _, err := svcs.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("make Service %s a %s: %v", name, typ, err)
	}
}

// cachedKeys waits until the cache holds each of want and none of
// absent, and fails saying what it holds if it never does.
func cachedKeys(ctx context.Context, t *testing.T, inf cache.SharedIndexInformer, when string, want, absent []string) {
	t.Helper()
	var have []string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		have = have[:0]
		for _, o := range inf.GetStore().List() {
			have = append(have, o.(*lbservice.Summary).Key)
		}
		for _, k := range want {
			if !slices.Contains(have, k) {
				return false, nil
			}
		}
		for _, k := range absent {
			if slices.Contains(have, k) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s: the speaker's Services cache holds %v, want %v and not %v", when, have, want, absent)
	}
}

// The speaker's Services cache holds LoadBalancers only, and follows a
// Service into and out of that type: one that stops being a LoadBalancer
// leaves it, as a deletion, and one that becomes one enters it.
func TestSpeakerWatchesOnlyLoadBalancerServices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	typedService(ctx, t, "typed-lb", corev1.ServiceTypeLoadBalancer)
	typedService(ctx, t, "typed-plain", corev1.ServiceTypeClusterIP)
	src := speakerSources(ctx, t, env.Cluster.Config, nil)
	if src.AllServices() {
		t.Fatal("the lab's API server selects Services by type, but the speaker watches them all")
	}
	cachedKeys(ctx, t, src.Services, "at start", []string{"default/typed-lb"}, []string{"default/typed-plain", "default/kubernetes"})

	retype(ctx, t, "typed-lb", corev1.ServiceTypeClusterIP)
	retype(ctx, t, "typed-plain", corev1.ServiceTypeLoadBalancer)
	cachedKeys(ctx, t, src.Services, "after the two swapped types", []string{"default/typed-plain"}, []string{"default/typed-lb"})
}

// typeBlindProxy stands in front of the lab's real API server. Once
// blind() is called, it renames spec.type to a field the API server does
// not know in every selector and ends every request in flight, so the API
// server itself refuses, as one that cannot select Services by type does.
// renamed counts the requests it renamed.
func typeBlindProxy(t *testing.T) (cfg *rest.Config, blind func(), renamed *atomic.Int32) {
	t.Helper()
	upstream, err := url.Parse(env.Cluster.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	transport, err := rest.TransportFor(env.Cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	proxy.Transport = transport
	proxy.FlushInterval = -1 // watches stream
	proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) }
	renamed = &atomic.Int32{}
	var (
		mu       sync.Mutex
		isBlind  bool
		inFlight = map[*http.Request]context.CancelFunc{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		r = r.WithContext(ctx)
		mu.Lock()
		b := isBlind
		inFlight[r] = cancel
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(inFlight, r)
			mu.Unlock()
		}()
		q := r.URL.Query()
		if sel := q.Get("fieldSelector"); b && strings.Contains(sel, "spec.type") {
			q.Set("fieldSelector", strings.ReplaceAll(sel, "spec.type", "spec.kind"))
			r.URL.RawQuery = q.Encode()
			renamed.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	blind = func() {
		mu.Lock()
		defer mu.Unlock()
		isBlind = true
		for _, cancel := range inFlight {
			cancel()
		}
	}
	return &rest.Config{Host: srv.URL}, blind, renamed
}

// An API server that cannot select Services by type refuses any list or
// watch that asks to. The speaker then watches every Service rather than
// none.
func TestSpeakerWatchesEveryServiceWhereTypeCannotBeSelected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, blind, renamed := typeBlindProxy(t)
	blind()
	typedService(ctx, t, "untyped-lb", corev1.ServiceTypeLoadBalancer)
	typedService(ctx, t, "untyped-plain", corev1.ServiceTypeClusterIP)
	src := speakerSources(ctx, t, cfg, nil)
	if renamed.Load() == 0 {
		t.Fatal("the speaker never asked to select Services by type")
	}
	if !src.AllServices() {
		t.Fatal("the API server refused to select Services by type, but the speaker says it watches LoadBalancers only")
	}
	cachedKeys(ctx, t, src.Services, "watching every Service", []string{"default/untyped-lb", "default/untyped-plain", "default/kubernetes"}, nil)
}

// In an upgrade, the API server the speaker asked at start may select
// Services by type and the one its watch reaches later may not. The
// refused watch turns the speaker to every Service, with the cache
// refilled from a list, never left without the Services it had.
func TestSpeakerWatchesEveryServiceOnceItsWatchIsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, blind, renamed := typeBlindProxy(t)
	typedService(ctx, t, "later-lb", corev1.ServiceTypeLoadBalancer)
	typedService(ctx, t, "later-plain", corev1.ServiceTypeClusterIP)
	told := make(chan error, 1)
	src := speakerSources(ctx, t, cfg, func(err error) { told <- err })
	if src.AllServices() {
		t.Fatal("the speaker watches every Service before any refusal")
	}
	cachedKeys(ctx, t, src.Services, "before the refusal", []string{"default/later-lb"}, []string{"default/later-plain"})

	blind()
	select {
	case err := <-told:
		t.Logf("told: %v", err)
	case <-ctx.Done():
		t.Fatalf("the speaker was never told its watch was refused (%d requests renamed)", renamed.Load())
	}
	if !src.AllServices() {
		t.Error("after the refusal, the speaker says it watches LoadBalancers only")
	}
	typedService(ctx, t, "later-plain-2", corev1.ServiceTypeClusterIP)
	cachedKeys(ctx, t, src.Services, "after the refusal", []string{"default/later-lb", "default/later-plain", "default/later-plain-2"}, nil)
}
