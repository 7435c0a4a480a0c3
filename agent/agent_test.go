package agent_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/agent"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/test/controlplane"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*agent.Config)
		want string
	}{
		{"defaults with node", func(*agent.Config) {}, ""},
		{"no node", func(c *agent.Config) { c.NodeName = "" }, "--node-name is required"},
		{"bad mode", func(c *agent.Config) { c.Mode = "lenient" }, `unknown mode "lenient"`},
		{"bad event mode", func(c *agent.Config) { c.EventMode = "some" }, `unknown --event-mode "some"`},
		{"negative rate", func(c *agent.Config) { c.EventRate = -1 }, "--event-rate -1"},
		{"no workers", func(c *agent.Config) { c.Workers = 0 }, "--workers 0"},
		{"rotated event log", func(c *agent.Config) {
			c.EventLogFile, c.EventLogMaxSizeMB, c.EventLogMaxBackups = "/var/log/sg.log", 10, 3
		}, ""},
		{"rotated event log without a file", func(c *agent.Config) { c.EventLogMaxSizeMB, c.EventLogMaxBackups = 10, 3 }, "want an absolute path"},
		{"rotated event log without backups", func(c *agent.Config) { c.EventLogFile, c.EventLogMaxSizeMB = "/var/log/sg.log", 10 }, "max backups 0"},
		{"no condition types", func(c *agent.Config) { c.ConditionTypes = nil }, "--condition-types: condition types: at least one"},
		{"duplicate condition types", func(c *agent.Config) { c.ConditionTypes = []string{"x.io/a", "x.io/a"} }, `"x.io/a" is listed twice`},
		{"invalid condition type", func(c *agent.Config) { c.ConditionTypes = []string{"x.io/a b"} }, "not a valid condition type"},
		{"two condition types", func(c *agent.Config) { c.ConditionTypes = []string{contract.ConditionType, "x.io/a"} }, ""},
		{"backups without rotation", func(c *agent.Config) { c.EventLogFile, c.EventLogMaxBackups = "/var/log/sg.log", 3 }, "needs --event-log-max-size-mb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := agent.DefaultConfig()
			c.NodeName = "n"
			tc.edit(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
	for mode, want := range map[contract.Mode]rules.State{
		contract.ModeStrict: rules.StateUnprogrammedDeny, contract.ModeStandard: rules.StateUnprogrammedAllow, contract.ModeAudit: rules.StateUnprogrammedDeny,
	} {
		if got := mode.InitialState(); got != want {
			t.Errorf("%s.InitialState() = %s, want %s", mode, got, want)
		}
	}
}

// TestAgentOnAPIServer drives the reconciler against a real kube-apiserver with an
// in-memory datapath: ordering, re-programming, failures, deletes and restarts.
func TestAgentOnAPIServer(t *testing.T) {
	cfg := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	createNode(t, cs, "192.0.2.10")

	dp := newFakeDatapath()
	ifs := &fakeInterfaces{}
	ifs.set("10.201.0.2", 12)
	ifs.set("10.201.0.3", 13)
	ifs.set("10.201.0.9", 19) // exists locally, but the pod is bound to another node
	ifs.set("10.201.0.4", 14)

	pol := must(cs.NetworkingV1().NetworkPolicies("default").Create(ctx, ingressPolicy("default", "allow-web", "web", "client", 8080), metav1.CreateOptions{}))
	startPod(t, cs, "default", "web", nodeName, "10.201.0.2", map[string]string{"app": "web"})
	startPod(t, cs, "default", "client", nodeName, "10.201.0.3", map[string]string{"app": "client"})
	startPod(t, cs, "default", "elsewhere", "node-b", "10.201.0.9", map[string]string{"app": "web"})
	hn := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hostnet", Namespace: "default"},
		Spec:       corev1.PodSpec{NodeName: nodeName, HostNetwork: true, Containers: []corev1.Container{{Name: "c", Image: "x"}}},
	}
	must(cs.CoreV1().Pods("default").Create(ctx, hn, metav1.CreateOptions{}))

	stop := runAgent(t, cs, testConfig(), dp, ifs)
	parent := t

	t.Run("condition True only after the rules are in the datapath", func(t *testing.T) {
		var atTrue fakeEntry
		c := waitCondition(t, cs, "default", "web", func(c corev1.PodCondition, found bool) bool {
			if isTrue(c, found) {
				atTrue, _ = dp.entry(12) // the datapath as it is when True is first seen
				return true
			}
			return false
		})
		if atTrue.rules == nil || atTrue.rules.Ingress.State != rules.StateIsolated || atTrue.closed {
			t.Fatalf("condition True while the datapath held %+v", atTrue)
		}
		if c.Reason != contract.ReasonProgrammed || !strings.Contains(c.Message, "ingress: default/allow-web (generation 1)") || !strings.Contains(c.Message, "egress: unrestricted") {
			t.Fatalf("condition = %+v", c)
		}
		if !atTrue.hooked {
			t.Fatal("condition True before the programs were attached")
		}
		ops := dp.opsCopy()
		reg, prog, att := slices.Index(ops, "register 12 unprogrammed-deny"), slices.Index(ops, "program 12"), slices.Index(ops, "attach 12")
		if reg < 0 || !(reg < prog && prog < att) {
			t.Fatalf("ops = %v: want register (closed), program, attach, in this order", ops)
		}
		waitCondition(t, cs, "default", "client", isTrue)
	})

	t.Run("only this node's pods, never host-network ones", func(t *testing.T) {
		if _, ok := dp.entry(19); ok {
			t.Fatal("the pod of another node was attached")
		}
		for _, op := range dp.opsCopy() {
			if strings.HasPrefix(op, "register") && op != "register 12 unprogrammed-deny" && op != "register 13 unprogrammed-deny" ||
				strings.HasPrefix(op, "attach") && op != "attach 12" && op != "attach 13" {
				t.Fatalf("unexpected %q", op)
			}
		}
		p, _ := cs.CoreV1().Pods("default").Get(ctx, "elsewhere", metav1.GetOptions{})
		if _, ok := gate.Default.Current(p); ok {
			t.Fatal("the agent set the condition of another node's pod")
		}
		if !slices.Contains(dp.hosts, mustAddr("192.0.2.10")) {
			t.Fatalf("host addresses %v lack the node's InternalIP", dp.hosts)
		}
	})

	t.Run("policy change re-programs", func(t *testing.T) {
		pol.Spec.Ingress[0].Ports[0].Port = ptr(intstr.FromInt(9090))
		pol = must(cs.NetworkingV1().NetworkPolicies("default").Update(ctx, pol, metav1.UpdateOptions{}))
		waitCondition(t, cs, "default", "web", func(c corev1.PodCondition, found bool) bool {
			return isTrue(c, found) && strings.Contains(c.Message, "(generation 2)")
		})
		e, _ := dp.entry(12)
		if v, _ := e.rules.Ingress.Lookup(mustAddr("10.201.0.3"), rules.ProtocolTCP, 9090); v != rules.Allow {
			t.Fatalf("new port not programmed: %+v", e.rules.Ingress)
		}
		if v, _ := e.rules.Ingress.Lookup(mustAddr("10.201.0.3"), rules.ProtocolTCP, 8080); v != rules.Deny {
			t.Fatalf("old port still programmed: %+v", e.rules.Ingress)
		}
	})

	t.Run("service changes re-program egress-isolated clients", func(t *testing.T) {
		egress := egressPolicy("default", "client-egress", "client", "web", 9090)
		must(cs.NetworkingV1().NetworkPolicies("default").Create(ctx, egress, metav1.CreateOptions{}))
		svc := must(cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "web"},
				Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(9090), Protocol: corev1.ProtocolTCP}},
			},
		}, metav1.CreateOptions{}))
		cip := mustAddr(svc.Spec.ClusterIP)
		waitRules := func(want rules.Verdict) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for {
				e, _ := dp.entry(13)
				if e.rules != nil && e.rules.Egress.State == rules.StateIsolated {
					if v, _ := e.rules.Egress.Lookup(cip, rules.ProtocolTCP, 80); v == want {
						return
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("client's egress to %s:80 never became %s: %+v", cip, want, e.rules)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		waitRules(rules.Allow)
		// A target port the policy does not allow closes the ClusterIP again.
		svc.Spec.Ports[0].TargetPort = intstr.FromInt(7777)
		must(cs.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}))
		waitRules(rules.Deny)
	})

	t.Run("capacity failure sets False and keeps the pod closed", func(t *testing.T) {
		dp.mu.Lock()
		dp.fail[14] = fmt.Errorf("program: %w: 70000 prefixes > 65536", datapath.ErrCapacity)
		dp.mu.Unlock()
		startPod(t, cs, "default", "big", nodeName, "10.201.0.4", map[string]string{"app": "web"})
		c := waitCondition(t, cs, "default", "big", func(c corev1.PodCondition, found bool) bool { return found })
		if c.Status != corev1.ConditionFalse || c.Reason != contract.ReasonProgrammingFailed || !strings.Contains(c.Message, "capacity exceeded") {
			t.Fatalf("condition = %+v", c)
		}
		e, _ := dp.entry(14)
		if e.rules != nil || e.state != rules.StateUnprogrammedDeny || !e.closed || !e.hooked {
			t.Fatalf("failed pod's entry = %+v, want unprogrammed, closed and attached", e)
		}
	})

	t.Run("failed re-program closes a programmed pod, recovery re-opens it", func(t *testing.T) {
		dp.mu.Lock()
		dp.fail[12] = fmt.Errorf("%w: port table full", datapath.ErrCapacity)
		dp.mu.Unlock()
		pol.Spec.Ingress[0].Ports[0].Port = ptr(intstr.FromInt(9091))
		pol = must(cs.NetworkingV1().NetworkPolicies("default").Update(ctx, pol, metav1.UpdateOptions{}))
		waitCondition(t, cs, "default", "web", func(c corev1.PodCondition, found bool) bool {
			return found && c.Status == corev1.ConditionFalse && c.Reason == contract.ReasonProgrammingFailed
		})
		if e, _ := dp.entry(12); !e.closed {
			t.Fatal("strict mode left the old rules open after a failed re-program")
		}
		dp.mu.Lock()
		delete(dp.fail, 12)
		dp.mu.Unlock()
		// The failure is retried with backoff; no further change is needed.
		waitCondition(t, cs, "default", "web", func(c corev1.PodCondition, found bool) bool {
			return isTrue(c, found) && strings.Contains(c.Message, "(generation 3)")
		})
	})

	t.Run("restart neither reprograms nor flips", func(t *testing.T) {
		stop()
		before := dp.opsCopy()
		rv := map[string]string{}
		for _, n := range []string{"web", "client"} {
			p, _ := cs.CoreV1().Pods("default").Get(ctx, n, metav1.GetOptions{})
			rv[n] = p.ResourceVersion
		}
		runAgent(parent, cs, testConfig(), dp, ifs)
		time.Sleep(300 * time.Millisecond) // let any stray patch land before looking
		for _, n := range []string{"web", "client"} {
			p, _ := cs.CoreV1().Pods("default").Get(ctx, n, metav1.GetOptions{})
			if p.ResourceVersion != rv[n] {
				t.Fatalf("pod %s was rewritten by the restarted agent: %+v", n, p.Status.Conditions)
			}
		}
		for _, op := range dp.opsCopy()[len(before):] {
			if !strings.HasSuffix(op, " 14") { // the failed pod is retried, as it should be
				t.Fatalf("restarted agent did %q on a programmed pod", op)
			}
		}
	})

	t.Run("deleted pod is detached", func(t *testing.T) {
		if err := cs.CoreV1().Pods("default").Delete(ctx, "client", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, ok := dp.entry(13); !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("deleted pod still attached; ops %v", dp.opsCopy())
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Its peer loses the client's address from its rules.
		deadline = time.Now().Add(10 * time.Second)
		for {
			e, _ := dp.entry(12)
			if v, _ := e.rules.Ingress.Lookup(mustAddr("10.201.0.3"), rules.ProtocolTCP, 9091); v == rules.Deny {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("web still allows the deleted client: %+v", e.rules.Ingress)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func ptr[T any](v T) *T { return &v }
