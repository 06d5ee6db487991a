package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/porterlb/porter/manifests"
	"github.com/porterlb/porter/pkg/memberkey"
	"github.com/porterlb/porter/pkg/membership"
	"github.com/porterlb/porter/plugin/steps"
)

func newRotateKeyCommand(kube *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var timeout time.Duration
	var dryRun string
	cmd := &cobra.Command{
		Use:   "rotate-key",
		Short: "Replace the speakers' gossip key without an outage",
		Long: `Replace the key that authenticates and encrypts the speakers' gossip
(Secret porter-system/` + memberkey.SecretName + `), in three steps, each
taken only once every ready speaker has taken up the one before:

  1. the new key is added beside the old; speakers accept both and still
     send with the old;
  2. the new key becomes the one speakers send with; the old is still
     accepted, so speakers that switch later still understand the rest;
  3. the old key is removed.

Speakers follow the Secret live; none restarts. An interrupted rotation
resumes where it stopped when the command is run again.`,
		Example: `  # See the steps:
  kubectl porter rotate-key --dry-run

  # Rotate, waiting up to 10 minutes for the speakers at each step:
  kubectl porter rotate-key --timeout 10m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dry, err := steps.ParseDryRun(dryRun)
			if err != nil {
				return err
			}
			if timeout <= 0 {
				return fmt.Errorf("invalid --timeout %s: must be positive", timeout)
			}
			c, err := newClients(kube)
			if err != nil {
				return err
			}
			return rotateKey(cmd.Context(), c, streams.Out, dry, timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "How long to wait at each step for every ready speaker to take up the keys")
	addDryRunFlag(cmd, &dryRun)
	return cmd
}

func rotateKey(ctx context.Context, c *clients, out io.Writer, dry steps.DryRun, timeout time.Duration) error {
	secrets := c.kube.CoreV1().Secrets(manifests.Namespace)
	sec, err := secrets.Get(ctx, memberkey.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &steps.Hinted{Err: fmt.Errorf("no gossip key Secret %s/%s to rotate", manifests.Namespace, memberkey.SecretName), Hint: "kubectl porter init creates it"}
	}
	if err != nil {
		return fmt.Errorf("read the gossip key Secret: %w", err)
	}
	keys, err := memberkey.Parse(sec.Data[memberkey.DataKey])
	if err != nil {
		return fmt.Errorf("gossip key Secret %s/%s: %w; nothing was changed", manifests.Namespace, memberkey.SecretName, err)
	}
	var target []byte
	if fp := sec.Annotations[memberkey.RotationAnnotation]; fp != "" {
		for _, k := range keys {
			if memberkey.Fingerprint(k) == fp {
				target = k
			}
		}
		if target == nil {
			return fmt.Errorf("the Secret says a rotation to key %s is under way, but holds no such key; nothing was changed", fp)
		}
		fmt.Fprintf(out, "resuming the rotation to key %s\n", fp)
	} else {
		if len(keys) > 1 {
			return fmt.Errorf("the Secret holds %d keys and no rotation is recorded on it; nothing was changed", len(keys))
		}
		if target, err = memberkey.New(); err != nil {
			return err
		}
		fmt.Fprintf(out, "rotating from key %s to key %s\n", memberkey.Fingerprint(keys[0]), memberkey.Fingerprint(target))
	}
	for n := 1; ; n++ {
		next, what, done := memberkey.NextStep(keys, target)
		if done {
			break
		}
		fmt.Fprintf(out, "step %d: %s (keys %s)\n", n, what, strings.Join(memberkey.Fingerprints(next), ","))
		if dry == steps.Client {
			keys = next
			continue
		}
		if sec.Annotations == nil {
			sec.Annotations = map[string]string{}
		}
		sec.Annotations[memberkey.RotationAnnotation] = memberkey.Fingerprint(target)
		if len(next) == 1 {
			delete(sec.Annotations, memberkey.RotationAnnotation)
		}
		sec.Data[memberkey.DataKey] = memberkey.Format(next)
		// The read resourceVersion makes a concurrent change fail here
		// rather than be overwritten.
		var opts metav1.UpdateOptions
		if dry == steps.Server {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		updated, err := secrets.Update(ctx, sec, opts)
		if apierrors.IsConflict(err) {
			return errors.New("the gossip key Secret changed while rotating; run rotate-key again to resume")
		}
		if err != nil {
			return fmt.Errorf("write the gossip key Secret (step %d): %w", n, err)
		}
		keys = next
		if dry == steps.Server {
			continue
		}
		sec = updated
		if err := waitForSpeakerKeys(ctx, c, out, memberkey.Fingerprints(next), timeout); err != nil {
			return fmt.Errorf("step %d: %w; the rotation stops here and resumes when rotate-key runs again", n, err)
		}
	}
	if dry != steps.Write {
		fmt.Fprintln(out, "dry run: nothing was changed")
		return nil
	}
	fmt.Fprintf(out, "the speakers gossip under key %s alone\n", memberkey.Fingerprint(target))
	return nil
}

// waitForSpeakerKeys waits until every node with a ready speaker pod
// reports exactly want in its NodeNICs.
func waitForSpeakerKeys(ctx context.Context, c *clients, out io.Writer, want []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		pods, err := c.kube.CoreV1().Pods(manifests.Namespace).List(ctx, metav1.ListOptions{LabelSelector: membership.SpeakerPodSelector})
		if err != nil {
			return fmt.Errorf("list speaker pods: %w", err)
		}
		inv, err := listNodeNICs(ctx, c.dyn, nil)
		if err != nil {
			return err
		}
		has := map[string][]string{}
		for _, n := range inv {
			if n.Status.Speaker != nil {
				has[n.Name] = n.Status.Speaker.MemberKeys
			}
		}
		var behind []string
		ready := membership.ReadyNodesOf(pods)
		for node := range ready {
			if !slices.Equal(has[node], want) {
				behind = append(behind, node)
			}
		}
		sort.Strings(behind)
		if len(behind) == 0 {
			fmt.Fprintf(out, "  %d/%d speakers took it up\n", len(ready), len(ready))
			return nil
		}
		if msg := fmt.Sprintf("  %d/%d speakers took it up", len(ready)-len(behind), len(ready)); msg != last {
			fmt.Fprintln(out, msg)
			last = msg
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("speakers on %s did not take up the keys within %s", strings.Join(behind, ", "), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
