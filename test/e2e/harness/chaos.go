package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// ContainerStatus returns the status of container name in pod p.
func ContainerStatus(p *corev1.Pod, name string) (corev1.ContainerStatus, bool) {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name {
			return s, true
		}
	}
	return corev1.ContainerStatus{}, false
}

// KillContainer sends SIGKILL to every process of the running container name of pod
// ns/pod on this node (found by the container ID in /proc/PID/cgroup), as the kernel's
// OOM killer or a crash would end it: no signal handler runs. It returns the container
// ID it killed.
func KillContainer(ctx context.Context, cs kubernetes.Interface, ns, pod, name string) (string, error) {
	p, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	st, ok := ContainerStatus(p, name)
	if !ok || st.State.Running == nil || st.ContainerID == "" {
		return "", fmt.Errorf("container %s of %s/%s is not running", name, ns, pod)
	}
	_, id, _ := strings.Cut(st.ContainerID, "://")
	pids, err := containerPIDs(id)
	if err != nil {
		return "", err
	}
	if len(pids) == 0 {
		return "", fmt.Errorf("no process of container %s (%s/%s %s) found in /proc", id, ns, pod, name)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			return "", fmt.Errorf("kill %d (container %s): %w", pid, id, err)
		}
	}
	return id, nil
}

func containerPIDs(id string) ([]int, error) {
	procs, err := filepath.Glob("/proc/[0-9]*/cgroup")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), id) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// AgentDaemonSetName is the chart's agent DaemonSet for the harness's release.
const AgentDaemonSetName = Release + "-agent"

// PauseAgents gives the agent DaemonSet a nodeSelector no node matches, so its pods go
// away (the "agent down" without touching the release), and waits until none
// is left. ResumeAgents undoes it.
func PauseAgents(ctx context.Context, cs kubernetes.Interface) error {
	patch := []byte(`{"spec":{"template":{"spec":{"nodeSelector":{"strictgate.dev/e2e-paused":"true"}}}}}`)
	if _, err := cs.AppsV1().DaemonSets(Namespace).Patch(ctx, AgentDaemonSetName, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("pause agents: %w", err)
	}
	return Eventually(ctx, 2*time.Minute, func() error {
		pods, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d agent pods still there", len(pods.Items))
		}
		return nil
	})
}

// ResumeAgents removes PauseAgents' nodeSelector and waits until an agent runs again
// (Running, not yet Ready). It returns when it removed the selector (no agent can be
// back before that) and when it saw the agent running (the API reports it a little
// after the process started, so the agent may already have programmed pods by then).
func ResumeAgents(ctx context.Context, cs kubernetes.Interface) (resumed, running time.Time, err error) {
	ds, err := cs.AppsV1().DaemonSets(Namespace).Get(ctx, AgentDaemonSetName, metav1.GetOptions{})
	if err != nil {
		return resumed, running, err
	}
	resumed = time.Now()
	if _, ok := ds.Spec.Template.Spec.NodeSelector["strictgate.dev/e2e-paused"]; ok {
		op := []map[string]any{{"op": "remove", "path": "/spec/template/spec/nodeSelector/strictgate.dev~1e2e-paused"}}
		b, _ := json.Marshal(op)
		if _, err := cs.AppsV1().DaemonSets(Namespace).Patch(ctx, AgentDaemonSetName, types.JSONPatchType, b, metav1.PatchOptions{}); err != nil {
			return resumed, running, fmt.Errorf("resume agents: %w", err)
		}
	}
	err = Eventually(ctx, 3*time.Minute, func() error {
		p, err := AgentPod(ctx, cs)
		if err != nil {
			return err
		}
		if st, ok := ContainerStatus(p, "agent"); !ok || st.State.Running == nil {
			return fmt.Errorf("agent pod %s not running yet", p.Name)
		}
		running = time.Now()
		return nil
	})
	return resumed, running, err
}
