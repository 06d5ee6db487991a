package lab

import (
	"context"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
)

// RemoveTimeout bounds how long Remove keeps asking. It is long enough to
// outlast a lease renewal missed by a loaded API server.
const RemoveTimeout = time.Minute

// Remove registers a cleanup that deletes what the test made and returns
// only once the API server says it is gone. del is called until it
// returns NotFound: a conflict (a controller wrote the object between a
// read and a precondition), a timeout or a refusal is asked again, and
// an object still terminating is asked again until it is gone. Tests in a
// package share one cluster and reuse names, so an object left behind
// fails every later test that makes it; a cleanup that gives up fails its
// own test instead, which names the leak where it happened.
func Remove(t testing.TB, what string, del func(context.Context) error) {
	t.Helper()
	t.Cleanup(func() {
		if err := RemoveNow(context.Background(), del); err != nil {
			t.Errorf("remove %s: %v", what, err)
		}
	})
}

// RemoveNow calls del until it returns NotFound, as Remove does, and
// gives up after RemoveTimeout with the last error del returned.
func RemoveNow(ctx context.Context, del func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, RemoveTimeout, true, func(ctx context.Context) (bool, error) {
		last = del(ctx)
		return apierrors.IsNotFound(last), nil
	})
	if err == nil {
		return nil
	}
	if last != nil {
		return last
	}
	return fmt.Errorf("still present after %s: %w", RemoveTimeout, err)
}
