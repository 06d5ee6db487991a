package initcmd

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/memberkey"
	"github.com/porterlb/porter/test/lab"
)

func memberKeys(t *testing.T) ([][]byte, map[string]string) {
	t.Helper()
	s, err := cluster.Client.CoreV1().Secrets("porter-system").Get(context.Background(), memberkey.SecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read the gossip key Secret: %v", err)
	}
	k, err := memberkey.Parse(s.Data[memberkey.DataKey])
	if err != nil {
		t.Fatal(err)
	}
	return k, s.Annotations
}

// init makes a gossip key; rotate-key replaces it while the speakers run,
// and they never stop seeing each other.
func TestRotateKeyWithoutOutage(t *testing.T) {
	withKubeProxy(t, lab.KubeProxy{Mode: "ipvs"})
	uninstallAfter(t)
	if r := porter("init", "--yes", "--eip", "rk=198.18.0.246-198.18.0.247"); r.err != nil {
		t.Fatalf("init: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	waitFor(t, "a healthy status", 60*time.Second, func() bool {
		r := porter("status")
		return r.err == nil && strings.Contains(r.stdout, "all 3 speakers see each other")
	})
	before, _ := memberKeys(t)
	if len(before) != 1 {
		t.Fatalf("init made %d keys, want 1", len(before))
	}
	old := memberkey.Fingerprint(before[0])
	if r := porter("status"); !strings.Contains(r.stdout, "gossip authenticated with key "+old) {
		t.Errorf("status does not name the key %s:\n%s", old, r.stdout)
	}

	r := porter("rotate-key", "--dry-run")
	if r.err != nil || strings.Count(r.stdout, "step ") != 3 || !strings.Contains(r.stdout, "nothing was changed") {
		t.Fatalf("rotate-key --dry-run: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	if k, _ := memberKeys(t); len(k) != 1 || memberkey.Fingerprint(k[0]) != old {
		t.Fatal("a dry run changed the key")
	}
	if r := porter("rotate-key", "--timeout", "0s"); r.err == nil || !strings.Contains(r.stderr, "must be positive") {
		t.Errorf("rotate-key --timeout 0s: %v %s", r.err, r.stderr)
	}

	// Watch membership through the rotation: every speaker must keep
	// seeing all three.
	stop := make(chan struct{})
	var gaps []string
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if r := porter("status", "-o", "json"); !strings.Contains(r.stdout, "all 3 speakers see each other") {
				gaps = append(gaps, r.stdout)
			}
		}
	}()
	r = porter("rotate-key", "--timeout", "2m")
	close(stop)
	<-watched
	if r.err != nil {
		t.Fatalf("rotate-key: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	t.Logf("rotate-key:\n%s", r.stdout)
	after, ann := memberKeys(t)
	if len(after) != 1 || memberkey.Fingerprint(after[0]) == old {
		t.Fatalf("after the rotation: keys %v, want one new key", memberkey.Fingerprints(after))
	}
	if ann[memberkey.RotationAnnotation] != "" {
		t.Errorf("the rotation is still recorded on the Secret: %v", ann)
	}
	if len(gaps) > 0 {
		t.Errorf("speakers stopped seeing each other %d time(s) during the rotation; first:\n%s", len(gaps), gaps[0])
	}
	if r := porter("status"); r.err != nil || !strings.Contains(r.stdout, "gossip authenticated with key "+memberkey.Fingerprint(after[0])) {
		t.Errorf("status after the rotation: %v\n%s", r.err, r.stdout)
	}
}
