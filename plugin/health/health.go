// Package health reads the state of a Porter installation in a handful of
// API calls, whatever the cluster's size, and judges it check by check.
// Its Report is the `kubectl porter status -o json` document.
package health

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/porterlb/porter/manifests"
	"github.com/porterlb/porter/pkg/addrpolicy"
	"github.com/porterlb/porter/pkg/apis/network/v1alpha2"
	"github.com/porterlb/porter/pkg/apis/porter/v1alpha1"
	"github.com/porterlb/porter/pkg/clusterfacts"
	"github.com/porterlb/porter/pkg/eips"
	"github.com/porterlb/porter/pkg/guard"
	"github.com/porterlb/porter/pkg/kubeproxy"
	"github.com/porterlb/porter/pkg/lbservice"
	"github.com/porterlb/porter/pkg/memberkey"
	"github.com/porterlb/porter/pkg/membership"
	"github.com/porterlb/porter/pkg/reports"
	"github.com/porterlb/porter/plugin/rbacdrift"
	"github.com/porterlb/porter/plugin/setup"
)

// State is a check's verdict.
type State string

const (
	OK      State = "ok"
	Warning State = "warning"
	Failed  State = "failed"
)

// Check is one judged fact.
type Check struct {
	Name   string `json:"name"`
	State  State  `json:"state"`
	Detail string `json:"detail"`
	// Hint says what to run when the check is not ok.
	Hint string `json:"hint,omitempty"`
}

// Category groups checks.
type Category struct {
	Name   string  `json:"name"`
	Checks []Check `json:"checks"`
}

// Node is one node as Porter sees it.
type Node struct {
	Name         string   `json:"name"`
	InternalIP   string   `json:"internalIP,omitempty"`
	NIC          string   `json:"nic,omitempty"`
	Layer2       string   `json:"layer2,omitempty"`
	SpeakerReady bool     `json:"speakerReady"`
	Members      []string `json:"members,omitempty"`
	Announcing   int      `json:"announcing"`
}

// Pool is one Eip.
type Pool struct {
	Name      string                 `json:"name"`
	Address   string                 `json:"address"`
	Protocol  string                 `json:"protocol"`
	Usage     int                    `json:"usage"`
	Size      int                    `json:"size"`
	Disabled  bool                   `json:"disabled,omitempty"`
	Default   bool                   `json:"default,omitempty"`
	Conflicts []v1alpha2.EipConflict `json:"conflicts,omitempty"`
	// Nodes are the nodes with a ready speaker that may answer for the
	// pool: all of them, or those its nodeSelector picks.
	Nodes []string `json:"nodes,omitempty"`
}

// Service is one Porter LoadBalancer Service.
type Service struct {
	Name      string `json:"name"` // namespace/name
	IP        string `json:"ip,omitempty"`
	Node      string `json:"node,omitempty"`
	Interface string `json:"interface,omitempty"`
	Pending   bool   `json:"pending,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// Controller is porter-controller's Deployment and its leader.
type Controller struct {
	Replicas int32 `json:"replicas"`
	Ready    int32 `json:"ready"`
	// Leader is the replica holding the Lease; empty when none does.
	Leader string `json:"leader,omitempty"`
}

// Report is the whole picture.
type Report struct {
	Healthy    bool       `json:"healthy"`
	Categories []Category `json:"categories"`
	Controller Controller `json:"controller"`
	Nodes      []Node     `json:"nodes"`
	Pools      []Pool     `json:"pools"`
	Services   []Service  `json:"services"`
	// Unserved are the LoadBalancer Services nothing gave an address and
	// Porter does not serve, each with why and the fix.
	Unserved []Unserved `json:"unserved,omitempty"`
}

// Worst is the worst state among the report's checks.
func (r *Report) Worst() State {
	worst := OK
	for _, c := range r.Categories {
		for _, ch := range c.Checks {
			if ch.State == Failed {
				return Failed
			}
			if ch.State == Warning {
				worst = Warning
			}
		}
	}
	return worst
}

const speakerNamespace = manifests.Namespace

// Gather reads the cluster and judges it. Errors are returned only when
// the API cannot be read at all; anything missing is a failed check.
func Gather(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface) (*Report, error) {
	r := &Report{Nodes: []Node{}, Pools: []Pool{}, Services: []Service{}}
	// Status makes some 33 requests. One after another they took longer
	// than the node list itself on 1,000 nodes, so every read that needs
	// no other's answer starts at once, and the checks are judged when
	// the reads are in.
	var (
		wg                           sync.WaitGroup
		proxyCat, guardCat, otherCat Category
		ctrlCat                      Category
		ctrl                         Controller
		speakerRights, ctrlRights    Check
		inv                          map[string]*v1alpha1.NodeNICs
		eipList                      *v1alpha2.EipList
		eipErr                       error
		sp                           speakerReads
		sv                           serviceReads
		key                          keyRead
		plans                        clusterfacts.Plans
		plansErr                     error
	)
	wg.Go(func() { proxyCat = kubeProxy(ctx, cs) })
	wg.Go(func() { guardCat = lockoutGuard(ctx, cs) })
	wg.Go(func() { otherCat = others(ctx, cs, dyn) })
	wg.Go(func() { ctrlCat, ctrl = controllers(ctx, cs, time.Now()) })
	wg.Go(func() {
		// Both accounts' rights are judged from one read of the bindings.
		b, err := rbacdrift.ReadBindings(ctx, cs)
		var inner sync.WaitGroup
		inner.Go(func() {
			speakerRights = rights(ctx, cs, b, err, rbacdrift.ServiceAccount{Namespace: speakerNamespace, Name: "porter-speaker"},
				"a speaker runs on every node, so these are rights of every node: remove the bindings or rules named")
		})
		ctrlRights = rights(ctx, cs, b, err, rbacdrift.ServiceAccount{Namespace: speakerNamespace, Name: "porter-controller"},
			"remove the bindings or rules named: the controller needs no more than the manifests grant")
		inner.Wait()
	})
	wg.Go(func() { inv = inventories(ctx, dyn) })
	wg.Go(func() { eipList, eipErr = eips.New(dyn).List(ctx) })
	wg.Go(func() { sp = readSpeakers(ctx, cs) })
	wg.Go(func() { sv = readServices(ctx, cs) })
	wg.Go(func() { key = readMemberKey(ctx, cs) })
	wg.Go(func() { plans, plansErr = clusterfacts.ReadPlans(ctx, cs) })
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	if sv.err != nil {
		return nil, sv.err
	}

	r.Categories = append(r.Categories, proxyCat, guardCat)
	speakerCat, ready := speakers(sp, nodes.Items)
	speakerCat.Checks = append(speakerCat.Checks, speakerRights)
	r.Categories = append(r.Categories, speakerCat)
	ctrlCat.Checks = append(ctrlCat.Checks, ctrlRights)
	r.Categories = append(r.Categories, ctrlCat)
	r.Controller = ctrl
	mc := members(nodes.Items, inv, ready)
	mc.Checks = append(mc.Checks, memberKey(key, inv, ready))
	if c, ok := unknownMembers(inv); ok {
		mc.Checks = append(mc.Checks, c)
	}
	r.Categories = append(r.Categories, mc)
	nodeCat, list := nodeNICs(nodes.Items, inv, ready)
	r.Nodes = list
	r.Categories = append(r.Categories, nodeCat)
	poolCat, pools := pools(eipList, eipErr, nodes.Items, ready)
	r.Pools = pools
	r.Categories = append(r.Categories, poolCat)
	// The same address policy the speakers enforce says which Service
	// addresses no node may answer for.
	var policy *addrpolicy.Policy
	if eipErr == nil {
		if plansErr != nil {
			return nil, plansErr
		}
		reports := make([]v1alpha1.NodeNICs, 0, len(inv))
		for _, n := range inv {
			reports = append(reports, *n)
		}
		policy = addrpolicy.New(plans.Complete(nodes.Items, eipList.Items, reports).Snapshot)
	}
	svcCat, svcs, unserved := services(sv, policy, nodes.Items, inv, ready)
	r.Services, r.Unserved = svcs, unserved
	r.Categories = append(r.Categories, svcCat)
	r.Categories = append(r.Categories, otherCat)
	r.Healthy = r.Worst() != Failed
	return r, nil
}

func kubeProxy(ctx context.Context, cs kubernetes.Interface) Category {
	cat := Category{Name: "kube-proxy"}
	cm, err := cs.CoreV1().ConfigMaps(kubeproxy.Namespace).Get(ctx, kubeproxy.ConfigMap, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cat.Checks = append(cat.Checks, Check{Name: "mode", State: OK, Detail: "no kube-proxy ConfigMap: strictARP does not apply"})
		return cat
	case err != nil:
		cat.Checks = append(cat.Checks, Check{Name: "mode", State: Failed, Detail: "read the kube-proxy ConfigMap: " + err.Error()})
		return cat
	}
	cfg, err := kubeproxy.Parse(cm.Data[kubeproxy.ConfigKey])
	if err != nil {
		cat.Checks = append(cat.Checks, Check{Name: "mode", State: Failed, Detail: err.Error(), Hint: "fix the kube-proxy ConfigMap by hand; Porter edits only what it can read"})
		return cat
	}
	mode := cfg.EffectiveMode()
	switch {
	case mode != kubeproxy.ModeIPVS:
		cat.Checks = append(cat.Checks, Check{Name: "strictARP", State: OK, Detail: "mode " + mode + ": strictARP is not needed"})
	case cfg.StrictARP:
		cat.Checks = append(cat.Checks, Check{Name: "strictARP", State: OK, Detail: "mode ipvs, strictARP true"})
	default:
		cat.Checks = append(cat.Checks, Check{Name: "strictARP", State: Failed, Detail: "mode ipvs, strictARP false: every node answers ARP for every Service address",
			Hint: "kubectl porter init"})
	}
	ds, err := cs.AppsV1().DaemonSets(kubeproxy.Namespace).Get(ctx, kubeproxy.DaemonSet, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		cat.Checks = append(cat.Checks, Check{Name: "rollout", State: Warning, Detail: "read the kube-proxy DaemonSet: " + err.Error()})
	default:
		cat.Checks = append(cat.Checks, rollout("rollout", ds, "kubectl -n kube-system rollout status daemonset/kube-proxy"))
	}
	return cat
}

func rollout(name string, ds *appsv1.DaemonSet, hint string) Check {
	st := ds.Status
	detail := fmt.Sprintf("%d desired, %d ready, %d updated", st.DesiredNumberScheduled, st.NumberReady, st.UpdatedNumberScheduled)
	if ds.Generation > st.ObservedGeneration || st.UpdatedNumberScheduled < st.DesiredNumberScheduled || st.NumberReady < st.DesiredNumberScheduled {
		return Check{Name: name, State: Warning, Detail: detail + " (rolling out)", Hint: hint}
	}
	return Check{Name: name, State: OK, Detail: detail}
}

// speakerReads are the speaker DaemonSet and its pods.
type speakerReads struct {
	ds      *appsv1.DaemonSet
	dsErr   error
	pods    *corev1.PodList
	podsErr error
}

func readSpeakers(ctx context.Context, cs kubernetes.Interface) speakerReads {
	var r speakerReads
	var wg sync.WaitGroup
	wg.Go(func() {
		r.ds, r.dsErr = cs.AppsV1().DaemonSets(speakerNamespace).Get(ctx, setup.SpeakerDaemonSet, metav1.GetOptions{})
	})
	r.pods, r.podsErr = cs.CoreV1().Pods(speakerNamespace).List(ctx, metav1.ListOptions{LabelSelector: membership.SpeakerPodSelector})
	wg.Wait()
	return r
}

// speakers judges the DaemonSet and returns which nodes run a ready
// speaker pod.
func speakers(rd speakerReads, nodes []corev1.Node) (Category, map[string]bool) {
	cat := Category{Name: "speaker"}
	ready := map[string]bool{}
	if rd.dsErr != nil {
		cat.Checks = append(cat.Checks, Check{Name: "daemonset", State: Failed, Detail: "porter-system/porter-speaker: " + errText(rd.dsErr), Hint: "kubectl porter init"})
		return cat, ready
	}
	cat.Checks = append(cat.Checks, rollout("daemonset", rd.ds, "kubectl -n porter-system rollout status daemonset/porter-speaker"))
	if rd.podsErr != nil {
		cat.Checks = append(cat.Checks, Check{Name: "pods", State: Failed, Detail: "list speaker pods: " + rd.podsErr.Error()})
		return cat, ready
	}
	ready = membership.ReadyNodesOf(rd.pods)
	var missing []string
	for _, n := range nodes {
		if !ready[n.Name] && schedulable(&n) {
			missing = append(missing, n.Name)
		}
	}
	if len(missing) > 0 {
		cat.Checks = append(cat.Checks, Check{Name: "nodes", State: Failed,
			Detail: fmt.Sprintf("%d node(s) lack a ready speaker: %s", len(missing), first(missing, 10)),
			Hint:   "kubectl -n porter-system get pods -o wide -l app.kubernetes.io/name=porter-speaker"})
	} else {
		cat.Checks = append(cat.Checks, Check{Name: "nodes", State: OK, Detail: fmt.Sprintf("a ready speaker on each of %d node(s)", len(ready))})
	}
	return cat, ready
}

func schedulable(n *corev1.Node) bool { return !n.Spec.Unschedulable }

func inventories(ctx context.Context, dyn dynamic.Interface) map[string]*v1alpha1.NodeNICs {
	out := map[string]*v1alpha1.NodeNICs{}
	list, err := dyn.Resource(v1alpha1.NodeNICsResource).List(ctx, metav1.ListOptions{})
	if err != nil {
		return out
	}
	for _, u := range list.Items {
		var n v1alpha1.NodeNICs
		if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &n) == nil {
			out[n.Name] = &n
		}
	}
	return out
}

// members compares what each speaker sees alive with the speakers that
// run: a speaker that misses some peers is cut off from them, and one that
// no peer sees is down or cut off from all, whatever its own (possibly
// stale) report says.
// viewsOf lists the ready speakers that report a view, and how many of
// them see each node besides itself.
func viewsOf(nodes []corev1.Node, inv map[string]*v1alpha1.NodeNICs, ready map[string]bool) (views []string, seenBy map[string]int) {
	byNode := make(map[string]*v1alpha1.NodeNICs, len(nodes))
	for _, n := range nodes {
		byNode[n.Name] = inv[n.Name]
	}
	l := reports.Live(byNode, func(node string) bool { return ready[node] })
	return l.Views, l.SeenBy
}

func members(nodes []corev1.Node, inv map[string]*v1alpha1.NodeNICs, ready map[string]bool) Category {
	cat := Category{Name: "members"}
	var partial, unseen []string
	views, seenBy := viewsOf(nodes, inv, ready)
	for _, n := range nodes {
		if !ready[n.Name] {
			continue
		}
		i := inv[n.Name]
		if i == nil || i.Status.Speaker == nil {
			partial = append(partial, n.Name+" (reports nothing)")
			continue
		}
		if len(views) > 1 && seenBy[n.Name] == 0 {
			unseen = append(unseen, n.Name)
			continue
		}
		if len(i.Status.Speaker.Members) < len(ready) {
			partial = append(partial, fmt.Sprintf("%s (sees %d of %d)", n.Name, len(i.Status.Speaker.Members), len(ready)))
		}
	}
	switch {
	case len(ready) == 0:
		cat.Checks = append(cat.Checks, Check{Name: "members", State: Failed, Detail: "no speaker runs", Hint: "kubectl porter init"})
	case len(unseen) > 0:
		cat.Checks = append(cat.Checks, Check{Name: "members", State: Warning,
			Detail: fmt.Sprintf("no other speaker sees %s: down, or cut off from gossip; a dead node's addresses move, a cut-off one keeps what it answers for and takes on nothing", first(unseen, 10)),
			Hint:   "kubectl -n porter-system get pods -o wide --field-selector spec.nodeName=" + unseen[0] + ", then read that pod's logs; check UDP and TCP port 7947"})
	case len(partial) > 0:
		cat.Checks = append(cat.Checks, Check{Name: "members", State: Warning,
			Detail: fmt.Sprintf("%d speaker(s) do not see every other: %s", len(partial), first(partial, 10)),
			Hint:   "check that UDP and TCP port 7947 are open between nodes"})
	default:
		cat.Checks = append(cat.Checks, Check{Name: "members", State: OK, Detail: fmt.Sprintf("all %d speakers see each other", len(views))})
	}
	return cat
}

// keyRead is the gossip key Secret.
type keyRead struct {
	secret *corev1.Secret
	err    error
}

func readMemberKey(ctx context.Context, cs kubernetes.Interface) keyRead {
	sec, err := cs.CoreV1().Secrets(speakerNamespace).Get(ctx, memberkey.SecretName, metav1.GetOptions{})
	return keyRead{sec, err}
}

// memberKey checks the gossip key: the Secret holds a usable one, and every
// ready speaker gossips under exactly its keys.
func memberKey(rd keyRead, inv map[string]*v1alpha1.NodeNICs, ready map[string]bool) Check {
	c := Check{Name: "key"}
	sec, err := rd.secret, rd.err
	if err != nil {
		c.State, c.Detail = Failed, "gossip key Secret "+speakerNamespace+"/"+memberkey.SecretName+": "+errText(err)+"; speakers without it do not join"
		c.Hint = "kubectl porter init"
		return c
	}
	keys, err := memberkey.Parse(sec.Data[memberkey.DataKey])
	if err != nil {
		c.State, c.Detail = Failed, "gossip key Secret "+speakerNamespace+"/"+memberkey.SecretName+" is unusable: "+err.Error()
		c.Hint = "restore it from a backup; speakers keep the keys they have until then"
		return c
	}
	want := memberkey.Fingerprints(keys)
	var open, other []string
	names := make([]string, 0, len(inv))
	for n := range inv {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sp := inv[n].Status.Speaker
		if !ready[n] || sp == nil {
			continue
		}
		switch {
		case len(sp.MemberKeys) == 0:
			open = append(open, n)
		case !slices.Equal(sp.MemberKeys, want):
			other = append(other, n+" ("+strings.Join(sp.MemberKeys, ",")+")")
		}
	}
	switch {
	case len(open) > 0:
		c.State, c.Detail = Failed, fmt.Sprintf("%d speaker(s) gossip without a key (--insecure-member): %s", len(open), first(open, 10))
		c.Hint = "remove --insecure-member and restart them: kubectl -n porter-system rollout restart daemonset/porter-speaker"
	case len(other) > 0:
		c.State, c.Detail = Warning, fmt.Sprintf("key %s; %d speaker(s) still use other keys: %s", strings.Join(want, ","), len(other), first(other, 10))
		c.Hint = "a rotation in progress settles by itself; kubectl porter rotate-key resumes one that was interrupted"
	case len(want) > 1:
		c.State, c.Detail = Warning, fmt.Sprintf("rotation in progress: keys %s", strings.Join(want, ","))
		c.Hint = "kubectl porter rotate-key finishes it"
	default:
		c.State, c.Detail = OK, "gossip authenticated with key "+want[0]
	}
	return c
}

// unknownMembers names the gossip members speakers ignore; ok is false
// when there are none.
func unknownMembers(inv map[string]*v1alpha1.NodeNICs) (Check, bool) {
	by := map[string][]string{}
	for n, i := range inv {
		if i.Status.Speaker == nil {
			continue
		}
		for _, u := range i.Status.Speaker.UnknownMembers {
			by[u] = append(by[u], n)
		}
	}
	if len(by) == 0 {
		return Check{}, false
	}
	list := make([]string, 0, len(by))
	for u, ns := range by {
		sort.Strings(ns)
		list = append(list, u+" (ignored by "+strings.Join(ns, ", ")+")")
	}
	sort.Strings(list)
	return Check{Name: "unknown", State: Warning,
		Detail: fmt.Sprintf("%d gossip member(s) ignored, as the cluster does not vouch for them: %s", len(list), first(list, 5)),
		Hint:   "a host outside the cluster holds the gossip key, or a speaker runs outside the DaemonSet; rotate the key (kubectl porter rotate-key) if it leaked"}, true
}

func nodeNICs(nodes []corev1.Node, inv map[string]*v1alpha1.NodeNICs, ready map[string]bool) (Category, []Node) {
	cat := Category{Name: "nodes"}
	var out []Node
	var noInv []string
	annotated := 0
	for _, n := range nodes {
		nd := Node{Name: n.Name, SpeakerReady: ready[n.Name]}
		an := addrpolicy.NodeFromObject(&n)
		if an.InternalIP.IsValid() {
			nd.InternalIP = an.InternalIP.String()
		}
		nd.Layer2 = addrpolicy.Layer2Value(n.Annotations)
		if nd.Layer2 != "" {
			annotated++
		}
		if i := inv[n.Name]; i != nil {
			nd.NIC = i.Status.Primary
			rep := addrpolicy.ReportFromNodeNICs(i)
			if nic, ok := rep.NICFor("", an.Primaries()...); ok {
				nd.NIC = nic.Name
			}
			if i.Status.Speaker != nil {
				nd.Members = i.Status.Speaker.Members
				nd.Announcing = i.Status.Speaker.Announcing
			}
		} else if ready[n.Name] {
			noInv = append(noInv, n.Name)
		}
		out = append(out, nd)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(noInv) > 0 {
		cat.Checks = append(cat.Checks, Check{Name: "nics", State: Warning,
			Detail: fmt.Sprintf("%d node(s) with a speaker have published no NIC inventory: %s", len(noInv), first(noInv, 10)),
			Hint:   "kubectl -n porter-system logs -l app.kubernetes.io/name=porter-speaker"})
	} else {
		cat.Checks = append(cat.Checks, Check{Name: "nics", State: OK, Detail: fmt.Sprintf("%d node(s), %d with a layer2 annotation", len(out), annotated)})
	}
	return cat, out
}

func pools(list *v1alpha2.EipList, err error, nodes []corev1.Node, ready map[string]bool) (Category, []Pool) {
	cat := Category{Name: "pools"}
	out := []Pool{}
	if err != nil {
		cat.Checks = append(cat.Checks, Check{Name: "eips", State: Failed, Detail: err.Error(), Hint: "kubectl porter init"})
		return cat, out
	}
	if len(list.Items) == 0 {
		cat.Checks = append(cat.Checks, Check{Name: "eips", State: Warning, Detail: "no Eip: Services cannot get addresses",
			Hint: "kubectl porter eip create NAME --address RANGE"})
		return cat, out
	}
	picked := PoolNodes(list.Items, nodes)
	for _, e := range list.Items {
		p := Pool{Name: e.Name, Address: e.Spec.Address, Protocol: e.Spec.Protocol, Usage: e.Status.Usage, Size: e.Status.PoolSize,
			Disabled: e.Spec.Disable, Default: e.IsDefault(), Conflicts: e.Status.Conflicts}
		for _, n := range picked[e.Name] {
			if ready[n] {
				p.Nodes = append(p.Nodes, n)
			}
		}
		out = append(out, p)
		ch := Check{Name: e.Name, State: OK, Detail: fmt.Sprintf("%s, %d of %d in use", e.Spec.Address, p.Usage, p.Size)}
		if e.Spec.NodeSelector != nil && e.Spec.Protocol == v1alpha2.ProtocolLayer2 {
			if len(p.Nodes) == 0 {
				ch.State, ch.Detail = Failed, ch.Detail+"; its nodeSelector picks no node with a ready speaker: no node answers for its addresses"
				ch.Hint = "kubectl get nodes --show-labels; kubectl edit eip " + e.Name
				cat.Checks = append(cat.Checks, ch)
				continue
			}
			ch.Detail += "; answered from " + strings.Join(p.Nodes, ", ") + " (nodeSelector)"
		}
		var wire []string
		for _, c := range e.Status.Conflicts {
			if c.MAC != "" {
				wire = append(wire, c.Address+" answered by "+c.MAC)
			}
		}
		switch {
		case e.Spec.Protocol != v1alpha2.ProtocolLayer2:
			ch.Detail = fmt.Sprintf("%s, protocol %s: not announced by Porter", e.Spec.Address, e.Spec.Protocol)
		case len(wire) > 0:
			ch.State, ch.Detail = Warning, ch.Detail+"; in use on the wire: "+first(wire, 5)
			ch.Hint = "find the host with that MAC, or remove the address from the pool"
		case e.Spec.Disable:
			ch.State, ch.Detail = Warning, ch.Detail+"; disabled: not announced"
			ch.Hint = "kubectl patch eip " + e.Name + ` --type merge -p '{"spec":{"disable":false}}'`
		case e.Status.Occupied:
			ch.State, ch.Detail = Warning, ch.Detail+"; full"
			ch.Hint = "grow the pool or add another"
		case len(e.Status.Conflicts) > 0:
			ch.Detail += fmt.Sprintf("; %d refused (node or other pool addresses)", len(e.Status.Conflicts))
		}
		cat.Checks = append(cat.Checks, ch)
	}
	return cat, out
}

// announcer is a node that reports answering for an address.
type announcer struct{ node, iface string }

// serviceReads are every Service, and the warnings about them, which say
// why one waits. err is set when the Services cannot be listed; events
// is nil when the warnings cannot, which only leaves out the reasons.
type serviceReads struct {
	list   *corev1.ServiceList
	err    error
	events *corev1.EventList
}

func readServices(ctx context.Context, cs kubernetes.Interface) serviceReads {
	var r serviceReads
	var wg sync.WaitGroup
	wg.Go(func() {
		if evs, err := cs.CoreV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Service,type=Warning"}); err == nil {
			r.events = evs
		}
	})
	r.list, r.err = cs.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if r.err != nil {
		r.err = fmt.Errorf("list Services: %w", r.err)
	}
	wg.Wait()
	return r
}

func services(rd serviceReads, policy *addrpolicy.Policy, nodes []corev1.Node, inv map[string]*v1alpha1.NodeNICs, ready map[string]bool) (Category, []Service, []Unserved) {
	cat := Category{Name: "services"}
	out := []Service{}
	list := rd.list
	reasons := map[string]string{}
	if evs := rd.events; evs != nil {
		sort.Slice(evs.Items, func(i, j int) bool { return evTime(&evs.Items[i]).Before(evTime(&evs.Items[j])) })
		for _, e := range evs.Items {
			reasons[e.InvolvedObject.Namespace+"/"+e.InvolvedObject.Name] = e.Reason + ": " + e.Message
		}
	}
	// Conflicts come from the speakers' own reports, which only Porter
	// writes.
	// Who answers for an address, and which addresses another host
	// answers for, come from the speakers' own reports, which only Porter
	// writes. A report is stale when its speaker is not ready, or when no
	// other speaker sees it (dead while its pod still looks ready).
	views, seenBy := viewsOf(nodes, inv, ready)
	wire := map[netip.Addr]string{}
	announcers := map[netip.Addr][]announcer{}
	for _, n := range inv {
		r := addrpolicy.ReportFromNodeNICs(n)
		for _, c := range r.Conflicts {
			wire[c.IP] = c.MAC
		}
		if !ready[r.Node] || len(views) > 1 && seenBy[r.Node] == 0 {
			continue
		}
		for ip, iface := range r.Announced {
			announcers[ip] = append(announcers[ip], announcer{node: r.Node, iface: iface})
		}
	}
	serves := lbservice.IsPorter
	unclassed := false
	if policy != nil {
		serves, unclassed = policy.Serves, policy.ServesUnclassed()
	}
	var pending, silent, refused, doubled []string
	var unserved []Unserved
	for i := range list.Items {
		s := &list.Items[i]
		if !serves(s) {
			if u, ok := UnservedBecause(s, unclassed); ok {
				unserved = append(unserved, u)
			}
			continue
		}
		name := lbservice.Key(s)
		ips := lbservice.IngressIPs(s)
		if len(ips) == 0 {
			pending = append(pending, name)
			out = append(out, Service{Name: name, Pending: true, Reason: reasons[name]})
			continue
		}
		// One row an address: a dual-stack Service has two, each with
		// its own owner.
		for _, ip := range ips {
			sv := Service{Name: name, IP: ip.String()}
			if policy != nil {
				if v := policy.Check(ip, lbservice.Pool(s)); v.Refused {
					sv.Reason = ip.String() + " " + v.Reason.Text + "; no node answers for it"
					refused = append(refused, sv.Name+" ("+ip.String()+")")
					out = append(out, sv)
					continue
				}
			}
			switch an := announcers[ip]; len(an) {
			case 0:
				silent = append(silent, sv.Name)
				if mac, ok := wire[ip]; ok {
					sv.Reason = "address answered on the wire by " + mac
				}
			case 1:
				sv.Node, sv.Interface = an[0].node, an[0].iface
			default:
				sort.Slice(an, func(i, j int) bool { return an[i].node < an[j].node })
				names := make([]string, len(an))
				for i, a := range an {
					names[i] = a.node
				}
				sv.Node, sv.Interface = strings.Join(names, ","), an[0].iface
				sv.Reason = fmt.Sprintf("answered by %d nodes", len(an))
				doubled = append(doubled, sv.Name+" ("+sv.Node+")")
			}
			out = append(out, sv)
		}
	}
	if len(doubled) > 0 {
		cat.Checks = append(cat.Checks, Check{Name: "doubled", State: Failed,
			Detail: fmt.Sprintf("%d Service address(es) answered by more than one node: %s", len(doubled), first(doubled, 10)),
			Hint:   "the speakers disagree on who owns them; kubectl porter status -o json names the nodes, and their speakers' logs say why"})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(pending) > 0 {
		cat.Checks = append(cat.Checks, Check{Name: "pending", State: Failed,
			Detail: fmt.Sprintf("%d Service(s) wait for an address: %s", len(pending), first(pending, 10)),
			Hint:   "kubectl describe service NAME shows why"})
	}
	if len(refused) > 0 {
		cat.Checks = append(cat.Checks, Check{Name: "refused", State: Failed,
			Detail: fmt.Sprintf("%d Service(s) hold an address Porter never announces (a node's, a gateway's, the API server's or another pool's): %s", len(refused), first(refused, 10)),
			Hint:   "kubectl porter status -o json shows each reason; give the Service another address, and take the address out of the pool"})
	}
	if len(silent) > 0 {
		cat.Checks = append(cat.Checks, Check{Name: "announced", State: Warning,
			Detail: fmt.Sprintf("%d Service(s) have an address no node announces yet: %s", len(silent), first(silent, 10)),
			Hint:   "kubectl describe service NAME; kubectl porter status again in a few seconds"})
	}
	if len(pending) == 0 && len(silent) == 0 && len(refused) == 0 {
		cat.Checks = append(cat.Checks, Check{Name: "announced", State: OK, Detail: fmt.Sprintf("%d Service(s), each announced by one node", len(out))})
	}
	if len(unserved) > 0 {
		sort.Slice(unserved, func(i, j int) bool { return unserved[i].Name < unserved[j].Name })
		names := make([]string, len(unserved))
		for i, u := range unserved {
			names[i] = u.Name
		}
		c := Check{Name: "unserved", State: Failed,
			Detail: fmt.Sprintf("%d LoadBalancer Service(s) that nothing gave an address: %s; %s", len(unserved), first(names, 10), unserved[0].Reason),
			Hint:   unserved[0].Fix}
		if len(unserved) > 1 {
			c.Hint += " (kubectl porter status -o json gives each Service's reason and fix)"
		}
		cat.Checks = append(cat.Checks, c)
	}
	return cat, out, unserved
}

// Unserved is a LoadBalancer Service that no load balancer has given an
// address, and that Porter does not serve.
type Unserved struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
	// Fix is the command that has Porter serve it.
	Fix string `json:"fix"`
}

// UnservedBecause says why Porter leaves svc, a LoadBalancer Service
// without an address, alone, and what makes Porter serve it; ok is false
// for any other Service. unclassed is whether Porter serves Services that
// name no class.
func UnservedBecause(svc *corev1.Service, unclassed bool) (Unserved, bool) {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Status.LoadBalancer.Ingress) > 0 || lbservice.IsPorter(svc) {
		return Unserved{}, false
	}
	u := Unserved{Name: lbservice.Key(svc)}
	annotate := fmt.Sprintf("kubectl -n %s annotate service %s %s=porter", svc.Namespace, svc.Name, lbservice.LBAnnotation)
	switch {
	case svc.Spec.LoadBalancerClass != nil:
		u.Reason = fmt.Sprintf("its loadBalancerClass is %s, which Porter does not serve (Porter's is %s)", *svc.Spec.LoadBalancerClass, lbservice.Class)
		u.Fix = fmt.Sprintf("recreate it with spec.loadBalancerClass: %s (the class cannot be changed in place)", lbservice.Class)
	case strings.TrimSpace(svc.Annotations[lbservice.LBAnnotation]) != "":
		u.Reason = fmt.Sprintf("its annotation %s is %q, which names another load balancer", lbservice.LBAnnotation, svc.Annotations[lbservice.LBAnnotation])
		u.Fix = annotate + " --overwrite"
	case unclassed:
		return Unserved{}, false // Porter serves it; it is pending, not unserved
	default:
		u.Reason = "it names no load balancer, and Porter serves such Services only when its default pool says so"
		u.Fix = fmt.Sprintf("%s, or have Porter serve every such Service: kubectl annotate eip POOL %s=true %s=true --overwrite",
			annotate, v1alpha2.DefaultEipAnnotation, v1alpha2.ServeUnclassedAnnotation)
	}
	return u, true
}

func evTime(e *corev1.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp.Time
	}
	return e.EventTime.Time
}

func others(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface) Category {
	cat := Category{Name: "other load balancers"}
	found, err := setup.OtherLoadBalancers(ctx, cs, dyn)
	switch {
	case err != nil:
		cat.Checks = append(cat.Checks, Check{Name: "others", State: Warning, Detail: "could not look: " + err.Error()})
	case len(found) > 0:
		cat.Checks = append(cat.Checks, Check{Name: "others", State: Warning, Detail: strings.Join(found, "; "),
			Hint: "make sure no other load balancer answers ARP for Porter's pools"})
	default:
		cat.Checks = append(cat.Checks, Check{Name: "others", State: OK, Detail: "none found"})
	}
	return cat
}

// rights flags a ServiceAccount of Porter's that holds more than the
// manifests grant it: someone bound it more, or widened its roles.
func rights(ctx context.Context, cs kubernetes.Interface, b *rbacdrift.Bindings, bindingsErr error, sa rbacdrift.ServiceAccount, hint string) Check {
	c := Check{Name: "rights"}
	docs, err := manifests.Documents("rbac.yaml")
	if err != nil {
		c.State, c.Detail = Warning, err.Error()
		return c
	}
	granted, err := rbacdrift.FromManifests(docs, sa)
	if err != nil {
		c.State, c.Detail = Warning, err.Error()
		return c
	}
	if bindingsErr != nil {
		c.State, c.Detail = Warning, "could not look: "+bindingsErr.Error()
		return c
	}
	live, err := b.Live(ctx, cs, sa)
	if err != nil {
		c.State, c.Detail = Warning, "could not look: "+err.Error()
		return c
	}
	if extra := rbacdrift.Extra(granted, live); len(extra) > 0 {
		c.State = Warning
		c.Detail = fmt.Sprintf("%s holds %d right(s) the manifests do not grant: %s", sa, len(extra), first(extra, 4))
		c.Hint = hint
		return c
	}
	c.State, c.Detail = OK, fmt.Sprintf("%s holds what the manifests grant, no more", sa)
	return c
}

// controllers judges the controller's Deployment and its leader. A leader
// whose Lease lapsed is reported by how long ago, on this machine's
// clock: only a display, never a decision.
func controllers(ctx context.Context, cs kubernetes.Interface, now time.Time) (Category, Controller) {
	cat := Category{Name: "controller"}
	var out Controller
	dep, err := cs.AppsV1().Deployments(speakerNamespace).Get(ctx, setup.ControllerDeployment, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cat.Checks = append(cat.Checks, Check{Name: "deployment", State: Failed, Detail: "no Deployment " + speakerNamespace + "/" + setup.ControllerDeployment + ": no Service gets an address",
			Hint: "kubectl porter init"})
	case err != nil:
		cat.Checks = append(cat.Checks, Check{Name: "deployment", State: Failed, Detail: "read the controller Deployment: " + err.Error()})
	default:
		out.Replicas, out.Ready = 1, dep.Status.ReadyReplicas
		if dep.Spec.Replicas != nil {
			out.Replicas = *dep.Spec.Replicas
		}
		c := Check{Name: "deployment", Detail: fmt.Sprintf("%d/%d replicas ready", out.Ready, out.Replicas)}
		switch {
		case out.Ready >= out.Replicas && out.Replicas > 1:
			c.State = OK
		case out.Ready >= 1:
			c.State, c.Detail = Warning, c.Detail+": no standby to take over at once if the leader fails"
			c.Hint = "kubectl -n " + speakerNamespace + " describe deployment " + setup.ControllerDeployment
		default:
			c.State, c.Detail = Failed, c.Detail+": no Service gets an address and no lockout guard is enforced"
			c.Hint = "kubectl -n " + speakerNamespace + " describe deployment " + setup.ControllerDeployment
		}
		cat.Checks = append(cat.Checks, c)
	}
	lease, err := cs.CoordinationV1().Leases(speakerNamespace).Get(ctx, manifests.ControllerLease, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cat.Checks = append(cat.Checks, Check{Name: "leader", State: Failed, Detail: "no replica has ever led (no Lease " + manifests.ControllerLease + ")",
			Hint: "kubectl -n " + speakerNamespace + " logs deployment/" + setup.ControllerDeployment})
		return cat, out
	case err != nil:
		cat.Checks = append(cat.Checks, Check{Name: "leader", State: Failed, Detail: "read the Lease " + manifests.ControllerLease + ": " + err.Error()})
		return cat, out
	}
	holder := ""
	if lease.Spec.HolderIdentity != nil {
		holder = *lease.Spec.HolderIdentity
	}
	c := Check{Name: "leader"}
	var renewed time.Time
	if lease.Spec.RenewTime != nil {
		renewed = lease.Spec.RenewTime.Time
	}
	dur := 15 * time.Second
	if lease.Spec.LeaseDurationSeconds != nil {
		dur = time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
	}
	ago := now.Sub(renewed).Round(time.Second)
	switch {
	case holder == "":
		c.State, c.Detail = Failed, "no replica leads: the last leader stepped down and none took over"
		c.Hint = "kubectl -n " + speakerNamespace + " logs deployment/" + setup.ControllerDeployment
	case renewed.IsZero() || ago > dur:
		c.State, c.Detail = Failed, fmt.Sprintf("%s led until %s ago and no replica has taken over", holder, ago)
		c.Hint = "kubectl -n " + speakerNamespace + " logs deployment/" + setup.ControllerDeployment
	case !strings.HasPrefix(holder, setup.ControllerDeployment+"-"):
		out.Leader = holder
		c.State, c.Detail = Warning, holder+" holds the Lease, and is not a porter-controller pod: a speaker of an older version still allocating"
		c.Hint = "kubectl porter init, which updates the speakers too"
	default:
		out.Leader = holder
		c.State, c.Detail = OK, fmt.Sprintf("%s, renewed %s ago", holder, max(ago, 0))
	}
	cat.Checks = append(cat.Checks, c)
	return cat, out
}

// lockoutGuard names the guarded changes still awaiting confirmation:
// each is rolled back in the cluster unless its command confirms it.
func lockoutGuard(ctx context.Context, cs kubernetes.Interface) Category {
	cat := Category{Name: "lockout guard"}
	plans, bad, err := guard.List(ctx, cs)
	if err != nil {
		cat.Checks = append(cat.Checks, Check{Name: "plans", State: Warning, Detail: "could not look: " + err.Error()})
		return cat
	}
	if len(plans) == 0 && len(bad) == 0 {
		cat.Checks = append(cat.Checks, Check{Name: "plans", State: OK, Detail: "no change awaiting confirmation"})
		return cat
	}
	var pending []string
	for _, a := range plans {
		what := fmt.Sprintf("%s (%s, timeout %s)", a.Plan.Change, a.Name, a.Plan.TimeoutOrDefault())
		if a.Plan.RollingBack {
			what += " being rolled back"
		}
		pending = append(pending, what)
	}
	for _, err := range bad {
		pending = append(pending, "unreadable: "+err.Error())
	}
	cat.Checks = append(cat.Checks, Check{Name: "plans", State: Warning,
		Detail: fmt.Sprintf("%d change(s) awaiting confirmation: %s", len(pending), first(pending, 3)),
		Hint:   "each is rolled back in the cluster unless the command that made it confirms it; docs/guard.md"})
	return cat
}

func errText(err error) string {
	if apierrors.IsNotFound(err) {
		return "not found"
	}
	return err.Error()
}

func first(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(" and %d more", len(items)-n)
}
