// Package harness is what the end-to-end suites (test/e2e) and the demo (test/demo)
// share on the one-node cluster: build and import strictgate's image, helm-install
// the chart, start probe pods, run connections between them, and read the agent's
// policy event log and metrics. Everything goes through the real API server, kubelet,
// containerd and kube-proxy; nothing here fakes a component.
package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/strictgate/strictgate/charts"
	"github.com/strictgate/strictgate/cni"
	"github.com/strictgate/strictgate/test/cluster"
	"github.com/strictgate/strictgate/test/images"
)

// Names of the installation the suites and the demo make.
const (
	Release   = "strictgate"
	Namespace = "strictgate"
	// GateCondition is the readiness gate's condition type (DESIGN.md).
	GateCondition = "strictgate.dev/policy-programmed"
	// OptOutLabel switches enforcement off for a namespace.
	OptOutLabel = "strictgate.dev/enforce"
	// ManagedLabel marks namespaces the suites and the demo created, so a re-run can
	// clean up what an interrupted run left.
	ManagedLabel = "strictgate.dev/e2e"
)

// Install is a helm-installed strictgate on the cluster.
type Install struct {
	Cluster *cluster.Cluster
	Helm    *charts.Helm
	Image   images.StrictgateImage
	Mode    string
	// Took is how long build + import + helm install --wait took.
	Took, BuildTook, HelmTook time.Duration
}

// Options shape an installation.
type Options struct {
	// Mode is strict, standard or audit.
	Mode string
	// Binary, if set, is an already built static strictgate (make build's
	// bin/strictgate); otherwise the module's ./cmd/strictgate is built.
	Binary string
	// Values are merged over the harness's own (image, mode, pull policy Never).
	Values map[string]any
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// InstallStrictgate builds strictgate's image, imports it into the node's containerd and
// runs `helm upgrade --install --wait`. Running it again with an unchanged binary is
// a no-op upgrade.
func InstallStrictgate(ctx context.Context, cl *cluster.Cluster, o Options) (*Install, error) {
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	if o.Mode == "" {
		o.Mode = "strict"
	}
	if err := EnsureBPFFS(); err != nil {
		return nil, err
	}
	start := time.Now()
	dir := filepath.Join(cl.Config.Dir, "images")
	var img images.StrictgateImage
	var err error
	if o.Binary != "" {
		img, err = images.StrictgateFromBinary(o.Binary, dir)
	} else {
		fmt.Fprintln(logw, "building strictgate (CGO_ENABLED=0) and its image ...")
		img, err = images.Strictgate(ctx, dir)
	}
	if err != nil {
		return nil, err
	}
	if err := cl.ImportImage(ctx, img.Tarball); err != nil {
		return nil, err
	}
	buildTook := time.Since(start)
	fmt.Fprintf(logw, "image %s imported into containerd (%s)\n", img.Ref, buildTook.Round(100*time.Millisecond))

	h, err := charts.New(cl.Kubeconfig)
	if err != nil {
		return nil, err
	}
	values := map[string]any{
		"mode":  o.Mode,
		"image": map[string]any{"repository": img.Repository, "tag": img.Tag, "pullPolicy": "Never"},
	}
	for k, v := range o.Values {
		values[k] = v
	}
	if _, err := h.Run(ctx, "status", Release, "--namespace", Namespace); err != nil {
		// A fresh install: clear datapath pins an earlier installation left behind (see
		// ResetDatapath) so the new agent starts from a clean node.
		if err := ResetDatapath(); err != nil {
			return nil, err
		}
	}
	helmStart := time.Now()
	if out, err := h.Upgrade(ctx, Release, Namespace, values, "--wait", "--timeout=5m"); err != nil {
		return nil, fmt.Errorf("%w\n%s\n%s", err, out, diagnose(ctx, cl.Client))
	}
	// helm --wait can return before the DaemonSet controller has even seen a changed
	// template; wait until every agent runs the new one and the old ones are gone.
	if err := waitAgentsRolledOut(ctx, cl.Client); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, diagnose(ctx, cl.Client))
	}
	in := &Install{Cluster: cl, Helm: h, Image: img, Mode: o.Mode, BuildTook: buildTook, HelmTook: time.Since(helmStart), Took: time.Since(start)}
	fmt.Fprintf(logw, "helm upgrade --install %s (mode %s) done in %s\n", Release, o.Mode, in.HelmTook.Round(100*time.Millisecond))
	return in, nil
}

func waitAgentsRolledOut(ctx context.Context, cs kubernetes.Interface) error {
	return Eventually(ctx, 3*time.Minute, func() error {
		dss, err := cs.AppsV1().DaemonSets(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
		if err != nil {
			return err
		}
		if len(dss.Items) != 1 {
			return fmt.Errorf("%d agent DaemonSets", len(dss.Items))
		}
		ds := dss.Items[0]
		st := ds.Status
		if st.ObservedGeneration < ds.Generation || st.UpdatedNumberScheduled != st.DesiredNumberScheduled ||
			st.NumberReady != st.DesiredNumberScheduled || st.NumberUnavailable != 0 {
			return fmt.Errorf("agent DaemonSet rolling out: %+v", st)
		}
		pods, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
		if err != nil {
			return err
		}
		if int32(len(pods.Items)) != st.DesiredNumberScheduled {
			return fmt.Errorf("%d agent pods, want %d (an old one is still terminating)", len(pods.Items), st.DesiredNumberScheduled)
		}
		return nil
	})
}

// Uninstall runs `helm uninstall` and takes the strictgate entry out of the node's CNI
// configuration (the chart's installer put it there; without an agent a strict-mode
// plugin would keep every new pod closed).
func (in *Install) Uninstall(ctx context.Context) error {
	if out, err := in.Helm.Uninstall(ctx, Release, Namespace); err != nil && !strings.Contains(err.Error(), "not found") {
		return fmt.Errorf("%w\n%s", err, out)
	}
	if err := UnchainCNI(in.Cluster); err != nil {
		return err
	}
	return ResetDatapath()
}

// PinRoot is where the chart's agent and CNI plugin pin the datapath.
const PinRoot = "/sys/fs/bpf/strictgate"

// ResetDatapath removes the datapath's pins from the node once no agent runs: pods
// deleted after an uninstall leave entries and severed links behind, which a new agent
// currently refuses to adopt ("update link: link has been severed"), and pods still
// running would keep frozen rules no agent updates. Unpinning the links detaches the
// programs, so the node is plain again.
func ResetDatapath() error {
	if err := os.RemoveAll(PinRoot); err != nil {
		return fmt.Errorf("remove datapath pins %s: %w", PinRoot, err)
	}
	return nil
}

// EnsureBPFFS mounts a bpf filesystem on /sys/fs/bpf when none is there (as
// test/tools/setup.sh does): the chart expects the node to have one, like a real node.
func EnsureBPFFS() error {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, ""); err != nil {
		return fmt.Errorf("mount bpffs on /sys/fs/bpf: %w", err)
	}
	return nil
}

// UnchainCNI removes strictgate from the node's conflist (no-op when it is not there).
func UnchainCNI(cl *cluster.Cluster) error {
	if _, _, err := cni.PatchConfList(cl.Config.CNIConfDir, cni.Entry(cni.ModeStrict, "", ""), true); err != nil && !errors.Is(err, cni.ErrNoConfList) {
		return fmt.Errorf("unchain strictgate from the CNI configuration: %w", err)
	}
	return nil
}

// diagnose summarises why strictgate's pods are not ready, for error messages.
func diagnose(ctx context.Context, cs kubernetes.Interface) string {
	var b strings.Builder
	pods, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s: phase %s\n", p.Name, p.Status.Phase)
		for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			switch {
			case s.State.Waiting != nil:
				fmt.Fprintf(&b, "  %s waiting: %s %s\n", s.Name, s.State.Waiting.Reason, s.State.Waiting.Message)
			case s.State.Terminated != nil:
				fmt.Fprintf(&b, "  %s terminated: %s (exit %d) %s\n", s.Name, s.State.Terminated.Reason, s.State.Terminated.ExitCode, s.State.Terminated.Message)
			}
			if s.LastTerminationState.Terminated != nil {
				fmt.Fprintf(&b, "  %s last exit %d: %s\n", s.Name, s.LastTerminationState.Terminated.ExitCode, s.LastTerminationState.Terminated.Message)
			}
		}
		for _, c := range []string{"webhook", "agent", "install-cni"} {
			lines, err := cs.CoreV1().Pods(Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: c, TailLines: ptr(int64(8))}).DoRaw(ctx)
			if err == nil && len(lines) > 0 {
				fmt.Fprintf(&b, "  --- %s log tail:\n%s\n", c, indent(string(lines)))
			}
		}
	}
	events, err := cs.CoreV1().Events(Namespace).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, e := range events.Items {
			if e.Type == corev1.EventTypeWarning {
				fmt.Fprintf(&b, "event %s %s: %s\n", e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}
	return b.String()
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n    ")
}

func ptr[T any](v T) *T { return &v }

// Namespace creates namespace name (labelled as ours, plus labels), deleting an earlier
// one of the same name first so that re-runs start clean, and waits until pods can be
// created in it (default ServiceAccount).
func CreateNamespace(ctx context.Context, cs kubernetes.Interface, name string, labels map[string]string) error {
	if err := DeleteNamespace(ctx, cs, name); err != nil {
		return err
	}
	l := map[string]string{ManagedLabel: "true"}
	for k, v := range labels {
		l[k] = v
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return Eventually(ctx, time.Minute, func() error {
		_, err := cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// DeleteNamespace deletes a namespace and waits until it is gone.
func DeleteNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	err := cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return Eventually(ctx, 3*time.Minute, func() error {
		_, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("namespace %s still terminating", name)
	})
}

// Eventually retries f until it succeeds or timeout passes, returning f's last error.
func Eventually(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ProbePod is a pod of the probe image serving TCP 8080, UDP 8081 and HTTP 8082 (ports
// named tcp, udp and http), with a readiness probe on HTTP /healthz.
func ProbePod(ns, name string, labels map[string]string) *corev1.Pod {
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "probe", Image: images.ProbeRef, ImagePullPolicy: corev1.PullNever, Args: []string{"serve"},
				Ports: []corev1.ContainerPort{
					{Name: "tcp", ContainerPort: images.ProbeTCPPort, Protocol: corev1.ProtocolTCP},
					{Name: "udp", ContainerPort: images.ProbeUDPPort, Protocol: corev1.ProtocolUDP},
					{Name: "http", ContainerPort: images.ProbeHTTPPort, Protocol: corev1.ProtocolTCP},
				},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(images.ProbeHTTPPort)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// WaitPod waits until ok(pod) holds and returns the pod.
func WaitPod(ctx context.Context, cs kubernetes.Interface, ns, name string, timeout time.Duration, ok func(*corev1.Pod) error) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := Eventually(ctx, timeout, func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		pod = p
		return ok(p)
	})
	return pod, err
}

// Condition returns the pod's condition of type t, or nil.
func Condition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// Ready is WaitPod's check for a Ready pod with an IP.
func Ready(p *corev1.Pod) error {
	if c := Condition(p, corev1.PodReady); c == nil || c.Status != corev1.ConditionTrue || p.Status.PodIP == "" {
		return fmt.Errorf("pod %s/%s not ready (phase %s, gates %s)", p.Namespace, p.Name, p.Status.Phase, GateSummary(p))
	}
	return nil
}

// HasGate reports whether the webhook gave the pod strictgate's readiness gate.
func HasGate(p *corev1.Pod) bool {
	for _, g := range p.Spec.ReadinessGates {
		if g.ConditionType == GateCondition {
			return true
		}
	}
	return false
}

// GateSummary is the READINESS GATES column of `kubectl get pods -o wide`: "1/1".
func GateSummary(p *corev1.Pod) string {
	if len(p.Spec.ReadinessGates) == 0 {
		return "<none>"
	}
	n := 0
	for _, g := range p.Spec.ReadinessGates {
		if c := Condition(p, g.ConditionType); c != nil && c.Status == corev1.ConditionTrue {
			n++
		}
	}
	return fmt.Sprintf("%d/%d", n, len(p.Spec.ReadinessGates))
}

// Connect runs the probe client in pod from/ns: one connection to target (host:port)
// over proto (tcp, udp, http). It returns the answer or the connection error; err is
// only for failures to run the client at all.
func Connect(ctx context.Context, cl *cluster.Cluster, ns, from, proto, target string, timeout time.Duration) (answer string, connErr, err error) {
	stdout, stderr, execErr := cl.Exec(ctx, ns, from, "probe", "/probe", "connect", "--protocol", proto, "--timeout", timeout.String(), target)
	if execErr == nil {
		return strings.TrimSpace(stdout), nil, nil
	}
	// The client prints "probe: <error>" and exits 1 when the connection fails; any
	// other exec failure is the harness's problem, not a verdict.
	if strings.Contains(stderr, "probe:") {
		return "", errors.New(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(stderr), "probe:"))), nil
	}
	return "", nil, execErr
}

// NetworkPolicy is a small constructor for the policies the suites apply.
func NetworkPolicy(ns, name string, podSelector map[string]string, types []networkingv1.PolicyType, ingress []networkingv1.NetworkPolicyIngressRule, egress []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: podSelector},
			PolicyTypes: types,
			Ingress:     ingress,
			Egress:      egress,
		},
	}
}

// AgentPod returns the agent pod on the cluster's node.
func AgentPod(ctx context.Context, cs kubernetes.Interface) (*corev1.Pod, error) {
	pods, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
	if err != nil {
		return nil, err
	}
	for i := range pods.Items {
		if pods.Items[i].DeletionTimestamp == nil && pods.Items[i].Status.Phase == corev1.PodRunning {
			return &pods.Items[i], nil
		}
	}
	return nil, fmt.Errorf("no running agent pod in %s", Namespace)
}

// AgentLog returns the agent container's stdout+stderr since since (the policy event log
// is on stdout).
func AgentLog(ctx context.Context, cs kubernetes.Interface, since time.Time) (string, error) {
	p, err := AgentPod(ctx, cs)
	if err != nil {
		return "", err
	}
	st := metav1.NewTime(since)
	b, err := cs.CoreV1().Pods(Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: "agent", SinceTime: &st}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("agent log: %w", err)
	}
	return string(b), nil
}

// AgentMetrics scrapes the agent's /metrics on the node (it uses the host network).
func AgentMetrics(ctx context.Context, cl *cluster.Cluster, port int) (string, error) {
	url := "http://" + net.JoinHostPort(cl.NodeIP.String(), strconv.Itoa(port)) + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("scrape agent metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// MetricSum adds up every sample of metric whose labels contain all of want
// (e.g. `namespace="x"`).
func MetricSum(text, metric string, want ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric) {
			continue
		}
		rest := line[len(metric):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // a longer metric name with this prefix
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(rest, w)
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if strings.HasPrefix(rest, " ") {
			f = strings.Fields(rest)
		}
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// StrictgateBinary returns the host path of the strictgate binary of the installation
// (for `strictgate verdict` / `explain` against the same code the cluster runs).
func (in *Install) StrictgateBinary() string { return in.Image.Binary }

// RepoBinary is make build's bin/strictgate if it exists.
func RepoBinary(root string) string {
	p := filepath.Join(root, "bin", "strictgate")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}
