package agent_test

import (
	"context"
	"flag"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/agent"
	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/netdev/netdevtest"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/test/controlplane"
)

func TestConfigScopeFlags(t *testing.T) {
	for _, tc := range []struct {
		name         string
		env          string
		args         []string
		wantNS       string
		wantExcluded []string
	}{
		{"defaults", "", nil, "strictgate", nil},
		{"namespace from the downward API", "sg-system", nil, "sg-system", nil},
		{"flags as the chart passes them", "sg-system", []string{"--namespace=sg", "--exclude-namespace=monitoring", "--exclude-namespace=ingress"}, "sg", []string{"monitoring", "ingress"}},
		{"comma list", "", []string{"--exclude-namespace", "a, b,,c"}, "strictgate", []string{"a", "b", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", tc.env)
			c := agent.DefaultConfig()
			fs := flag.NewFlagSet("agent", flag.ContinueOnError)
			c.RegisterFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			want := contract.Scope{OwnNamespace: tc.wantNS, Excluded: tc.wantExcluded}
			if got := c.Scope(); got.OwnNamespace != want.OwnNamespace || !slices.Equal(got.Excluded, want.Excluded) {
				t.Fatalf("Scope() = %+v, want %+v", got, want)
			}
		})
	}
	c := agent.DefaultConfig()
	c.NodeName, c.Namespace = "n", ""
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--namespace must not be empty") {
		t.Fatalf("Validate() with no namespace = %v", err)
	}
	c = agent.DefaultConfig()
	if !c.DefaultDeny || c.NamespaceSelector != nil {
		t.Fatalf("defaults: DefaultDeny %v, NamespaceSelector %v; want true and none", c.DefaultDeny, c.NamespaceSelector)
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--default-deny=false", `--namespace-selector={"matchLabels":{"team":"a"}}`}); err != nil {
		t.Fatal(err)
	}
	if c.DefaultDeny || c.Scope().Enforced(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"team": "b"}}}) ||
		!c.Scope().Enforced(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"team": "a"}}}) {
		t.Fatalf("flags not applied: DefaultDeny %v, selector %v", c.DefaultDeny, c.NamespaceSelector)
	}
	fs = flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{`--namespace-selector={"matchLabel":{}}`}); err == nil || !strings.Contains(err.Error(), "matchLabel") {
		t.Fatalf("misspelt selector: %v", err)
	}
	// --condition-types: the chart's list, parsed as the webhook parses it; a bad list
	// fails parsing and leaves the types as they were.
	fs = flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--condition-types=" + contract.ConditionType + ",x.io/net-ready"}); err != nil || !slices.Equal(c.ConditionTypes, []string{contract.ConditionType, "x.io/net-ready"}) {
		t.Fatalf("--condition-types: %v, %q", err, c.ConditionTypes)
	}
	fs = flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--condition-types=x.io/a,x.io/a"}); err == nil || !strings.Contains(err.Error(), "listed twice") || len(c.ConditionTypes) != 2 {
		t.Fatalf("duplicate --condition-types: %v, %q", err, c.ConditionTypes)
	}
}

// conditionLog records every condition the agent asks for, per pod: a False that the
// final True hides (gate patches only on change) still shows here.
type conditionLog struct {
	agent.Gate
	mu   sync.Mutex
	sets map[string][]string // ns/name -> reasons in order
}

func (l *conditionLog) Set(ctx context.Context, pod *corev1.Pod, want gate.Condition) (bool, error) {
	l.mu.Lock()
	k := pod.Namespace + "/" + pod.Name
	l.sets[k] = append(l.sets[k], want.Reason)
	l.mu.Unlock()
	return l.Gate.Set(ctx, pod, want)
}

func (l *conditionLog) reasons(ns, name string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sets[ns+"/"+name])
}

// defaultDenyPolicy is strictgate-default-deny as the webhook's controller generates it.
func defaultDenyPolicy(ns string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: contract.DefaultDenyPolicy, Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	}
}

func createNamespace(t *testing.T, cs kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	must(cs.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}))
}

func isWaiting(c corev1.PodCondition, found bool) bool {
	return found && c.Status == corev1.ConditionFalse && c.Reason == contract.ReasonWaitingForDefaultDeny
}

// TestAgentWaitsForDefaultDeny: a pod of an enforced namespace is not programmed before
// the namespace's strictgate-default-deny reaches the agent (the compiler would rightly
// call it unrestricted, and programming it so would open it); excluded and opted-out
// namespaces are programmed at once.
func TestAgentWaitsForDefaultDeny(t *testing.T) {
	cfg := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	createNode(t, cs)

	dp := newFakeDatapath()
	ifs := &fakeInterfaces{}
	for ip, ifindex := range map[string]int{"10.202.0.2": 22, "10.202.0.3": 23, "10.202.0.4": 24, "10.202.0.5": 25, "10.202.0.6": 26, "10.202.0.7": 27} {
		ifs.set(ip, ifindex)
	}
	conds := &conditionLog{Gate: gate.New(cs.CoreV1()), sets: map[string][]string{}}
	acfg := testConfig()
	acfg.Namespace = "sg-own"
	acfg.ExcludedNamespaces = []string{"monitoring"}
	stop := runAgentDeps(t, acfg, agent.Deps{Client: cs, Datapath: dp, Interfaces: ifs, Gate: conds})
	parent := t

	// Namespace and pod within milliseconds, the policy not yet: the bug's order.
	createNamespace(t, cs, "team-a", nil)
	startPod(t, cs, "team-a", "web", nodeName, "10.202.0.2", map[string]string{"app": "web"})

	t.Run("enforced namespace without the policy: not programmed, condition WaitingForDefaultDeny", func(t *testing.T) {
		c := waitCondition(t, cs, "team-a", "web", func(c corev1.PodCondition, found bool) bool { return found })
		if !isWaiting(c, true) || !strings.Contains(c.Message, "team-a/"+contract.DefaultDenyPolicy) || !strings.Contains(c.Message, "deny-all") {
			t.Fatalf("condition = %+v, want False/%s naming team-a/%s", c, contract.ReasonWaitingForDefaultDeny, contract.DefaultDenyPolicy)
		}
		time.Sleep(200 * time.Millisecond) // a wrong program would land by now
		if e, ok := dp.entry(22); ok {
			t.Fatalf("waiting pod has a datapath entry %+v; ops %v", e, dp.opsCopy())
		}
		if got := conds.reasons("team-a", "web"); slices.Contains(got, contract.ReasonProgrammed) {
			t.Fatalf("conditions asked for %v", got)
		}
	})

	t.Run("the policy appears: programmed with it and True", func(t *testing.T) {
		must(cs.NetworkingV1().NetworkPolicies("team-a").Create(ctx, defaultDenyPolicy("team-a"), metav1.CreateOptions{}))
		c := waitCondition(t, cs, "team-a", "web", isTrue)
		if c.Reason != contract.ReasonProgrammed || !strings.Contains(c.Message, "team-a/"+contract.DefaultDenyPolicy+" (generation 1)") {
			t.Fatalf("condition = %+v", c)
		}
		e, _ := dp.entry(22)
		if e.rules == nil || e.rules.Ingress.State != rules.StateIsolated || e.rules.Egress.State != rules.StateIsolated || !e.hooked {
			t.Fatalf("entry = %+v, want both directions isolated by the default-deny, attached", e)
		}
		if v, _ := e.rules.Ingress.Lookup(mustAddr("10.202.0.3"), rules.ProtocolTCP, 8080); v != rules.Deny {
			t.Fatalf("default-deny not in the programmed rules: %+v", e.rules.Ingress)
		}
		if got := conds.reasons("team-a", "web"); !slices.Equal(got[len(got)-1:], []string{contract.ReasonProgrammed}) || got[0] != contract.ReasonWaitingForDefaultDeny {
			t.Fatalf("conditions asked for %v, want waiting first and programmed last", got)
		}
	})

	t.Run("excluded, own and opted-out namespaces are programmed without waiting", func(t *testing.T) {
		for i, ns := range []struct {
			name   string
			labels map[string]string
			ip     string
		}{
			{"monitoring", nil, "10.202.0.3"},
			{"sg-own", nil, "10.202.0.4"},
			{"opted-out", map[string]string{contract.EnforceLabel: contract.EnforceDisabled}, "10.202.0.5"},
		} {
			createNamespace(t, cs, ns.name, ns.labels)
			startPod(t, cs, ns.name, "p", nodeName, ns.ip, map[string]string{"app": "p"})
			c := waitCondition(t, cs, ns.name, "p", isTrue)
			if !strings.Contains(c.Message, "ingress: unrestricted") {
				t.Errorf("%s: condition %+v", ns.name, c)
			}
			if got := conds.reasons(ns.name, "p"); slices.Contains(got, contract.ReasonWaitingForDefaultDeny) {
				t.Errorf("%s: pod waited (%v) in a namespace strictgate does not enforce", ns.name, got)
			}
			if e, ok := dp.entry(23 + i); !ok || e.rules == nil {
				t.Errorf("%s: not programmed: %+v", ns.name, e)
			}
		}
	})

	t.Run("namespace opting out releases its waiting pod", func(t *testing.T) {
		createNamespace(t, cs, "team-b", nil)
		startPod(t, cs, "team-b", "web", nodeName, "10.202.0.6", map[string]string{"app": "web"})
		waitCondition(t, cs, "team-b", "web", isWaiting)
		ns := must(cs.CoreV1().Namespaces().Get(ctx, "team-b", metav1.GetOptions{}))
		ns.Labels = map[string]string{contract.EnforceLabel: contract.EnforceDisabled}
		must(cs.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}))
		c := waitCondition(t, cs, "team-b", "web", isTrue)
		if !strings.Contains(c.Message, "ingress: unrestricted") {
			t.Fatalf("condition = %+v", c)
		}
	})

	t.Run("restart flaps nothing", func(t *testing.T) {
		createNamespace(t, cs, "team-c", nil)
		startPod(t, cs, "team-c", "web", nodeName, "10.202.0.7", map[string]string{"app": "web"})
		waitCondition(t, cs, "team-c", "web", isWaiting)
		stop()
		before := len(dp.opsCopy())
		rv := map[string]string{}
		for _, k := range []string{"team-a/web", "team-b/web", "team-c/web", "sg-own/p"} {
			ns, name, _ := strings.Cut(k, "/")
			rv[k] = must(cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})).ResourceVersion
		}
		stop = runAgentDeps(parent, acfg, agent.Deps{Client: cs, Datapath: dp, Interfaces: ifs, Gate: gate.New(cs.CoreV1())})
		time.Sleep(300 * time.Millisecond) // let any stray patch land before looking
		for k, want := range rv {
			ns, name, _ := strings.Cut(k, "/")
			if p := must(cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})); p.ResourceVersion != want {
				t.Errorf("pod %s was rewritten by the restarted agent: %+v", k, p.Status.Conditions)
			}
		}
		if ops := dp.opsCopy()[before:]; len(ops) != 0 {
			t.Errorf("restarted agent touched the datapath: %v", ops)
		}
		// The waiting pod still waits, and is released by its policy.
		must(cs.NetworkingV1().NetworkPolicies("team-c").Create(ctx, defaultDenyPolicy("team-c"), metav1.CreateOptions{}))
		waitCondition(t, cs, "team-c", "web", isTrue)
	})

	t.Run("a programmed pod is not pulled back when the policy goes", func(t *testing.T) {
		// The wait guards the first programming only; afterwards the policy's deletion
		// (which the webhook refuses) is an ordinary policy change.
		if err := cs.NetworkingV1().NetworkPolicies("team-a").Delete(ctx, contract.DefaultDenyPolicy, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		c := waitCondition(t, cs, "team-a", "web", func(c corev1.PodCondition, found bool) bool {
			return isTrue(c, found) && strings.Contains(c.Message, "ingress: unrestricted")
		})
		if c.Reason != contract.ReasonProgrammed {
			t.Fatalf("condition = %+v", c)
		}
	})
}

// TestAgentScopeSwitches: the chart's enforcement.defaultDeny=false and
// enforcement.namespaceSelector as the agent sees them. Without default-deny nothing is
// generated, so nothing is waited for; with a selector only matching namespaces wait.
func TestAgentScopeSwitches(t *testing.T) {
	cfg := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(cfg)
	createNode(t, cs)
	dp := newFakeDatapath()
	ifs := &fakeInterfaces{}
	ifs.set("10.202.2.2", 42)
	ifs.set("10.202.2.3", 43)
	ifs.set("10.202.2.4", 44)

	t.Run("defaultDeny false: programmed at once, policies still enforced", func(t *testing.T) {
		acfg := testConfig()
		acfg.DefaultDeny = false
		stop := runAgent(t, cs, acfg, dp, ifs)
		defer stop()
		createNamespace(t, cs, "plain", nil)
		startPod(t, cs, "plain", "web", nodeName, "10.202.2.2", map[string]string{"app": "web"})
		c := waitCondition(t, cs, "plain", "web", func(c corev1.PodCondition, found bool) bool { return found })
		if !isTrue(c, true) || !strings.Contains(c.Message, "ingress: unrestricted") {
			t.Fatalf("condition = %+v, want True and unrestricted (no default-deny is generated)", c)
		}
		// A policy the user writes is enforced as ever.
		must(cs.NetworkingV1().NetworkPolicies("plain").Create(context.Background(), defaultDenyPolicy("plain"), metav1.CreateOptions{}))
		waitCondition(t, cs, "plain", "web", func(c corev1.PodCondition, found bool) bool {
			return isTrue(c, found) && strings.Contains(c.Message, "plain/"+contract.DefaultDenyPolicy)
		})
		if e, _ := dp.entry(42); e.rules == nil || e.rules.Ingress.State != rules.StateIsolated {
			t.Fatalf("entry = %+v, want isolated by the user's policy", e)
		}
	})

	t.Run("namespaceSelector: only matching namespaces wait", func(t *testing.T) {
		acfg := testConfig()
		sel, err := contract.ParseNamespaceSelector("strictgate.dev/tier=enforced")
		if err != nil {
			t.Fatal(err)
		}
		acfg.NamespaceSelector = sel
		stop := runAgent(t, cs, acfg, dp, ifs)
		defer stop()
		createNamespace(t, cs, "selected", map[string]string{"strictgate.dev/tier": "enforced"})
		createNamespace(t, cs, "unselected", map[string]string{"strictgate.dev/tier": "other"})
		startPod(t, cs, "selected", "web", nodeName, "10.202.2.3", map[string]string{"app": "web"})
		startPod(t, cs, "unselected", "web", nodeName, "10.202.2.4", map[string]string{"app": "web"})
		waitCondition(t, cs, "selected", "web", isWaiting)
		waitCondition(t, cs, "unselected", "web", isTrue)
		if e, ok := dp.entry(43); ok {
			t.Fatalf("pod of a selected namespace programmed before its default-deny: %+v", e)
		}
	})
}

// TestAgentWaitsForDefaultDenyStandardMode: in standard mode the waiting pod is left as
// the CNI plugin attached it (allow-all), and the message says so.
func TestAgentWaitsForDefaultDenyStandardMode(t *testing.T) {
	cfg := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(cfg)
	createNode(t, cs)
	dp := newFakeDatapath()
	ifs := &fakeInterfaces{}
	ifs.set("10.202.1.2", 32)
	acfg := testConfig()
	acfg.Mode = contract.ModeStandard
	runAgent(t, cs, acfg, dp, ifs)

	createNamespace(t, cs, "team-s", nil)
	startPod(t, cs, "team-s", "web", nodeName, "10.202.1.2", map[string]string{"app": "web"})
	c := waitCondition(t, cs, "team-s", "web", isWaiting)
	if !strings.Contains(c.Message, "allow-all (standard mode)") {
		t.Fatalf("condition = %+v", c)
	}
	if e, ok := dp.entry(32); ok {
		t.Fatalf("waiting pod has a datapath entry %+v", e)
	}
	must(cs.NetworkingV1().NetworkPolicies("team-s").Create(context.Background(), defaultDenyPolicy("team-s"), metav1.CreateOptions{}))
	waitCondition(t, cs, "team-s", "web", isTrue)
	if e, _ := dp.entry(32); e.rules == nil || e.rules.Ingress.State != rules.StateIsolated {
		t.Fatalf("entry = %+v", e)
	}
}

// TestPrivilegedWaitForDefaultDeny is the bug on the real datapath: pods attached closed
// by the strict-mode CNI plugin in a namespace whose default-deny does not exist yet
// carry no traffic, even once another policy selects one of them (before the fix the
// client, selected by nothing, was programmed open); the default-deny releases them into
// exactly their policies.
func TestPrivilegedWaitForDefaultDeny(t *testing.T) {
	if !netdevtest.Isolate(t) {
		return
	}
	const pinRoot = "/sys/fs/bpf/strictgate" // a private bpffs (Isolate)
	rc := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	createNode(t, cs)

	web := netdevtest.AddPod(t, "web", netip.MustParseAddr("10.201.0.2"))
	client := netdevtest.AddPod(t, "client", netip.MustParseAddr("10.201.0.3"))
	web.ListenTCP(t, 8080)
	client.ListenTCP(t, 8080)
	tcp := func(from, to *netdevtest.Pod) bool { return from.ProbeTCP(to.IP, 8080, 400*time.Millisecond) == nil }
	if err := client.ProbeTCP(web.IP, 8080, 3*time.Second); err != nil {
		t.Fatalf("plumbing: client cannot reach web before strictgate: %v", err)
	}

	dp := openPinnedDatapath(t, pinRoot)
	// What the strict-mode CNI plugin does at ADD.
	for _, p := range []*netdevtest.Pod{web, client} {
		if _, err := dp.Attach(p.HostIndex, rules.StateUnprogrammedDeny, rules.StateUnprogrammedDeny); err != nil {
			t.Fatal(err)
		}
	}
	acfg := testConfig()
	if err := agent.ConfigureDatapath(dp, acfg); err != nil {
		t.Fatal(err)
	}
	runAgentDeps(t, acfg, agent.Deps{Client: cs, Datapath: agent.NewDatapath(dp, false), Interfaces: netdev.New(nil)})

	createNamespace(t, cs, "team-a", nil)
	startPod(t, cs, "team-a", "web", nodeName, web.IP.String(), map[string]string{"app": "web"})
	startPod(t, cs, "team-a", "client", nodeName, client.IP.String(), map[string]string{"app": "client"})
	allowWeb := ingressPolicy("team-a", "allow-web", "web", "client", 8080)
	must(cs.NetworkingV1().NetworkPolicies("team-a").Create(ctx, allowWeb, metav1.CreateOptions{}))
	for _, n := range []string{"web", "client"} {
		waitCondition(t, cs, "team-a", n, isWaiting)
	}
	if tcp(client, web) || tcp(web, client) {
		t.Fatal("pods waiting for the default-deny carried traffic")
	}

	// The controller's policy, then the client's egress: the user's policies in force.
	must(cs.NetworkingV1().NetworkPolicies("team-a").Create(ctx, defaultDenyPolicy("team-a"), metav1.CreateOptions{}))
	egress := egressPolicy("team-a", "client-egress", "client", "web", 8080)
	must(cs.NetworkingV1().NetworkPolicies("team-a").Create(ctx, egress, metav1.CreateOptions{}))
	waitCondition(t, cs, "team-a", "web", isTrue)
	waitCondition(t, cs, "team-a", "client", func(c corev1.PodCondition, found bool) bool {
		return isTrue(c, found) && strings.Contains(c.Message, "client-egress")
	})
	if !tcp(client, web) {
		t.Fatal("client -> web:8080 dropped although allow-web and client-egress allow it")
	}
	if tcp(web, client) {
		t.Fatal("web -> client:8080 passed although strictgate-default-deny forbids it")
	}
}
