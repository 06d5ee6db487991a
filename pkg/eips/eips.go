// Package eips reads and writes Eip objects through the dynamic client, so
// that callers need no generated clientset.
package eips

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
)

// Client reads and writes Eips.
type Client struct {
	res dynamic.NamespaceableResourceInterface
}

// New returns a Client using dc.
func New(dc dynamic.Interface) *Client {
	return &Client{res: dc.Resource(v1alpha2.EipResource)}
}

// explain turns a NotFound on a collection, which can only mean the
// resource itself is missing, into advice.
func explain(err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the Eip API (eips.network.kubesphere.io) is not installed in this cluster; run `kubectl porter init` first: %w", err)
	}
	return err
}

// List returns every Eip.
func (c *Client) List(ctx context.Context) (*v1alpha2.EipList, error) {
	u, err := c.res.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Eips: %w", explain(err))
	}
	var out v1alpha2.EipList
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), &out); err != nil {
		return nil, fmt.Errorf("decode Eip list: %w", err)
	}
	return &out, nil
}

// Watch streams changes to Eips from resourceVersion rv on. Each event's
// object is decoded with Decode.
func (c *Client) Watch(ctx context.Context, rv string) (watch.Interface, error) {
	w, err := c.res.Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		return nil, fmt.Errorf("watch Eips: %w", explain(err))
	}
	return w, nil
}

// Decode converts an object from a Watch event.
func Decode(obj runtime.Object) (*v1alpha2.Eip, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("decode Eip: unexpected %T", obj)
	}
	return fromUnstructured(u)
}

// Get returns one Eip.
func (c *Client) Get(ctx context.Context, name string) (*v1alpha2.Eip, error) {
	u, err := c.res.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get Eip %s: %w", name, err)
	}
	return fromUnstructured(u)
}

// Create creates an Eip; dryRun sends it with server-side dry run.
func (c *Client) Create(ctx context.Context, eip *v1alpha2.Eip, dryRun bool) (*v1alpha2.Eip, error) {
	obj, err := ToUnstructured(eip)
	if err != nil {
		return nil, err
	}
	opts := metav1.CreateOptions{FieldManager: "kubectl-porter"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	u, err := c.res.Create(ctx, obj, opts)
	if err != nil {
		return nil, fmt.Errorf("create Eip %s: %w", eip.Name, explain(err))
	}
	return fromUnstructured(u)
}

// Delete deletes an Eip, only if it still has resourceVersion rv, so that
// a pool changed since it was checked is not deleted blindly.
func (c *Client) Delete(ctx context.Context, name, rv string, dryRun bool) error {
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if err := c.res.Delete(ctx, name, opts); err != nil {
		return fmt.Errorf("delete Eip %s: %w", name, err)
	}
	return nil
}

// ToUnstructured converts an Eip, setting its apiVersion and kind.
func ToUnstructured(eip *v1alpha2.Eip) (*unstructured.Unstructured, error) {
	e := eip.DeepCopy()
	e.APIVersion, e.Kind = v1alpha2.GroupVersion.String(), "Eip"
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(e)
	if err != nil {
		return nil, fmt.Errorf("encode Eip %s: %w", eip.Name, err)
	}
	return &unstructured.Unstructured{Object: m}, nil
}

func fromUnstructured(u *unstructured.Unstructured) (*v1alpha2.Eip, error) {
	var e v1alpha2.Eip
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), &e); err != nil {
		return nil, fmt.Errorf("decode Eip %s: %w", u.GetName(), err)
	}
	return &e, nil
}
