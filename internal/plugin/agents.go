// Package plugin is what `kubectl strictgate` needs from a cluster beyond explain: the
// agent pods and the configuration they run with (FindAgent, AgentScope) and the gate
// status of every pod (Status).
package plugin

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/agent"
	"github.com/strictgate/strictgate/internal/contract"
)

// DefaultAgentSelector selects the chart's agent pods.
const DefaultAgentSelector = "app.kubernetes.io/name=strictgate,app.kubernetes.io/component=agent"

// AgentContainer is the agent's container in the chart's DaemonSet.
const AgentContainer = "agent"

// FindAgent returns the running agent pod on node, among the pods of namespace that
// selector matches.
func FindAgent(ctx context.Context, cs kubernetes.Interface, namespace, selector, node string) (*corev1.Pod, error) {
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector,
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
	if err != nil {
		return nil, fmt.Errorf("list agent pods in %s: %w", namespace, err)
	}
	var other []string
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			return p, nil
		}
		other = append(other, fmt.Sprintf("%s (%s)", p.Name, p.Status.Phase))
	}
	if len(other) > 0 {
		return nil, fmt.Errorf("the agent on node %s is not running: %s", node, strings.Join(other, ", "))
	}
	return nil, fmt.Errorf("no strictgate agent pod on node %s (namespace %s, selector %s): is strictgate installed there? (--strictgate-namespace, --agent-selector)", node, namespace, selector)
}

// AgentConfig parses the agent's configuration from its container's arguments, with
// the agent's own flag definitions, so that what a tool concludes (which namespaces
// are enforced, where the pins are) is what the agent does.
func AgentConfig(p *corev1.Pod) (agent.Config, error) {
	cfg := agent.DefaultConfig()
	cfg.Namespace = p.Namespace
	var c *corev1.Container
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == AgentContainer {
			c = &p.Spec.Containers[i]
		}
	}
	if c == nil {
		return cfg, fmt.Errorf("pod %s/%s has no %q container", p.Namespace, p.Name, AgentContainer)
	}
	args := c.Args
	if len(args) > 0 && args[0] == "agent" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	fs.Int("v", 0, "")
	if err := fs.Parse(args); err != nil {
		return cfg, fmt.Errorf("agent %s/%s arguments: %w", p.Namespace, p.Name, err)
	}
	return cfg, nil
}

// AgentScope is the enforcement scope and the condition types of the agent pods of
// namespace, read from one of them; with none found they are the defaults of an agent
// in namespace, and note says so.
func AgentScope(ctx context.Context, cs kubernetes.Interface, namespace, selector string) (scope contract.Scope, types []string, note string, err error) {
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return contract.Scope{}, nil, "", fmt.Errorf("list agent pods in %s: %w", namespace, err)
	}
	if len(pods.Items) == 0 {
		return contract.Scope{OwnNamespace: namespace}, contract.DefaultConditionTypes(),
			fmt.Sprintf("no agent pod in %s: assuming the default scope (every namespace but the system ones and %s) and condition type %s", namespace, namespace, contract.ConditionType), nil
	}
	cfg, err := AgentConfig(&pods.Items[0])
	if err != nil {
		return contract.Scope{}, nil, "", err
	}
	return cfg.Scope(), cfg.ConditionTypes, "", nil
}

// InspectCommand is the command line of `strictgate inspect` in agentPod: for target
// ("namespace/pod"), or every pod of the node when target is empty, with the agent's
// own pin root.
func InspectCommand(agentPod *corev1.Pod, target, output string) ([]string, error) {
	cfg, err := AgentConfig(agentPod)
	if err != nil {
		return nil, err
	}
	cmd := []string{"strictgate", "inspect", "--pin-root=" + cfg.PinRoot,
		"--condition-types=" + strings.Join(cfg.ConditionTypes, ","), "-o", output}
	if target == "" {
		return append(cmd, "--all"), nil
	}
	return append(cmd, target), nil
}
