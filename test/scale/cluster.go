// Package scale measures what strictgate's agents receive from the API server as a
// cluster grows (issue 11, docs/scale.md): a real kube-apiserver + etcd holds N pod
// objects over M simulated nodes and K NetworkPolicies, and the agent's watch and compile
// layer runs in-process for a few randomly chosen nodes, counting the bytes and objects
// each receives at initial sync and during a churn of pod creates and deletes, the heap
// it holds, and the time from a pod's IP appearing to its rules being computed on its
// node. `make scale` runs it at the size; TestScaleTiny runs a tiny
// configuration in `make test`.
package scale

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Config sizes one run. The defaults are issue 11's numbers.
type Config struct {
	Pods     int // pod objects at the start
	Nodes    int // simulated nodes the pods are spread over
	Policies int // NetworkPolicies
	Agents   int // nodes, chosen at random, whose watch/compile layer runs in-process
	// ChurnRate is pod lives per second cluster-wide: each creates one pod (scheduled,
	// then given an IP and Ready by the harness, as the kubelet would) and deletes one.
	ChurnRate     float64
	ChurnDuration time.Duration
	PodsPerNS     int   // pods per namespace
	Seed          int64 // node choice and pod placement
	Workers       int   // parallel writers while populating
}

// DefaultConfig returns issue 11's configuration.
func DefaultConfig() Config {
	return Config{
		Pods: 30000, Nodes: 1000, Policies: 3000, Agents: 50,
		ChurnRate: 50, ChurnDuration: 5 * time.Minute,
		PodsPerNS: 100, Seed: 1, Workers: 16,
	}
}

// Validate refuses configurations that cannot run.
func (c Config) Validate() error {
	switch {
	case c.Pods < 1, c.Nodes < 1, c.Agents < 1, c.PodsPerNS < 1, c.Workers < 1:
		return fmt.Errorf("pods (%d), nodes (%d), agents (%d), pods per namespace (%d) and workers (%d) must be positive",
			c.Pods, c.Nodes, c.Agents, c.PodsPerNS, c.Workers)
	case c.Agents > c.Nodes:
		return fmt.Errorf("agents (%d) cannot exceed nodes (%d)", c.Agents, c.Nodes)
	case c.Policies < 0, c.ChurnRate < 0, c.ChurnDuration < 0:
		return errors.New("policies, churn rate and churn duration must not be negative")
	}
	return nil
}

// appsPerNS is how many label groups ("app") a namespace's pods fall into; policies select
// and name them.
const appsPerNS = 10

func nodeName(i int) string { return fmt.Sprintf("node-%04d", i) }
func nsName(i int) string   { return fmt.Sprintf("scale-%04d", i) }

// cluster writes the simulated cluster's objects.
type cluster struct {
	cfg  Config
	cs   kubernetes.Interface
	rng  *rand.Rand
	mu   sync.Mutex // guards rng and live
	live []podRef   // pods that exist, for the churn's deletes
	next atomic.Int64
	nss  int
}

type podRef struct{ ns, name, node string }

func newCluster(rc *rest.Config, cfg Config) (*cluster, error) {
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = 5000, 5000
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	nss := (cfg.Pods + cfg.PodsPerNS - 1) / cfg.PodsPerNS
	return &cluster{cfg: cfg, cs: cs, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 2)), nss: nss}, nil
}

// podIP gives pod number n a unique address in 10.0.0.0/8 (the harness never reuses one).
func podIP(n int64) string {
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}).String()
}

// populate creates the namespaces, policies and pods, with parallel writers.
func (c *cluster) populate(ctx context.Context) error {
	for i := range c.nss {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName(i), Labels: map[string]string{"team": fmt.Sprintf("t%d", i%10)}}}
		if _, err := c.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	if err := parallel(ctx, c.cfg.Workers, c.cfg.Policies, func(i int) error {
		_, err := c.cs.NetworkingV1().NetworkPolicies(nsName(i%c.nss)).Create(ctx, policy(i, c.nss), metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("create policies: %w", err)
	}
	return parallel(ctx, c.cfg.Workers, c.cfg.Pods, func(i int) error {
		c.mu.Lock()
		node := nodeName(c.rng.IntN(c.cfg.Nodes))
		c.mu.Unlock()
		_, err := c.startPod(ctx, nsName(i%c.nss), node, nil)
		return err
	})
}

// startPod writes one pod's life up to Ready as the scheduler and kubelet would: create
// (bound), then status with the IP, then status Ready. before, when set, runs just before
// the IP is written; it gets the pod's name.
func (c *cluster) startPod(ctx context.Context, ns, node string, before func(name string)) (podRef, error) {
	n := c.next.Add(1)
	p := pod(n, ns, node)
	created, err := c.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return podRef{}, fmt.Errorf("create pod: %w", err)
	}
	created.Status = podStatus(n, false)
	if before != nil {
		before(created.Name)
	}
	up, err := c.cs.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return podRef{}, fmt.Errorf("pod IP: %w", err)
	}
	up.Status = podStatus(n, true)
	if _, err := c.cs.CoreV1().Pods(ns).UpdateStatus(ctx, up, metav1.UpdateOptions{}); err != nil {
		return podRef{}, fmt.Errorf("pod ready: %w", err)
	}
	r := podRef{ns: ns, name: p.Name, node: node}
	c.mu.Lock()
	c.live = append(c.live, r)
	c.mu.Unlock()
	return r, nil
}

// deleteRandom deletes one random live pod at once (grace period 0: no kubelet runs).
func (c *cluster) deleteRandom(ctx context.Context) error {
	c.mu.Lock()
	if len(c.live) == 0 {
		c.mu.Unlock()
		return nil
	}
	i := c.rng.IntN(len(c.live))
	r := c.live[i]
	c.live[i] = c.live[len(c.live)-1]
	c.live = c.live[:len(c.live)-1]
	c.mu.Unlock()
	err := c.cs.CoreV1().Pods(r.ns).Delete(ctx, r.name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func parallel(ctx context.Context, workers, n int, fn func(int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// pod is a typical Deployment pod as the API server stores it (docs/scale.md's measured
// shape): one container with two named ports, resources, probes, environment, a
// projected token volume, owner reference, and the labels policies select on.
func pod(n int64, ns, node string) *corev1.Pod {
	app := fmt.Sprintf("app-%d", n%appsPerNS)
	tru := true
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-7d9f8c6b5-%06d", app, n), Namespace: ns,
			Labels: map[string]string{"app": app, "pod-template-hash": "7d9f8c6b5", "tier": []string{"web", "api", "db"}[n%3]},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/restartedAt": "2026-11-30T10:00:00Z",
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-7d9f8c6b5",
				UID: "6c1e2c1d-3c7e-4c4e-9f0a-1b2c3d4e5f60", Controller: &tru, BlockOwnerDeletion: &tru,
			}},
		},
		Spec: corev1.PodSpec{
			NodeName:           node,
			ServiceAccountName: "default",
			Containers: []corev1.Container{{
				Name:  "main",
				Image: "registry.example.com/team/" + app + ":v1.42.7",
				Args:  []string{"--listen=:8080", "--metrics=:9090", "--log-format=json"},
				Ports: []corev1.ContainerPort{
					{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
					{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
				},
				Env: []corev1.EnvVar{
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
					{Name: "LOG_LEVEL", Value: "info"},
				},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 10},
				VolumeMounts:   []corev1.VolumeMount{{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: new(int64(3607))}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				},
			}}}},
		},
	}
}

// podStatus is what the kubelet reports: the IP, then Ready.
func podStatus(n int64, ready bool) corev1.PodStatus {
	now := metav1.Now()
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	ip := podIP(n)
	return corev1.PodStatus{
		Phase:  corev1.PodRunning,
		HostIP: "192.168.0.1", PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: "PodReadyToStartContainers", Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: st, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: st, LastTransitionTime: now},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "main", Ready: ready, Image: "registry.example.com/team/app:v1.42.7",
			ImageID:     "registry.example.com/team/app@sha256:4b825dc642cb6eb9a060e54bf8d69288fbee4904b825dc642cb6eb9a060e54b",
			ContainerID: fmt.Sprintf("containerd://%064x", n),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
}

// policy i: selects one app of its namespace; ingress from two apps of the namespace and
// from one app in the namespaces of one team, on a named port; egress to one app of the
// namespace. Broad enough that most pods are peers of some local pod.
func policy(i, nss int) *networkingv1.NetworkPolicy {
	app := func(k int) map[string]string { return map[string]string{"app": fmt.Sprintf("app-%d", k%appsPerNS)} }
	http := intstr.FromString("http")
	tcp := corev1.ProtocolTCP
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("np-%05d", i), Namespace: nsName(i % nss)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: app(i)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{
					{PodSelector: &metav1.LabelSelector{MatchLabels: app(i + 1)}},
					{PodSelector: &metav1.LabelSelector{MatchLabels: app(i + 2)}},
					{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", i%10)}},
						PodSelector:       &metav1.LabelSelector{MatchLabels: app(i + 3)},
					},
				},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &http}},
			}},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: app(i + 4)}}},
			}},
		},
	}
}
