package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apiclient"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/speaker/nics"
)

const fieldManager = "porter-speaker"

// inventory publishes this node's NIC inventory as a NodeNICs object named
// after the node, owned by the Node so that it goes when the node does.
type inventory struct {
	api      *apiclient.Client
	nodeName string
	log      *slog.Logger
	every    time.Duration
	// node reads this node from a cache; speaker reports the speaker's
	// own state. kick asks for an early look.
	node    func() (*addrpolicy.DecodedNode, error)
	speaker func() *v1alpha1.SpeakerStatus
	// conflicts are the addresses the announcer found answered by
	// another host.
	conflicts func() []v1alpha1.AddressConflict
	// synced reports whether the cache of published reports has synced:
	// the first publication waits for it, so that it carries over what
	// the node's previous speaker published.
	synced func() bool
	kick   chan struct{}
	// exists reports whether the published object is still there, as a
	// cache sees it: after an uninstall and a new install it is not.
	exists func() bool

	last          []v1alpha1.NIC
	lastGateways  []string
	lastConflicts []v1alpha1.AddressConflict
	lastSpeaker   *v1alpha1.SpeakerStatus
	// publishedAt is when the report was last written; pending, that a
	// change to the address list waits to be.
	publishedAt time.Time
	pending     bool
}

// addressListCost is how long a change to the list of announced
// addresses alone waits, per address listed, after the last publication.
// The list is for people and for the announcer annotation; a report of
// 10,000 addresses is half a megabyte, and republishing it on every
// change of a flood of new Services, each write received by every speaker
// and replica, kept the API server from serving the flood itself. Every
// other change is published at once.
const addressListCost = time.Millisecond

// listWait is how long after the last publication a change to sp's
// address list alone may be published.
func listWait(sp *v1alpha1.SpeakerStatus) time.Duration {
	return time.Duration(len(sp.Addresses)) * addressListCost
}

// wait is how long the loop sleeps before it looks again: its period, or
// less when a change to the address list waits.
func (i *inventory) wait() time.Duration {
	if !i.pending || i.lastSpeaker == nil {
		return i.every
	}
	return min(i.every, max(time.Until(i.publishedAt.Add(listWait(i.lastSpeaker))), 10*time.Millisecond))
}

// addressesOnly reports whether a and b differ only in what they say is
// announced.
func addressesOnly(a, b *v1alpha1.SpeakerStatus) bool {
	if a == nil || b == nil {
		return false
	}
	x, y := *a, *b
	x.Addresses, y.Addresses, x.Announcing, y.Announcing = nil, nil, 0, 0
	return reflect.DeepEqual(x, y)
}

// run publishes at start and then whenever the interfaces or the speaker's
// state change, looking every i.every and whenever kicked.
func (i *inventory) run(ctx context.Context) error {
	if i.synced != nil && !cache.WaitForCacheSync(ctx.Done(), i.synced) {
		return nil
	}
	for {
		if err := i.publishIfChanged(ctx); err != nil {
			i.log.Error("publish NIC inventory", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-i.kick:
		case <-time.After(i.wait()):
		}
	}
}

func (i *inventory) publishIfChanged(ctx context.Context) error {
	node, err := i.node()
	if err != nil {
		return fmt.Errorf("get node %s: %w", i.nodeName, err)
	}
	list, primary, err := nics.Read(node.InternalIP)
	if err != nil {
		return err
	}
	gateways, err := nics.Gateways()
	if err != nil {
		return err
	}
	var sp *v1alpha1.SpeakerStatus
	if i.speaker != nil {
		sp = i.speaker()
	}
	var conflicts []v1alpha1.AddressConflict
	if i.conflicts != nil {
		conflicts = i.conflicts()
	}
	gone := i.exists != nil && !i.exists()
	same := !gone && i.last != nil && reflect.DeepEqual(list, i.last) &&
		reflect.DeepEqual(gateways, i.lastGateways) && reflect.DeepEqual(conflicts, i.lastConflicts)
	if same && reflect.DeepEqual(sp, i.lastSpeaker) {
		return nil
	}
	if same && addressesOnly(sp, i.lastSpeaker) && time.Since(i.publishedAt) < listWait(sp) {
		i.pending = true
		return nil
	}
	st := v1alpha1.NodeNICsStatus{NICs: list, Primary: primary, Gateways: gateways, Conflicts: conflicts, Speaker: sp}
	if err := i.publish(ctx, node, st); err != nil {
		return err
	}
	if !reflect.DeepEqual(list, i.last) || !reflect.DeepEqual(gateways, i.lastGateways) {
		i.log.Info("published NIC inventory", "nics", len(list), "primary", primary, "gateways", gateways)
	}
	i.last, i.lastSpeaker, i.lastGateways, i.lastConflicts = list, sp, gateways, conflicts
	i.publishedAt, i.pending = time.Now(), false
	return nil
}

func (i *inventory) publish(ctx context.Context, node *addrpolicy.DecodedNode, st v1alpha1.NodeNICsStatus) error {
	obj := &v1alpha1.NodeNICs{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "NodeNICs"},
		ObjectMeta: metav1.ObjectMeta{
			Name: node.Name,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID,
			}},
		},
	}
	res := i.api.Resource(apiclient.NodeNICs)
	if err := res.Apply(ctx, node.Name, "", obj, fieldManager); err != nil {
		return fmt.Errorf("apply NodeNICs %s: %w", node.Name, err)
	}
	obj.OwnerReferences = nil
	st.UpdatedAt = metav1.Now()
	obj.Status = st
	if err := res.Apply(ctx, node.Name, "status", obj, fieldManager); err != nil {
		return fmt.Errorf("apply NodeNICs %s status: %w", node.Name, err)
	}
	return nil
}
