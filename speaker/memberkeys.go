package speaker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/porterlb/porter/pkg/memberkey"
	"github.com/porterlb/porter/speaker/members"
)

// keysOf reads the member keys from the Secret in inf's cache; ok is false
// when there is no Secret.
func keysOf(inf cache.SharedIndexInformer) (keys [][]byte, ok bool, err error) {
	for _, o := range inf.GetStore().List() {
		s, isSecret := o.(*corev1.Secret)
		if !isSecret || s.Name != memberkey.SecretName {
			continue
		}
		keys, err := memberkey.Parse(s.Data[memberkey.DataKey])
		if err != nil {
			return nil, true, fmt.Errorf("read Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
		return keys, true, nil
	}
	return nil, false, nil
}

// waitForKeys returns the member keys, waiting for the Secret to appear:
// a speaker without a key does not join, so that nobody can join it
// without one. With --insecure-member, a missing Secret means open
// gossip (nil keys). A Secret that cannot be read is never taken for a
// missing one.
func waitForKeys(ctx context.Context, inf cache.SharedIndexInformer, opts Options, log *slog.Logger) ([][]byte, error) {
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, nil
	}
	for i := 0; ; i++ {
		keys, found, err := keysOf(inf)
		switch {
		case err != nil:
			if i%50 == 0 {
				log.Error("member key unusable; not joining until it is fixed", "err", err)
			}
		case found:
			log.Info("gossip is authenticated", "keys", memberkey.Fingerprints(keys))
			return keys, nil
		case opts.InsecureMember:
			log.Warn("no member key Secret; gossiping without a key (--insecure-member): anyone who reaches the member port can join",
				"secret", opts.Namespace+"/"+memberkey.SecretName)
			return nil, nil
		case i%50 == 0:
			log.Warn("waiting for the member key; a speaker without one does not join (kubectl porter init creates it, or pass --insecure-member)",
				"secret", opts.Namespace+"/"+memberkey.SecretName)
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// followKeys hands every change of the Secret to the member's keyring, so
// that a rotation needs no restart. A deleted or broken Secret leaves the
// keys as they are: dropping them would cut this speaker off.
func followKeys(inf cache.SharedIndexInformer, mem *members.Members, changed func(), log *slog.Logger) error {
	update := func() {
		keys, found, err := keysOf(inf)
		switch {
		case err != nil:
			log.Error("member key Secret unusable; keeping the keys in use", "err", err)
			return
		case !found:
			log.Warn("member key Secret deleted; keeping the keys in use")
			return
		}
		if slices.EqualFunc(keys, mem.Keys(), bytes.Equal) {
			return
		}
		if err := mem.SetKeys(keys); err != nil {
			log.Error("take up new member keys", "err", err)
			return
		}
		log.Info("member keys changed", "keys", memberkey.Fingerprints(keys))
		changed()
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { update() },
		UpdateFunc: func(any, any) { update() },
		DeleteFunc: func(any) { update() },
	})
	if err != nil {
		return fmt.Errorf("follow the member key Secret: %w", err)
	}
	return nil
}
