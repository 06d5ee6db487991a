package lab

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A controller that writes an object between the cleanup's read and its
// delete makes the delete's precondition fail. The object must still be
// gone when RemoveNow returns, or the next test that makes one of that
// name fails instead.
func TestRemoveOutlastsAWriteBetweenReadAndDelete(t *testing.T) {
	ctx := context.Background()
	cms := cluster.Client.CoreV1().ConfigMaps("default")
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "remove-me"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var calls, conflicts int
	err := RemoveNow(ctx, func(ctx context.Context) error {
		calls++
		cur, err := cms.Get(ctx, "remove-me", metav1.GetOptions{})
		if err != nil {
			return err
		}
		rv := cur.ResourceVersion
		if calls == 1 {
			cur.Data = map[string]string{"written": "meanwhile"}
			if _, err := cms.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
				t.Fatalf("write between read and delete: %v", err)
			}
		}
		err = cms.Delete(ctx, "remove-me", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
		if apierrors.IsConflict(err) {
			conflicts++
		}
		return err
	})
	if err != nil {
		t.Fatalf("RemoveNow: %v", err)
	}
	if conflicts != 1 {
		t.Errorf("the delete met %d conflicts, want the 1 this test made", conflicts)
	}
	if _, err := cms.Get(ctx, "remove-me", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after RemoveNow, get ConfigMap remove-me: %v, want NotFound", err)
	}
}
