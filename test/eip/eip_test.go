// Package eip tests `kubectl porter eip` through the machine's real kubectl
// against a lab cluster with the Eip CRD installed.
package eip

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/test/lab"
)

var (
	env     *lab.Env
	cluster *lab.Cluster
	eipAPI  *eips.Client
)

func TestMain(m *testing.M) {
	os.Exit(lab.Main(m, lab.EnvOptions{Build: []string{"github.com/porterlb/porter/cmd/kubectl-porter"}}, setup))
}

// setup installs the CRD from manifests/ with the real kubectl, as a user
// would apply it.
func setup(e *lab.Env) {
	env, cluster = e, e.Cluster
	crd, _ := filepath.Abs("../../manifests/crd/network.kubesphere.io_eips.yaml")
	for _, args := range [][]string{
		{"apply", "-f", crd},
		{"wait", "--for", "condition=established", "--timeout=60s", "crd/eips.network.kubesphere.io"},
	} {
		if out, err := cluster.Kubectl(context.Background(), args...).CombinedOutput(); err != nil {
			panic(fmt.Sprintf("kubectl %v: %v\n%s", args, err, out))
		}
	}
	dc, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		panic(err)
	}
	eipAPI = eips.New(dc)
}

type result struct {
	stdout, stderr string
	err            error
}

// kubectl runs the real kubectl, with the built plugin on its PATH.
func kubectl(stdin string, args ...string) result {
	cmd := env.Kubectl(context.Background(), args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return result{out.String(), errOut.String(), err}
}

func mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	r := kubectl("", args...)
	if r.err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
	}
	return r.stdout
}

func deleteEip(t *testing.T, name string) {
	t.Helper()
	t.Cleanup(func() { _ = kubectl("", "delete", "eip", name, "--ignore-not-found") })
}

// snapshot is the state a refused command must leave as it was.
func snapshot(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	s := map[string]string{}
	list, err := eipAPI.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		s["eip/"+e.Name] = e.ResourceVersion
	}
	nodes, err := cluster.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Kubernetes' own controllers keep adjusting new nodes (taints, labels),
	// so only what Porter could write to a node is compared.
	for _, n := range nodes.Items {
		for k, v := range n.Annotations {
			if strings.Contains(k, "porter.kubesphere.io") || strings.Contains(k, "openelb.kubesphere.io") {
				s["node/"+n.Name+"/"+k] = v
			}
		}
	}
	return s
}

func TestCreateListGetDelete(t *testing.T) {
	deleteEip(t, "crud-pool")
	out := mustKubectl(t, "porter", "eip", "create", "crud-pool", "--address", "198.18.0.200-198.18.0.209", "--interface", "eth0", "--namespaces", "web,api", "--priority", "5")
	if strings.TrimSpace(out) != "eip.network.kubesphere.io/crud-pool created" {
		t.Fatalf("create printed %q", out)
	}

	list := mustKubectl(t, "porter", "eip", "list")
	if !strings.Contains(list, "NAME") || !regexpLine(list, "crud-pool", "198.18.0.200-198.18.0.209", "layer2", "eth0", "0/10", "false", "false") {
		t.Fatalf("list:\n%s", list)
	}

	var got v1alpha2.Eip
	if err := json.Unmarshal([]byte(mustKubectl(t, "porter", "eip", "get", "crud-pool", "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	want := v1alpha2.EipSpec{Address: "198.18.0.200-198.18.0.209", Protocol: "layer2", Interface: "eth0", Namespaces: []string{"web", "api"}, Priority: 5}
	if !reflect.DeepEqual(got.Spec, want) || got.Kind != "Eip" {
		t.Fatalf("get -o json: %+v, want spec %+v", got, want)
	}
	// kubectl itself sees the CRD's printer columns.
	cols := mustKubectl(t, "get", "eip", "crud-pool")
	for _, h := range []string{"ADDRESS", "PROTOCOL", "INTERFACE", "USAGE", "TOTAL", "READY", "DISABLED"} {
		if !strings.Contains(cols, h) {
			t.Errorf("kubectl get eip lacks column %s:\n%s", h, cols)
		}
	}

	var asList struct{ Items []v1alpha2.Eip }
	if err := json.Unmarshal([]byte(mustKubectl(t, "porter", "eip", "list", "-o", "json")), &asList); err != nil || len(asList.Items) == 0 {
		t.Fatalf("list -o json: %v", err)
	}

	if out := mustKubectl(t, "porter", "eip", "delete", "crud-pool"); strings.TrimSpace(out) != "eip.network.kubesphere.io/crud-pool deleted" {
		t.Fatalf("delete printed %q", out)
	}
	r := kubectl("", "porter", "eip", "get", "crud-pool")
	if r.err == nil || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("get after delete: %v %q", r.err, r.stderr)
	}
}

func regexpLine(table string, fields ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(fields) && reflect.DeepEqual(f[:len(fields)], fields) {
			return true
		}
	}
	return false
}

const guideYAML = `apiVersion: network.kubesphere.io/v1alpha2
kind: Eip
metadata:
  name: porter-layer2-eip
spec:
  address: 10.13.15.200-10.13.15.202
  interface: enp3s0f0
  protocol: layer2
`

func TestGuideYAMLApplies(t *testing.T) {
	deleteEip(t, "porter-layer2-eip")
	r := kubectl(guideYAML, "apply", "-f", "-")
	if r.err != nil {
		t.Fatalf("kubectl apply: %v\n%s", r.err, r.stderr)
	}
	e, err := eipAPI.Get(context.Background(), "porter-layer2-eip")
	if err != nil {
		t.Fatal(err)
	}
	if e.Spec.Address != "10.13.15.200-10.13.15.202" || e.Spec.Interface != "enp3s0f0" || e.Spec.Protocol != "layer2" {
		t.Fatalf("applied Eip: %+v", e.Spec)
	}
	if out := mustKubectl(t, "porter", "eip", "get", "porter-layer2-eip"); !regexpLine(out, "porter-layer2-eip", "10.13.15.200-10.13.15.202", "layer2", "enp3s0f0", "0/3") {
		t.Fatalf("eip get:\n%s", out)
	}
}

func TestGuideLockoutIsRefused(t *testing.T) {
	ctx := context.Background()
	if _, err := cluster.CreateNode(ctx, lab.Node{Name: "orion", InternalIP: netip.MustParseAddr("10.13.15.200")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.DeleteNode(context.Background(), "orion") })
	deleteEip(t, "porter-layer2-eip")

	before := snapshot(t)
	for _, extra := range [][]string{nil, {"--force"}} {
		args := append([]string{"porter", "eip", "create", "porter-layer2-eip", "--address", "10.13.15.200-10.13.15.202", "--interface", "enp3s0f0"}, extra...)
		r := kubectl("", args...)
		if r.err == nil {
			t.Fatalf("%v: the guide's lockout pool was created", extra)
		}
		if !strings.Contains(r.stderr, "10.13.15.200 is the InternalIP of node orion") || !strings.Contains(r.stderr, "nothing was changed") {
			t.Fatalf("%v: stderr does not name the node:\n%s", extra, r.stderr)
		}
	}
	if after := snapshot(t); !reflect.DeepEqual(before, after) {
		t.Fatalf("a refusal changed the cluster:\nbefore %v\nafter  %v", before, after)
	}
}

func TestRefusalsLeaveClusterUnchanged(t *testing.T) {
	ctx := context.Background()
	deleteEip(t, "blocker")
	mustKubectl(t, "porter", "eip", "create", "blocker", "--address", "198.18.0.100-198.18.0.109", "--default")
	if _, err := cluster.CreateNode(ctx, lab.Node{Name: "vega", InternalIP: netip.MustParseAddr("198.18.0.50"),
		ExternalIP: netip.MustParseAddr("203.0.113.50"), Annotations: map[string]string{v1alpha2.Layer2Annotation: "198.18.0.60"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.DeleteNode(context.Background(), "vega") })
	apiIP := apiServerIP(t)
	kubeSvc, err := cluster.Client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"node ExternalIP", []string{"--address", "203.0.113.48/29"}, "203.0.113.50 is the ExternalIP of node vega"},
		{"layer2 annotation", []string{"--address", "198.18.0.60"}, "198.18.0.60 is the layer2 NIC address of node vega"},
		{"API server", []string{"--address", apiIP.String()}, apiIP.String() + " is an address of the API server"},
		{"Service range", []string{"--address", kubeSvc.Spec.ClusterIP}, "overlaps the Service ClusterIP range"},
		{"other Eip", []string{"--address", "198.18.0.105-198.18.0.120"}, "198.18.0.105-198.18.0.109 overlaps Eip blocker"},
		{"second default", []string{"--address", "198.18.0.130", "--default"}, "Eip blocker is already the default pool"},
		{"reversed", []string{"--address", "198.18.0.20-198.18.0.10"}, "is reversed"},
		{"mixed", []string{"--address", "198.18.0.1-2001:db8::1"}, "mixes IPv4 and IPv6"},
		{"garbage", []string{"--address", "not-an-ip"}, `"not-an-ip"`},
		{"too large", []string{"--address", "198.18.0.0/15"}, "more than 65536"},
		{"bad name", []string{"--address", "198.18.0.140"}, "invalid Eip name"},
		{"bad protocol", []string{"--address", "198.18.0.140", "--protocol", "ospf"}, `invalid --protocol "ospf"`},
		{"bad can_reach", []string{"--address", "198.18.0.140", "--interface", "can_reach:gateway"}, "can_reach needs an IP"},
		{"bad dry-run", []string{"--address", "198.18.0.140", "--dry-run=maybe"}, `invalid --dry-run "maybe"`},
	}
	before := snapshot(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := "refused-pool"
			if c.name == "bad name" {
				name = "Bad_Name"
			}
			r := kubectl("", append([]string{"porter", "eip", "create", name, "--force"}, c.args...)...)
			if r.err == nil {
				t.Fatalf("created; want a refusal containing %q", c.want)
			}
			if !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "panic") {
				t.Fatalf("stderr lacks %q:\n%s", c.want, r.stderr)
			}
		})
	}
	if after := snapshot(t); !reflect.DeepEqual(before, after) {
		t.Fatalf("a refusal changed the cluster:\nbefore %v\nafter  %v", before, after)
	}
}

func apiServerIP(t *testing.T) netip.Addr {
	t.Helper()
	slices, err := cluster.Client.DiscoveryV1().EndpointSlices("default").List(context.Background(), metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kubernetes"})
	if err != nil || len(slices.Items) == 0 || len(slices.Items[0].Endpoints) == 0 {
		t.Fatalf("endpoints of default/kubernetes: %v", err)
	}
	return netip.MustParseAddr(slices.Items[0].Endpoints[0].Addresses[0])
}

func TestDryRunWritesNothing(t *testing.T) {
	deleteEip(t, "dry-pool")
	before := snapshot(t)
	out := mustKubectl(t, "porter", "eip", "create", "dry-pool", "--address", "198.18.0.240-198.18.0.241", "--dry-run=server")
	if strings.TrimSpace(out) != "eip.network.kubesphere.io/dry-pool created (server dry run)" {
		t.Fatalf("server dry run printed %q", out)
	}
	out = mustKubectl(t, "porter", "eip", "create", "dry-pool", "--address", "198.18.0.240-198.18.0.241", "--dry-run=client", "-o", "yaml")
	if !strings.Contains(out, "kind: Eip") || !strings.Contains(out, "address: 198.18.0.240-198.18.0.241") {
		t.Fatalf("client dry run -o yaml printed:\n%s", out)
	}
	if after := snapshot(t); !reflect.DeepEqual(before, after) {
		t.Fatalf("a dry run changed the cluster:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := eipAPI.Get(context.Background(), "dry-pool"); err == nil {
		t.Fatal("dry-pool exists after dry runs")
	}
}

func TestDeleteRefusesWhileServicesHoldAddresses(t *testing.T) {
	ctx := context.Background()
	deleteEip(t, "busy-pool")
	mustKubectl(t, "porter", "eip", "create", "busy-pool", "--address", "198.18.0.220-198.18.0.229")
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	created, err := cluster.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lab.Remove(t, "Service web", func(ctx context.Context) error {
		return cluster.Client.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{})
	})
	created.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.18.0.221"}}
	if _, err := cluster.Client.CoreV1().Services("default").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	before := snapshot(t)
	r := kubectl("", "porter", "eip", "delete", "busy-pool")
	if r.err == nil || !strings.Contains(r.stderr, "default/web (198.18.0.221)") {
		t.Fatalf("delete of a busy pool: %v\n%s", r.err, r.stderr)
	}
	if after := snapshot(t); !reflect.DeepEqual(before, after) {
		t.Fatal("a refused delete changed the cluster")
	}
	r = kubectl("", "porter", "eip", "delete", "busy-pool", "--dry-run=server", "--force")
	if r.err != nil || !strings.Contains(r.stdout, "(server dry run)") {
		t.Fatalf("forced server dry run: %v\n%s", r.err, r.stderr)
	}
	if _, err := eipAPI.Get(ctx, "busy-pool"); err != nil {
		t.Fatalf("server dry run deleted the pool: %v", err)
	}
	r = kubectl("", "porter", "eip", "delete", "busy-pool", "--force")
	if r.err != nil || !strings.Contains(r.stderr, "lose their addresses: default/web (198.18.0.221)") {
		t.Fatalf("forced delete: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := eipAPI.Get(ctx, "busy-pool"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("busy-pool still exists after a forced delete")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestListWatchPrintsChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	deleteEip(t, "watched-pool")
	cmd := env.Kubectl(ctx, "porter", "eip", "list", "--watch")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(pred func(string) bool, what string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("watch ended before %s", what)
				}
				if pred(l) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %s within a minute", what)
			}
		}
	}
	expect(func(l string) bool { return strings.HasPrefix(l, "NAME") }, "header")
	mustKubectl(t, "porter", "eip", "create", "watched-pool", "--address", "198.18.0.250")
	expect(func(l string) bool { return regexpLine(l, "watched-pool", "198.18.0.250") }, "row for the new pool")
	mustKubectl(t, "porter", "eip", "delete", "watched-pool")
	expect(func(l string) bool { return strings.Contains(l, "(deleted)") }, "deletion row")
}

// The CRD's own validation refuses bad pools for anyone who writes Eips,
// kubectl users included, before Porter ever sees them.
func TestAPIServerRefusesMalformedPools(t *testing.T) {
	manifest := func(name, address, protocol string) string {
		return fmt.Sprintf("apiVersion: network.kubesphere.io/v1alpha2\nkind: Eip\nmetadata:\n  name: %s\nspec:\n  address: %q\n  protocol: %s\n", name, address, protocol)
	}
	before := snapshot(t)
	for _, c := range []struct {
		name, address, protocol, want string
	}{
		{"garbage", "ten dot thirteen", "layer2", "must be one IP, a CIDR"},
		{"bad-octet", "198.18.0.300", "layer2", "must be one IP, a CIDR"},
		{"three-parts", "198.18.0.1-198.18.0.2-198.18.0.3", "layer2", "must be one IP, a CIDR"},
		{"mapped", "::ffff:198.18.0.0/120", "layer2", "IPv4-mapped IPv6 addresses"},
		{"reversed", "198.18.0.20-198.18.0.10", "layer2", "the range is reversed"},
		{"mixed", "198.18.0.20-2001:db8::1", "layer2", "must not mix IPv4 and IPv6"},
		{"huge-range", "198.18.0.0-198.19.0.0", "layer2", "at most 65536 addresses"},
		{"huge-cidr", "198.18.0.0/15", "layer2", "at most 65536 addresses"},
		{"huge-v6", "2001:db8::/64", "layer2", "at most 65536 addresses"},
		{"v6-wide", "2001:db8::1-2001:db8::1:1", "layer2", "within one /112"},
		{"v6-reversed", "2001:db8::ff-2001:db8::1", "layer2", "the range is reversed"},
		{"v6-reversed-hextet", "2001:db8::a0b0-2001:db8::a0af", "layer2", "the range is reversed"},
		{"v6-reversed-padded", "2001:db8:0:0::00ff-2001:db8::0:1", "layer2", "the range is reversed"},
		{"v6-reversed-upper", "2001:DB8::A0B0-2001:db8::a0af", "layer2", "the range is reversed"},
		{"v6-reversed-dotted", "2001:db8::198.18.0.9-2001:db8::198.18.0.1", "layer2", "the range is reversed"},
		{"v6-mixed-forms", "2001:db8::198.18.0.1-2001:db8::c612:9", "layer2", "write both ends of an IPv6 range alike"},
		{"host-bits", "198.18.0.1/28", "layer2", "host bits set"},
		{"protocol", "198.18.0.10", "ospf", `Unsupported value: "ospf"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := kubectl(manifest("bad-"+c.name, c.address, c.protocol), "apply", "-f", "-")
			if r.err == nil {
				deleteEip(t, "bad-"+c.name)
				t.Fatalf("kubectl apply of %q succeeded:\n%s", c.address, r.stdout)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Fatalf("kubectl apply of %q: %q, want a message with %q", c.address, r.stderr, c.want)
			}
		})
	}
	if after := snapshot(t); !reflect.DeepEqual(before, after) {
		t.Fatalf("a refused apply changed the Eips: %v -> %v", before, after)
	}
	// What Porter and OpenELB users write today still applies.
	for i, address := range []string{"198.18.3.10", "198.18.3.16/28", "198.18.3.40-198.18.3.50", "198.18.3.60 - 198.18.3.61", "198.18.0.0-198.18.255.255", "2001:db8::/112", "2001:db8:1::1-2001:db8:1::ff", "2001:db8:2::-2001:db8:2::10", "2001:db8:3::fff0-2001:db8:3::ffff", "2001:db8:4::9-2001:db8:4::a", "2001:DB8:5::0009-2001:db8:5:0:0:0:0:A0", "2001:db8:6::198.18.0.1-2001:db8:6::198.18.1.0"} {
		name := fmt.Sprintf("good-%d", i)
		mustKubectl(t, "create", "-f", writeManifest(t, manifest(name, address, "layer2")))
		deleteEip(t, name)
	}
}

func writeManifest(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "eip.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
