package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strictgate/strictgate/test/images"
)

// The smoke tests share one cluster (Ensure) and each works in its own namespace.

const gateCondition = "strictgate.dev/policy-programmed"

func namespace(t *testing.T, cl *Cluster) string {
	t.Helper()
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, strings.ToLower(strings.TrimPrefix(t.Name(), "TestPrivileged")))
	name := fmt.Sprintf("smoke-%s-%04x", base[:min(30, len(base))], rand.IntN(1<<16))
	ctx := context.Background()
	// Opted out of strictgate, should a suite have it installed: these tests check
	// plain Kubernetes.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"strictgate.dev/enforce": "disabled"}}}
	if _, err := cl.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The controller-manager makes the default ServiceAccount; pods are refused until then.
	eventually(t, 30*time.Second, func() error {
		_, err := cl.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	t.Cleanup(func() {
		cl.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func probePodSpec(args ...string) corev1.PodSpec {
	grace := int64(1)
	if len(args) == 0 {
		args = []string{"serve"}
	}
	return corev1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{
			Name: "probe", Image: ProbeImage, ImagePullPolicy: corev1.PullNever, Args: args,
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
	}
}

// probeDeployment creates a Deployment of the probe image and waits until all its
// replicas are available; it returns the Ready pods.
func probeDeployment(t *testing.T, cl *Cluster, ns, name string, replicas int32) []corev1.Pod {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: probePodSpec()},
		},
	}
	if _, err := cl.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, func() error {
		got, err := cl.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.AvailableReplicas != replicas {
			return fmt.Errorf("deployment %s/%s: %d of %d replicas available", ns, name, got.Status.AvailableReplicas, replicas)
		}
		return nil
	})
	pods, err := cl.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var ready []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && podReady(&p) {
			ready = append(ready, p)
		}
	}
	if len(ready) != int(replicas) {
		t.Fatalf("%d ready pods of %s, want %d", len(ready), name, replicas)
	}
	return ready
}

func podReady(p *corev1.Pod) bool {
	return conditionStatus(p, corev1.PodReady) == corev1.ConditionTrue
}

func conditionStatus(p *corev1.Pod, typ corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

func TestPrivilegedDeploymentExecAndLogs(t *testing.T) {
	cl := Ensure(t)
	ns := namespace(t, cl)
	pods := probeDeployment(t, cl, ns, "probe", 2)
	ctx := context.Background()
	for _, p := range pods {
		if !cl.PodCIDR.Contains(net.ParseIP(p.Status.PodIP)) {
			t.Errorf("pod %s has IP %q outside the pod CIDR %s", p.Name, p.Status.PodIP, cl.PodCIDR)
		}
	}
	p := pods[0]
	out, _, err := cl.Exec(ctx, ns, p.Name, "probe", "/probe", "connect", "--message", "via-exec", fmt.Sprintf("127.0.0.1:%d", images.ProbeTCPPort))
	if err != nil {
		t.Fatal(err)
	}
	if want := p.Name + " via-exec"; strings.TrimSpace(out) != want {
		t.Fatalf("exec output %q, want %q", out, want)
	}
	// A failing command must surface as an error, not as empty output.
	if _, _, err := cl.Exec(ctx, ns, p.Name, "probe", "/probe", "connect", "--timeout", "300ms", "127.0.0.1:1"); err == nil {
		t.Fatal("exec of a failing command: want an error")
	}
	// The same through kubectl itself.
	kubectl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, cl.Kubectl(), append([]string{"--kubeconfig", cl.Kubeconfig, "-n", ns}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err = kubectl("exec", p.Name, "--", "/probe", "connect", "--message", "via-kubectl", fmt.Sprintf("127.0.0.1:%d", images.ProbeTCPPort))
	if want := p.Name + " via-kubectl"; err != nil || strings.TrimSpace(out) != want {
		t.Fatalf("kubectl exec: %q (%v), want %q", out, err, want)
	}
	eventually(t, 10*time.Second, func() error {
		out, err := kubectl("logs", p.Name)
		if err != nil || !strings.Contains(out, `"via-kubectl"`) {
			return fmt.Errorf("kubectl logs: %v\n%s", err, out)
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		logs, err := cl.Logs(ctx, ns, p.Name, "probe")
		if err != nil {
			return err
		}
		if !strings.Contains(logs, "listening on tcp") || !strings.Contains(logs, `"via-exec"`) {
			return fmt.Errorf("logs lack the listen line or the exec'd connection:\n%s", logs)
		}
		return nil
	})
}

func TestPrivilegedUpReusesHealthyCluster(t *testing.T) {
	cl := Ensure(t)
	before := cl.Config.status(context.Background(), cl.bins)
	again, err := Up(context.Background(), cl.Config, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Reused {
		t.Fatal("second up did not reuse the healthy cluster")
	}
	after := again.Config.status(context.Background(), again.bins)
	for i := range before {
		if before[i].PID == 0 || before[i].PID != after[i].PID {
			t.Errorf("%s: pid %d before, %d after a second up: want the same running process", before[i].Name, before[i].PID, after[i].PID)
		}
	}
}

func TestPrivilegedPodToPod(t *testing.T) {
	cl := Ensure(t)
	ns := namespace(t, cl)
	pods := probeDeployment(t, cl, ns, "peer", 2)
	from, to := pods[0], pods[1]
	wantIPs := 1
	if cl.Config.DualStack() {
		wantIPs = 2
	}
	if len(to.Status.PodIPs) != wantIPs {
		t.Fatalf("pod %s has IPs %v, want %d", to.Name, to.Status.PodIPs, wantIPs)
	}
	type flow struct {
		name, proto, ip string
		port            int
	}
	var tests []flow
	for _, ip := range to.Status.PodIPs {
		fam := "ipv4"
		if net.ParseIP(ip.IP).To4() == nil {
			fam = "ipv6"
			if !cl.PodCIDRv6.Contains(net.ParseIP(ip.IP)) {
				t.Fatalf("pod IPv6 %s outside %s", ip.IP, cl.PodCIDRv6)
			}
		}
		tests = append(tests,
			flow{fam + " tcp", "tcp", ip.IP, images.ProbeTCPPort},
			flow{fam + " udp", "udp", ip.IP, images.ProbeUDPPort},
			flow{fam + " http", "http", ip.IP, images.ProbeHTTPPort})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := net.JoinHostPort(tt.ip, fmt.Sprint(tt.port))
			out, _, err := cl.Exec(context.Background(), ns, from.Name, "probe", "/probe", "connect", "--protocol", tt.proto, "--message", "p2p", target)
			if err != nil {
				t.Fatal(err)
			}
			if want := to.Name + " p2p"; strings.TrimSpace(out) != want {
				t.Fatalf("%s %s answered %q, want %q", tt.proto, target, out, want)
			}
		})
	}
}

func TestPrivilegedServiceViaKubeProxy(t *testing.T) {
	cl := Ensure(t)
	ns := namespace(t, cl)
	backends := probeDeployment(t, cl, ns, "backend", 2)
	client := probeDeployment(t, cl, ns, "client", 1)[0]
	ctx := context.Background()
	svc, err := cl.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "backend", Namespace: ns},
		Spec: corev1.ServiceSpec{
			IPFamilyPolicy: ptr(corev1.IPFamilyPolicyPreferDualStack),
			Selector:       map[string]string{"app": "backend"},
			Ports: []corev1.ServicePort{
				{Name: "tcp", Port: 80, TargetPort: intstr.FromString("tcp"), Protocol: corev1.ProtocolTCP},
				{Name: "udp", Port: 53, TargetPort: intstr.FromString("udp"), Protocol: corev1.ProtocolUDP},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !cl.ServiceCIDR.Contains(net.ParseIP(svc.Spec.ClusterIP)) {
		t.Fatalf("ClusterIP %s outside the service CIDR %s", svc.Spec.ClusterIP, cl.ServiceCIDR)
	}
	if cl.Config.DualStack() && (len(svc.Spec.ClusterIPs) != 2 || !cl.ServiceCIDRv6.Contains(net.ParseIP(svc.Spec.ClusterIPs[1]))) {
		t.Fatalf("ClusterIPs %v: want an IPv4 and an IPv6 one in %s", svc.Spec.ClusterIPs, cl.ServiceCIDRv6)
	}
	names := map[string]bool{}
	for _, b := range backends {
		names[b.Name] = true
	}
	answeredByBackend := func(out string) error {
		host, _, _ := strings.Cut(strings.TrimSpace(out), " ")
		if !names[host] {
			return fmt.Errorf("answer %q is not from a backend %v", out, names)
		}
		return nil
	}
	type flow struct {
		name, proto, ip string
		port            int
		fromHost        bool
	}
	var tests []flow
	for _, ip := range svc.Spec.ClusterIPs {
		fam := "ipv4"
		if net.ParseIP(ip).To4() == nil {
			fam = "ipv6"
		}
		tests = append(tests,
			flow{"pod " + fam + " tcp", "tcp", ip, 80, false},
			flow{"pod " + fam + " udp", "udp", ip, 53, false},
			flow{"host " + fam + " tcp", "tcp", ip, 80, true},
			flow{"host " + fam + " udp", "udp", ip, 53, true})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := net.JoinHostPort(tt.ip, fmt.Sprint(tt.port))
			// kube-proxy programs the Service a moment after it and its endpoints exist.
			eventually(t, 30*time.Second, func() error {
				var out string
				var err error
				if tt.fromHost {
					out, err = dialProbe(tt.proto, target, "svc")
				} else {
					out, _, err = cl.Exec(ctx, ns, client.Name, "probe", "/probe", "connect", "--timeout", "2s", "--protocol", tt.proto, "--message", "svc", target)
				}
				if err != nil {
					return err
				}
				return answeredByBackend(out)
			})
		})
	}
}

func ptr[T any](v T) *T { return &v }

// dialProbe is the probe client's protocol from the host's side.
func dialProbe(proto, target, msg string) (string, error) {
	c, err := net.DialTimeout(proto, target, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func TestPrivilegedHostNetworkDaemonSet(t *testing.T) {
	cl := Ensure(t)
	ns := namespace(t, cl)
	ctx := context.Background()
	// On the host's network the probe listens on loopback only: nothing is exposed.
	port := 18000 + rand.IntN(1000)
	spec := probePodSpec("serve", "--address", "127.0.0.1", "--tcp", fmt.Sprint(port), "--udp", "", "--http", fmt.Sprint(port+1))
	spec.HostNetwork = true
	spec.Containers[0].Ports = nil
	spec.Containers[0].ReadinessProbe.HTTPGet.Port = intstr.FromInt(port + 1)
	spec.Containers[0].ReadinessProbe.HTTPGet.Host = "127.0.0.1"
	labels := map[string]string{"app": "hostnet"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "hostnet", Namespace: ns},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
	if _, err := cl.Client.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, func() error {
		got, err := cl.Client.AppsV1().DaemonSets(ns).Get(ctx, "hostnet", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.DesiredNumberScheduled != 1 || got.Status.NumberReady != 1 {
			return fmt.Errorf("daemonset: %d desired, %d ready; want 1 and 1", got.Status.DesiredNumberScheduled, got.Status.NumberReady)
		}
		return nil
	})
	hostname, _ := os.Hostname()
	out, err := dialProbe("tcp", fmt.Sprintf("127.0.0.1:%d", port), "hostnet")
	if err != nil {
		t.Fatal(err)
	}
	if want := hostname + " hostnet"; strings.TrimSpace(out) != want {
		t.Fatalf("host-network pod answered %q, want %q (the host's own name)", out, want)
	}
}

func TestPrivilegedReadinessGateHoldsPodUntilPatched(t *testing.T) {
	cl := Ensure(t)
	ns := namespace(t, cl)
	ctx := context.Background()
	spec := probePodSpec()
	spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: gateCondition}}
	pod, err := cl.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "gated", Namespace: ns}, Spec: spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Containers become ready, the pod must not.
	eventually(t, 60*time.Second, func() error {
		p, err := cl.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if conditionStatus(p, corev1.ContainersReady) != corev1.ConditionTrue {
			return fmt.Errorf("containers of %s not ready yet", p.Name)
		}
		return nil
	})
	// Give the kubelet several sync periods to (wrongly) mark the pod Ready.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		p, err := cl.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if podReady(p) {
			t.Fatalf("pod turned Ready while its readiness gate had no condition of ours: %+v", p.Status.Conditions)
		}
	}
	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":"True","reason":"Programmed","message":"smoke test","lastTransitionTime":%q}]}}`,
		gateCondition, time.Now().UTC().Format(time.RFC3339))
	if _, err := cl.Client.CoreV1().Pods(ns).Patch(ctx, pod.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		p, err := cl.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !podReady(p) {
			return fmt.Errorf("pod %s not Ready after its gate turned True: %+v", p.Name, p.Status.Conditions)
		}
		return nil
	})
}
