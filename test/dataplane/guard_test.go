package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/pkg/guard"
)

// blackhole is a LAN address nobody holds: a TCP probe to it gets no answer.
const blackhole = "198.18.0.250:22"

// guardPlans are the lockout guard plans in the cluster, by name.
func guardPlans(t *testing.T) []string {
	t.Helper()
	l, err := env.Cluster.Client.CoreV1().ConfigMaps("porter-system").List(context.Background(), metav1.ListOptions{LabelSelector: guard.Label})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, cm := range l.Items {
		out = append(out, cm.Name)
	}
	return out
}

func guardPresent(t *testing.T) bool {
	t.Helper()
	return len(guardPlans(t)) > 0
}

// startPlugin starts a guarded kubectl porter command and returns once it
// has armed its guard and applied its change, with its output so far.
func startPlugin(t *testing.T, pool string, args ...string) (*exec.Cmd, *strings.Builder, <-chan struct{}) {
	t.Helper()
	cmd := env.Kubectl(context.Background(), append([]string{"porter"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var out strings.Builder
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "lockout guard armed") {
			break
		}
	}
	rest := make(chan struct{})
	go func() {
		defer close(rest)
		b, _ := io.ReadAll(stderr)
		out.Write(b)
	}()
	poll(t, 10*time.Second, "the pool "+pool+" to exist", func(ctx context.Context) (bool, error) {
		return env.Cluster.Kubectl(ctx, "get", "eip", pool).Run() == nil, nil
	})
	return cmd, &out, rest
}

func deletePoolAfter(t *testing.T, name string) {
	t.Cleanup(func() {
		_ = env.Cluster.Kubectl(context.Background(), "delete", "eip", name, "--ignore-not-found").Run()
	})
}

func TestGuardClearedAfterAConfirmedChange(t *testing.T) {
	startSpeakers(t)
	deletePoolAfter(t, "confirmed")
	probe := env.Net.Nodes[0].IP.String() + ":8080"
	out, err := env.Kubectl(context.Background(), "porter", "eip", "create", "confirmed", "--address", "198.18.0.160-198.18.0.161", "--protocol", "layer2", "--probe", probe).CombinedOutput()
	if err != nil {
		t.Fatalf("eip create: %v\n%s", err, out)
	}
	for _, want := range []string{"lockout guard armed", "access confirmed, guard cleared", "created"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if guardPresent(t) {
		t.Error("a confirmed change left the guard ConfigMap behind")
	}
	if getPool(t, "confirmed").Spec.Disable {
		t.Error("a confirmed pool was disabled")
	}
}

func TestGuardRollsBackWhenAProbeTargetStopsAnswering(t *testing.T) {
	startSpeakers(t)
	deletePoolAfter(t, "unreachable")
	out, err := env.Kubectl(context.Background(), "porter", "eip", "create", "unreachable", "--address", "198.18.0.162-198.18.0.163", "--protocol", "layer2", "--probe", blackhole).CombinedOutput()
	if err == nil {
		t.Fatalf("eip create succeeded although its probe target is unreachable:\n%s", out)
	}
	if !strings.Contains(string(out), "the change was rolled back") {
		t.Errorf("output does not say it rolled back:\n%s", out)
	}
	if !getPool(t, "unreachable").Spec.Disable {
		t.Error("the pool was not disabled")
	}
	if guardPresent(t) {
		t.Error("the guard was left behind after rolling back")
	}
}

func TestGuardRollsBackInClusterWhenThePluginDies(t *testing.T) {
	startSpeakers(t)
	deletePoolAfter(t, "orphan")
	// Killed as soon as the change is applied and it waits on its probe,
	// as if the operator's machine had been cut off.
	cmd, _, rest := startPlugin(t, "orphan", "eip", "create", "orphan", "--address", "198.18.0.164-198.18.0.165", "--protocol", "layer2",
		"--probe", blackhole, "--confirm-timeout", "10s")
	killed := time.Now()
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	<-rest
	_ = cmd.Wait()
	if !guardPresent(t) {
		t.Fatal("no guard armed when the plugin died")
	}
	if getPool(t, "orphan").Spec.Disable {
		t.Fatal("the pool was disabled at once, not after the confirm timeout")
	}
	poll(t, 25*time.Second, "the controller to disable the unconfirmed pool", func(context.Context) (bool, error) {
		return getPool(t, "orphan").Spec.Disable && !guardPresent(t), nil
	})
	took := time.Since(killed)
	t.Logf("plugin killed; the pool was disabled in the cluster %s later (confirm timeout 10s)", took.Round(100*time.Millisecond))
	if took < 7*time.Second {
		t.Errorf("rolled back %s after the plugin died, well before its 10s timeout", took.Round(100*time.Millisecond))
	}
}

func TestGuardRefusesATimeoutUnderItsMinimum(t *testing.T) {
	for _, timeout := range []string{"0", "-5s", "3s"} {
		out, err := env.Kubectl(context.Background(), "porter", "eip", "create", "too-quick", "--address", "198.18.0.166", "--protocol", "layer2",
			"--confirm-timeout", timeout).CombinedOutput()
		if err == nil {
			t.Errorf("--confirm-timeout %s was accepted:\n%s", timeout, out)
		}
		if !strings.Contains(string(out), "--confirm-timeout must be at least 10s") {
			t.Errorf("--confirm-timeout %s: the error does not say why:\n%s", timeout, out)
		}
	}
	if env.Cluster.Kubectl(context.Background(), "get", "eip", "too-quick").Run() == nil {
		t.Error("a refused command created its pool")
	}
	if plans := guardPlans(t); len(plans) > 0 {
		t.Errorf("a refused command armed a guard: %v", plans)
	}
}

// A plan's timeout is timed on the controller's clock alone. These plans
// carry a deadline, as plugins used to write from their own clock, a day
// behind and a day ahead: neither changes when the rollback comes.
func TestGuardTimesPlansOnTheControllersClock(t *testing.T) {
	startSpeakers(t)
	notDefault := func(e *v1alpha2.Eip) { e.Annotations = nil }
	createPool(t, "skew-behind", "198.18.0.167", notDefault)
	createPool(t, "skew-ahead", "198.18.0.168", notDefault)
	now := time.Now()
	for pool, deadline := range map[string]time.Time{"skew-behind": now.Add(-24 * time.Hour), "skew-ahead": now.Add(24 * time.Hour)} {
		plan := fmt.Sprintf(`{"timeout":"10s","change":"creating Eip %s","disableEips":[%q],"deadline":%q}`, pool, pool, deadline.UTC().Format(time.RFC3339))
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{GenerateName: guard.NamePrefix, Namespace: "porter-system", Labels: map[string]string{guard.Label: "plan"}},
			Data:       map[string]string{"plan.json": plan},
		}
		if _, err := env.Cluster.Client.CoreV1().ConfigMaps("porter-system").Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(7 * time.Second)
	for _, pool := range []string{"skew-behind", "skew-ahead"} {
		if getPool(t, pool).Spec.Disable {
			t.Errorf("%s was rolled back after 7s, before its 10s timeout", pool)
		}
	}
	poll(t, 20*time.Second, "both plans to be rolled back", func(context.Context) (bool, error) {
		return getPool(t, "skew-behind").Spec.Disable && getPool(t, "skew-ahead").Spec.Disable && !guardPresent(t), nil
	})
	t.Logf("both rolled back %s after they were written (timeout 10s)", time.Since(now).Round(100*time.Millisecond))
}

// Only cluster admins and the controller may write a plan: one who may
// write ConfigMaps in porter-system may not write or delete a plan there.
func TestGuardPlanFromANonAdminIsRefused(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		{"-n", "porter-system", "create", "role", "configmap-writer", "--verb=get,list,create,update,patch,delete", "--resource=configmaps"},
		{"-n", "porter-system", "create", "rolebinding", "configmap-writer", "--role=configmap-writer", "--user=tenant"},
	} {
		if out, err := env.Cluster.Kubectl(ctx, args...).CombinedOutput(); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() {
		_ = env.Cluster.Kubectl(ctx, "-n", "porter-system", "delete", "rolebinding,role", "configmap-writer", "--ignore-not-found").Run()
	})
	apply := func(user, yaml string) (string, error) {
		cmd := env.Cluster.Kubectl(ctx, "--as", user, "apply", "-f", "-")
		cmd.Stdin = strings.NewReader(yaml)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	forged := `apiVersion: v1
kind: ConfigMap
metadata:
  name: porter-guard-forged
  namespace: porter-system
  labels: {porter.kubesphere.io/lockout-guard: plan}
data:
  plan.json: '{"timeout":"10s","change":"forged","strictARP":false,"disableEips":["any"]}'
`
	out, err := apply("tenant", forged)
	if err == nil {
		t.Errorf("a tenant wrote a lockout guard plan:\n%s", out)
	} else if !strings.Contains(out, "only cluster admins") {
		t.Errorf("refused, but not by the guard's policy:\n%s", out)
	}
	// The same tenant may still write an ordinary ConfigMap there: the
	// policy is about plans only.
	if out, err := apply("tenant", strings.Replace(strings.Replace(forged, "porter-guard-forged", "tenant-notes", 1), "labels: {porter.kubesphere.io/lockout-guard: plan}", "labels: {}", 1)); err != nil {
		t.Errorf("an ordinary ConfigMap was refused:\n%s", out)
	}
	_ = env.Cluster.Kubectl(ctx, "-n", "porter-system", "delete", "configmap", "tenant-notes", "--ignore-not-found").Run()
	// Nor may the tenant cancel an admin's plan by deleting it.
	a, err := guard.Arm(ctx, env.Cluster.Client, guard.Plan{Timeout: metav1.Duration{Duration: time.Hour}, Change: "an admin's change"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Drop(ctx, env.Cluster.Client) })
	if out, err := env.Cluster.Kubectl(ctx, "--as", "tenant", "-n", "porter-system", "delete", "configmap", a.Name).CombinedOutput(); err == nil {
		t.Errorf("a tenant deleted an admin's plan:\n%s", out)
	}
	// Nor may a speaker, which runs on every node.
	if out, err := env.Cluster.Kubectl(ctx, "--as", "system:serviceaccount:porter-system:porter-speaker", "-n", "porter-system", "delete", "configmap", a.Name).CombinedOutput(); err == nil {
		t.Errorf("the speaker's account cleared a plan:\n%s", out)
	}
	// The controller's ServiceAccount, which rolls back, may.
	if out, err := env.Cluster.Kubectl(ctx, "--as", "system:serviceaccount:porter-system:porter-controller", "-n", "porter-system", "delete", "configmap", a.Name).CombinedOutput(); err != nil {
		t.Errorf("the controller's account may not clear a plan:\n%s", out)
	}
}

// Two guarded commands at once: each confirms or loses only its own
// change. The first dies while it waits on its probe; the second, run
// meanwhile, confirms its own; the first is still rolled back.
func TestConcurrentGuardedCommandsKeepTheirOwnPlans(t *testing.T) {
	startSpeakers(t)
	deletePoolAfter(t, "conc-a")
	deletePoolAfter(t, "conc-b")
	cmd, _, rest := startPlugin(t, "conc-a", "eip", "create", "conc-a", "--address", "198.18.0.169", "--protocol", "layer2",
		// Long enough that the first plan still waits while the second
		// command, on a loaded machine, runs to its confirmation.
		"--probe", blackhole, "--confirm-timeout", "30s")
	out, err := env.Kubectl(context.Background(), "porter", "eip", "create", "conc-b", "--address", "198.18.0.170", "--protocol", "layer2",
		"--probe", env.Net.Nodes[0].IP.String()+":8080").CombinedOutput()
	if err != nil {
		t.Fatalf("the second command failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "access confirmed") {
		t.Errorf("the second command did not confirm:\n%s", out)
	}
	if len(guardPlans(t)) != 1 {
		t.Errorf("plans after the second command confirmed: %v, want the first command's alone", guardPlans(t))
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	<-rest
	_ = cmd.Wait()
	poll(t, 45*time.Second, "the first command's pool to be rolled back", func(context.Context) (bool, error) {
		return getPool(t, "conc-a").Spec.Disable && !guardPresent(t), nil
	})
	if getPool(t, "conc-b").Spec.Disable {
		t.Error("the confirmed second pool was rolled back too")
	}
}

// A command held up past its timeout (here, stopped between applying its
// change and confirming it) finds its change rolled back when it goes on,
// says so and fails: it never reports access confirmed for a change undone.
func TestGuardedCommandRolledBackMeanwhileFails(t *testing.T) {
	startSpeakers(t)
	probe := env.Net.Nodes[0].IP.String() + ":8080"
	// The command is stopped as soon as it says it armed its guard. It
	// may have confirmed already by then, which this test cannot use:
	// then it is let go and tried again.
	for try := 1; ; try++ {
		pool := fmt.Sprintf("late-%d", try)
		deletePoolAfter(t, pool)
		cmd := env.Kubectl(context.Background(), "porter", "eip", "create", pool, "--address", fmt.Sprintf("198.18.0.%d", 171+try), "--protocol", "layer2",
			"--probe", probe, "--confirm-timeout", "10s")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(stderr)
		var out strings.Builder
		for !strings.Contains(out.String(), "lockout guard armed") {
			line, err := r.ReadString('\n')
			out.WriteString(line)
			if err != nil {
				t.Fatalf("the command ended before it armed its guard:\n%s", out.String())
			}
		}
		if err := syscall.Kill(cmd.Process.Pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		rest := make(chan struct{})
		go func() {
			defer close(rest)
			b, _ := io.ReadAll(r)
			out.Write(b)
		}()
		if !guardPresent(t) {
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
			<-rest
			_ = cmd.Wait()
			if try == 5 {
				t.Fatal("the command confirmed before it could be stopped, five times")
			}
			continue
		}
		poll(t, 25*time.Second, "the controller to roll the stopped command's change back", func(ctx context.Context) (bool, error) {
			// The pool may not have been created before the stop: then
			// only the plan goes.
			e, err := eips.New(dynamicClient(t)).Get(ctx, pool)
			return !guardPresent(t) && (err != nil || e.Spec.Disable), nil
		})
		if err := syscall.Kill(cmd.Process.Pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		<-rest
		err = cmd.Wait()
		t.Logf("try %d:\n%s", try, out.String())
		if err == nil {
			t.Fatal("the command succeeded although its change was rolled back")
		}
		if !strings.Contains(out.String(), "rolled back in the cluster") || strings.Contains(out.String(), "access confirmed, guard cleared") {
			t.Error("the command does not say its change was rolled back")
		}
		return
	}
}
