package gate_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	k8stesting "k8s.io/client-go/testing"

	"github.com/strictgate/strictgate/agent/gate"
	"github.com/strictgate/strictgate/internal/contract"
	"github.com/strictgate/strictgate/test/controlplane"
)

// countingPods counts status patches sent to the API server.
type countingPods struct {
	gate.PodsGetter
	patches atomic.Int32
}

func (c *countingPods) Pods(ns string) corev1client.PodInterface {
	return countingPodInterface{c.PodsGetter.Pods(ns), c}
}

type countingPodInterface struct {
	corev1client.PodInterface
	c *countingPods
}

func (p countingPodInterface) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*corev1.Pod, error) {
	p.c.patches.Add(1)
	return p.PodInterface.Patch(ctx, name, pt, data, opts, sub...)
}

func newPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: gate.ConditionType}},
			Containers:     []corev1.Container{{Name: "c", Image: "pause"}},
		},
	}
}

var (
	programmed = gate.Condition{Status: corev1.ConditionTrue, Reason: contract.ReasonProgrammed, Message: "policies default/a (generation 1)"}
	failed     = gate.Condition{Status: corev1.ConditionFalse, Reason: contract.ReasonProgrammingFailed, Message: "rules exceed capacity"}
)

func TestSetOnRealAPIServer(t *testing.T) {
	cfg := controlplane.Start(t, nil)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	pods := cs.CoreV1().Pods("default")

	counter := &countingPods{PodsGetter: cs.CoreV1()}
	p := gate.New(counter)

	create := func(t *testing.T, name string) *corev1.Pod {
		t.Helper()
		pod, err := pods.Create(ctx, newPod(name), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return pod
	}
	get := func(t *testing.T, name string) *corev1.Pod {
		t.Helper()
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return pod
	}

	t.Run("patches only on change", func(t *testing.T) {
		pod := create(t, "once")
		counter.patches.Store(0)
		changed, err := p.Set(ctx, pod, programmed)
		if err != nil || !changed {
			t.Fatalf("first Set = %v, %v; want changed", changed, err)
		}
		pod = get(t, "once")
		c, ok := gate.Default.Current(pod)
		if !ok || c.Status != corev1.ConditionTrue || c.Reason != contract.ReasonProgrammed || c.Message != programmed.Message || c.LastTransitionTime.IsZero() {
			t.Fatalf("condition after Set = %+v (present %v)", c, ok)
		}
		rv := pod.ResourceVersion
		changed, err = p.Set(ctx, pod, programmed)
		if err != nil || changed {
			t.Fatalf("second Set = %v, %v; want unchanged", changed, err)
		}
		if n := counter.patches.Load(); n != 1 {
			t.Fatalf("%d patches sent, want 1", n)
		}
		if get(t, "once").ResourceVersion != rv {
			t.Fatalf("an unchanged condition rewrote the pod")
		}
		// A status flip moves lastTransitionTime; a message change alone does not.
		p.Now = func() time.Time { return time.Now().Add(time.Hour) }
		defer func() { p.Now = time.Now }()
		if _, err := p.Set(ctx, get(t, "once"), failed); err != nil {
			t.Fatal(err)
		}
		c2, _ := gate.Default.Current(get(t, "once"))
		if c2.Status != corev1.ConditionFalse || !c2.LastTransitionTime.After(c.LastTransitionTime.Time) {
			t.Fatalf("after flip to False: %+v (was %+v)", c2, c)
		}
		msg := failed
		msg.Message = "other"
		if _, err := p.Set(ctx, get(t, "once"), msg); err != nil {
			t.Fatal(err)
		}
		c3, _ := gate.Default.Current(get(t, "once"))
		if c3.Message != "other" || !c3.LastTransitionTime.Equal(&c2.LastTransitionTime) {
			t.Fatalf("message change moved lastTransitionTime: %+v vs %+v", c3, c2)
		}
	})

	t.Run("keeps other conditions", func(t *testing.T) {
		pod := create(t, "others")
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
		pod, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Set(ctx, pod, programmed); err != nil {
			t.Fatal(err)
		}
		pod = get(t, "others")
		if len(pod.Status.Conditions) != 2 {
			t.Fatalf("conditions = %+v, want PodScheduled and ours", pod.Status.Conditions)
		}
	})

	t.Run("retries on conflict from a stale copy", func(t *testing.T) {
		stale := create(t, "stale")
		// Someone else (the kubelet) writes status after our copy was taken.
		fresh := stale.DeepCopy()
		fresh.Status.Phase = corev1.PodRunning
		if _, err := pods.UpdateStatus(ctx, fresh, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		counter.patches.Store(0)
		changed, err := p.Set(ctx, stale, programmed)
		if err != nil || !changed {
			t.Fatalf("Set from stale copy = %v, %v", changed, err)
		}
		if n := counter.patches.Load(); n != 2 {
			t.Fatalf("%d patches, want 2 (one conflict, one retry)", n)
		}
		got := get(t, "stale")
		if !gate.Default.Satisfied(got, programmed) || got.Status.Phase != corev1.PodRunning {
			t.Fatalf("after retry: phase %s, conditions %+v", got.Status.Phase, got.Status.Conditions)
		}
	})

	t.Run("never writes to a namesake with another UID", func(t *testing.T) {
		old := create(t, "reborn")
		if err := pods.Delete(ctx, "reborn", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		create(t, "reborn")
		_, err := p.Set(ctx, old, programmed)
		if !errors.Is(err, gate.ErrPodGone) {
			t.Fatalf("Set for the old UID = %v, want ErrPodGone", err)
		}
		if _, ok := gate.Default.Current(get(t, "reborn")); ok {
			t.Fatalf("the new pod got the old pod's condition")
		}
	})

	t.Run("deleted pod", func(t *testing.T) {
		pod := create(t, "gone")
		if err := pods.Delete(ctx, "gone", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Set(ctx, pod, programmed); !errors.Is(err, gate.ErrPodGone) {
			t.Fatalf("Set on deleted pod = %v, want ErrPodGone", err)
		}
	})
}

// TestSetGivesUpOnEndlessConflicts uses a fake client only to force conflicts forever,
// which the real API server cannot be made to do on demand.
func TestSetGivesUpOnEndlessConflicts(t *testing.T) {
	pod := newPod("p")
	pod.UID = "u1"
	cs := fake.NewClientset(pod)
	var n int
	cs.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		n++
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "p", errors.New("stale"))
	})
	p := gate.New(cs.CoreV1())
	p.Backoff.Duration = time.Millisecond
	changed, err := p.Set(context.Background(), pod, programmed)
	if changed || !apierrors.IsConflict(err) {
		t.Fatalf("Set = %v, %v; want a conflict error", changed, err)
	}
	if n != p.Backoff.Steps {
		t.Fatalf("%d patch attempts, want %d", n, p.Backoff.Steps)
	}
}
