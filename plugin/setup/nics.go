package setup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/plugin/steps"
)

// AnnotatedByInitAnnotation marks a layer2 annotation that init wrote, so
// that uninstall removes only those and never an admin's own.
const AnnotatedByInitAnnotation = "porter.kubesphere.io/layer2-set-by-init"

// NICAnnotations picks the NIC each node announces on, from the inventory
// the speakers publish, and annotates nodes with more than one NIC up with
// that NIC's IP, as the guide's manual `kubectl annotate nodes` step does.
type NICAnnotations struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Interface, when set, is the NIC name to use on every node.
	Interface string
	// Wait bounds how long to wait for every node's inventory.
	Wait time.Duration
}

func (n *NICAnnotations) Name() string { return "NIC annotations" }

// errNoInventoryAPI means the speakers are not installed yet, as in a dry
// run of a first init.
var errNoInventoryAPI = errors.New("the NodeNICs API is not installed yet")

// nicAnnotation is the layer2 annotation a node should carry.
type nicAnnotation struct {
	node     string
	ip       string
	existing string
}

// decide computes, for every node, the layer2 annotation it needs.
func (n *NICAnnotations) decide(ctx context.Context) ([]nicAnnotation, error) {
	nodes, err := n.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	inv, err := n.inventories(ctx, nodes.Items)
	if err != nil {
		return nil, err
	}
	var out []nicAnnotation
	var problems []string
	for _, node := range nodes.Items {
		nics, ok := inv[node.Name]
		if !ok {
			problems = append(problems, fmt.Sprintf("node %s: no NIC inventory (is its speaker running?)", node.Name))
			continue
		}
		existing := addrpolicy.Layer2Value(node.Annotations)
		rep := addrpolicy.ReportFromNodeNICs(nics)
		up := 0
		for _, c := range rep.NICs {
			if c.Up && len(c.Prefixes) > 0 {
				up++
			}
		}
		chosen, err := n.choose(rep, addrpolicy.NodeFromObject(&node).InternalIP)
		if err != nil {
			problems = append(problems, fmt.Sprintf("node %s: %v", node.Name, err))
			continue
		}
		ip := ""
		for _, p := range chosen.Prefixes {
			if p.Addr().Is4() {
				ip = p.Addr().String()
				break
			}
		}
		if ip == "" {
			problems = append(problems, fmt.Sprintf("node %s: NIC %s has no IPv4 address", node.Name, chosen.Name))
			continue
		}
		if up <= 1 && existing == "" {
			continue // one NIC: the speaker needs no hint
		}
		out = append(out, nicAnnotation{node: node.Name, ip: ip, existing: existing})
	}
	if len(problems) > 0 {
		return nil, &steps.Hinted{
			Err:  fmt.Errorf("cannot decide the NIC of %d node(s); nothing was changed:\n  - %s", len(problems), strings.Join(problems, "\n  - ")),
			Hint: "name the NIC with --interface, or annotate those nodes yourself: kubectl annotate node NODE " + v1alpha2.Layer2Annotation + "=IP",
		}
	}
	return out, nil
}

// choose is the NIC a node announces on: the one named by --interface, or
// the one holding its InternalIP, as the speaker itself reads its report.
func (n *NICAnnotations) choose(rep addrpolicy.Report, internal netip.Addr) (addrpolicy.NIC, error) {
	if nic, ok := rep.NICFor(n.Interface, internal); ok {
		return nic, nil
	}
	var candidates []string
	for _, c := range rep.NICs {
		addrs := make([]string, 0, len(c.Prefixes))
		for _, p := range c.Prefixes {
			addrs = append(addrs, p.String())
		}
		candidates = append(candidates, fmt.Sprintf("%s (%s)", c.Name, strings.Join(addrs, ", ")))
	}
	sort.Strings(candidates)
	if n.Interface != "" {
		return addrpolicy.NIC{}, fmt.Errorf("has no NIC %s; candidates: %s", n.Interface, strings.Join(candidates, "; "))
	}
	return addrpolicy.NIC{}, fmt.Errorf("no NIC holds its InternalIP; candidates: %s", strings.Join(candidates, "; "))
}

// inventories waits, up to n.Wait, until every node has published one.
func (n *NICAnnotations) inventories(ctx context.Context, nodes []corev1.Node) (map[string]*v1alpha1.NodeNICs, error) {
	deadline := time.Now().Add(n.Wait)
	for {
		u, err := n.Dynamic.Resource(v1alpha1.NodeNICsResource).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			return nil, errNoInventoryAPI
		}
		if err != nil {
			return nil, fmt.Errorf("list NIC inventories: %w", err)
		}
		got := map[string]*v1alpha1.NodeNICs{}
		if err == nil {
			var list v1alpha1.NodeNICsList
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), &list); err != nil {
				return nil, fmt.Errorf("decode NIC inventories: %w", err)
			}
			for i := range list.Items {
				got[list.Items[i].Name] = &list.Items[i]
			}
		}
		complete := true
		for _, node := range nodes {
			// A speaker creates its inventory, then writes its status: an
			// object without status is not a report yet.
			if inv, ok := got[node.Name]; !ok || inv.Status.UpdatedAt.IsZero() {
				complete = false
			}
		}
		if complete || time.Now().After(deadline) {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for NIC inventories: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (n *NICAnnotations) Check(ctx context.Context) (steps.State, error) {
	wants, err := n.decide(ctx)
	if errors.Is(err, errNoInventoryAPI) {
		return steps.State{Summary: "waits for the speakers to report each node's NICs"}, nil
	}
	if err != nil {
		return steps.State{}, err
	}
	var todo []string
	for _, w := range wants {
		if w.existing != w.ip {
			todo = append(todo, w.node)
		}
	}
	if len(todo) > 0 {
		return steps.State{Summary: fmt.Sprintf("%d node(s) to annotate", len(todo))}, nil
	}
	return steps.State{Done: true, Summary: fmt.Sprintf("%d multi-NIC node(s) annotated; the rest have one NIC", len(wants))}, nil
}

func (n *NICAnnotations) Plan(ctx context.Context) (steps.Plan, error) {
	wants, err := n.decide(ctx)
	if errors.Is(err, errNoInventoryAPI) {
		return steps.Plan{Summary: "pick each node's NIC once the speakers report them, and annotate multi-NIC nodes"}, nil
	}
	if err != nil {
		return steps.Plan{}, err
	}
	var parts []string
	for _, w := range wants {
		if w.existing == w.ip {
			continue
		}
		if w.existing != "" {
			parts = append(parts, fmt.Sprintf("%s: %s → %s", w.node, w.existing, w.ip))
		} else {
			parts = append(parts, fmt.Sprintf("%s=%s", w.node, w.ip))
		}
	}
	return steps.Plan{Summary: "annotate " + v1alpha2.Layer2Annotation + " on " + strings.Join(parts, ", ")}, nil
}

func (n *NICAnnotations) Apply(ctx context.Context, dry steps.DryRun) error {
	wants, err := n.decide(ctx)
	if errors.Is(err, errNoInventoryAPI) && dry != steps.Write {
		// A server dry run of a first init: the speakers that would
		// report the NICs were not really deployed.
		return nil
	}
	if err != nil {
		return err
	}
	for _, w := range wants {
		if w.existing == w.ip {
			continue
		}
		ann := map[string]any{v1alpha2.Layer2Annotation: w.ip}
		if w.existing == "" {
			ann[AnnotatedByInitAnnotation] = "true"
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
		if _, err := n.Client.CoreV1().Nodes().Patch(ctx, w.node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager, DryRun: dryRunOpts(dry)}); err != nil {
			return fmt.Errorf("annotate node %s: %w", w.node, err)
		}
	}
	return nil
}

func (n *NICAnnotations) Verify(ctx context.Context) error {
	st, err := n.Check(ctx)
	if err != nil {
		return err
	}
	if !st.Done {
		return fmt.Errorf("node annotations did not take: %s", st.Summary)
	}
	return nil
}

// Undo removes the annotations init wrote, and only those.
func (n *NICAnnotations) Undo(ctx context.Context, dry steps.DryRun) error {
	nodes, err := n.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	for _, node := range nodes.Items {
		if node.Annotations[AnnotatedByInitAnnotation] != "true" {
			continue
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{
			v1alpha2.Layer2Annotation: nil, AnnotatedByInitAnnotation: nil,
		}}})
		if _, err := n.Client.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager, DryRun: dryRunOpts(dry)}); err != nil {
			return fmt.Errorf("remove annotation from node %s: %w", node.Name, err)
		}
	}
	return nil
}

// UndoPlan names the nodes whose annotation init made.
func (n *NICAnnotations) UndoPlan(ctx context.Context) (string, error) {
	nodes, err := n.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("list nodes: %w", err)
	}
	var names []string
	for _, node := range nodes.Items {
		if node.Annotations[AnnotatedByInitAnnotation] == "true" {
			names = append(names, node.Name)
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	return "remove the layer2 annotation init set on " + strings.Join(names, ", "), nil
}

func (n *NICAnnotations) Permissions() []Permission {
	return []Permission{
		{Verb: "list", Resource: "nodes"},
		{Verb: "patch", Resource: "nodes"},
		{Verb: "list", Group: "porter.kubesphere.io", Resource: "nodenics"},
	}
}
