package dataplane

import (
	"bufio"
	"context"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// blackhole is a LAN address nobody holds: a TCP probe to it gets no answer.
const blackhole = "198.18.0.250:22"

func guardPresent(t *testing.T) bool {
	t.Helper()
	_, err := env.Cluster.Client.CoreV1().ConfigMaps("porter-system").Get(context.Background(), "porter-guard", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
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
	cmd := env.Kubectl(context.Background(), "porter", "eip", "create", "orphan", "--address", "198.18.0.164-198.18.0.165", "--protocol", "layer2",
		"--probe", blackhole, "--confirm-timeout", "3s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill the plugin as soon as the change is applied and it is waiting
	// on its probe, as if the operator's machine had been cut off.
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		if strings.Contains(lines.Text(), "lockout guard armed") {
			break
		}
	}
	poll(t, 10*time.Second, "the pool to exist", func(ctx context.Context) (bool, error) {
		return env.Cluster.Kubectl(ctx, "get", "eip", "orphan").Run() == nil, nil
	})
	killed := time.Now()
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	_ = cmd.Wait()
	if !guardPresent(t) {
		t.Fatal("no guard armed when the plugin died")
	}
	poll(t, 15*time.Second, "the speakers to disable the unconfirmed pool", func(context.Context) (bool, error) {
		return getPool(t, "orphan").Spec.Disable && !guardPresent(t), nil
	})
	t.Logf("plugin killed; the pool was disabled in the cluster %s later (confirm timeout 3s)", time.Since(killed).Round(100*time.Millisecond))
}
