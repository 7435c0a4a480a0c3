package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/internal/plugin"
)

func init() {
	registerPlugin("explain", "explain why a flow is allowed or denied, from the live cluster (strictgate explain)", runExplain)
	registerPlugin("inspect", "show what the pod's node's kernel holds for it: runs strictgate inspect in the agent pod of its node", runPluginInspect)
	registerPlugin("status", "gate state of every pod per namespace: programmed / waiting / failed, time to programmed, Ready but ungated", runStatus)
	register("status", "gate state of every pod per namespace (also kubectl strictgate status)", runStatus)
}

// strictgateFlags locate strictgate's agents.
type strictgateFlags struct {
	namespace, selector string
}

func bindStrictgateFlags(fs *flag.FlagSet) *strictgateFlags {
	f := &strictgateFlags{}
	fs.StringVar(&f.namespace, "strictgate-namespace", "strictgate", "namespace strictgate is installed in")
	fs.StringVar(&f.selector, "agent-selector", plugin.DefaultAgentSelector, "label selector of the agent pods")
	return f
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kf := bindKubeFlags(fs)
	sf := bindStrictgateFlags(fs)
	namespace := fs.String("n", "", "only this namespace (default: all)")
	output := fs.String("o", "text", "output: text or json")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: kubectl strictgate status [-n NAMESPACE] [-o json]

Per namespace, every pod with its gate state — programmed, waiting (with the reason:
WaitingForDefaultDeny, or no condition yet) or failed (with the reason: ProgrammingFailed,
InterfaceNotFound, KernelMismatch) — the time from the pod's network being ready (its
PodReadyToStartContainers condition; else its creation) to the last of the
agent's condition types (default strictgate.dev/policy-programmed) turning True
(one-second resolution), and the pods that
are Ready but ungated in enforced namespaces. Which namespaces are enforced is read
from the agent's own arguments.

Flags:`)
		fs.PrintDefaults()
	}
	if ok, err := parseFlags(fs, args); !ok {
		return err
	}
	if *output != "text" && *output != "json" {
		return fmt.Errorf("-o %q: want text or json", *output)
	}
	cs, _, _, err := kf.client()
	if err != nil {
		return err
	}
	scope, condTypes, note, err := plugin.AgentScope(ctx, cs, sf.namespace, sf.selector)
	if err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintln(stderr, "note:", note)
	}
	var nss []corev1.Namespace
	if *namespace != "" {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, *namespace, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("namespace %s: %w", *namespace, err)
		}
		nss = []corev1.Namespace{*ns}
	} else {
		list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list namespaces: %w", err)
		}
		nss = list.Items
	}
	pods, err := cs.CoreV1().Pods(*namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	r := plugin.Status(nss, pods.Items, scope, gate.TypesOf(condTypes))
	if *output == "json" {
		return writeJSON(stdout, r)
	}
	return plugin.WriteText(stdout, r)
}

func runPluginInspect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kf := bindKubeFlags(fs)
	sf := bindStrictgateFlags(fs)
	all := fs.Bool("all", false, "every pod of --node, one table")
	node := fs.String("node", "", "with --all: the node whose pods to list")
	output := fs.String("o", "text", "output: text or json")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: kubectl strictgate inspect NAMESPACE/POD [-o json]
       kubectl strictgate inspect --all --node NODE [-o json]

Finds the strictgate agent pod on the pod's node and runs 'strictgate inspect' in it
through the API server (as kubectl exec does; needs create on pods/exec in strictgate's
namespace). See 'strictgate inspect -h' for what it prints.

Flags:`)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagErr(err)
	}
	cs, cfg, _, err := kf.client()
	if err != nil {
		return err
	}
	target := ""
	switch {
	case *all && len(pos) > 0:
		return fmt.Errorf("--all and a pod are mutually exclusive: pass one")
	case *all && *node == "":
		return fmt.Errorf("--all needs --node NODE: inspect reads one node's kernel")
	case *all:
	case len(pos) != 1:
		return fmt.Errorf("name one pod as NAMESPACE/POD, or pass --all --node NODE (see -h)")
	default:
		ns, name, ok := strings.Cut(pos[0], "/")
		if !ok || ns == "" || name == "" {
			return fmt.Errorf("%q: want NAMESPACE/POD", pos[0])
		}
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("pod %s: %w", pos[0], err)
		}
		if p.Spec.NodeName == "" {
			return fmt.Errorf("pod %s is not scheduled yet: no node's kernel knows it", pos[0])
		}
		*node, target = p.Spec.NodeName, pos[0]
	}
	agentPod, err := plugin.FindAgent(ctx, cs, sf.namespace, sf.selector, *node)
	if err != nil {
		return err
	}
	command, err := plugin.InspectCommand(agentPod, target, *output)
	if err != nil {
		return err
	}
	return execIn(ctx, cs, cfg, agentPod, plugin.AgentContainer, command, stdout, stderr)
}

// execIn runs command in a container through the API server, as kubectl exec does
// (WebSocket, falling back to SPDY on older API servers).
func execIn(ctx context.Context, cs kubernetes.Interface, cfg *rest.Config, p *corev1.Pod, container string, command []string, stdout, stderr io.Writer) error {
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(p.Namespace).Name(p.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", req.URL().String())
	if err != nil {
		return fmt.Errorf("exec in %s/%s: %w", p.Namespace, p.Name, err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", req.URL())
	if err != nil {
		return fmt.Errorf("exec in %s/%s: %w", p.Namespace, p.Name, err)
	}
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return fmt.Errorf("exec in %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr}); err != nil {
		return fmt.Errorf("strictgate inspect in agent pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}
