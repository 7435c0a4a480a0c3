package scale

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// Result is one mode's measurements; per-agent figures are means over the agents.
type Result struct {
	Mode   Mode
	Agents int
	// SyncTime is from starting the agents to the last one having built its compiler.
	SyncTime      time.Duration
	Sync, Churn   Counts // per agent
	ChurnSeconds  float64
	LocalCompiled int   // local pods with rules, summed over agents, after sync
	HeapPerAgent  int64 // heap in use after sync, above the baseline, divided by agents
	RSS           int64 // the harness process's RSS after sync (all agents)
	Latency       []time.Duration
	Missed        int     // local churn pods whose rules never appeared
	APICPUSync    float64 // kube-apiserver CPU seconds during the agents' sync
	APICPUChurn   float64 // kube-apiserver CPU seconds during the churn
}

// Percentile returns the p-th percentile (0–100) of the latencies.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latency) == 0 {
		return 0
	}
	l := slices.Clone(r.Latency)
	slices.Sort(l)
	i := int(float64(len(l)-1) * p / 100)
	return l[i]
}

// Harness holds a populated cluster; Measure runs one mode against it.
type Harness struct {
	cfg Config
	rc  *rest.Config
	c   *cluster
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// New validates cfg and populates the cluster behind rc.
func New(ctx context.Context, rc *rest.Config, cfg Config, logf func(string, ...any)) (*Harness, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c, err := newCluster(rc, cfg)
	if err != nil {
		return nil, err
	}
	h := &Harness{cfg: cfg, rc: rc, c: c, Logf: logf}
	start := time.Now()
	if err := c.populate(ctx); err != nil {
		return nil, err
	}
	logf("populated %d pods in %d namespaces over %d nodes, %d policies in %s", cfg.Pods, c.nss, cfg.Nodes, cfg.Policies, time.Since(start).Round(time.Second))
	return h, nil
}

// Measure starts cfg.Agents watchers of the given mode on random nodes, measures their
// initial sync, runs the churn, measures it, and stops them.
func (h *Harness) Measure(ctx context.Context, mode Mode) (Result, error) {
	res := Result{Mode: mode, Agents: h.cfg.Agents}
	h.c.mu.Lock()
	nodes := h.c.rng.Perm(h.cfg.Nodes)[:h.cfg.Agents]
	h.c.mu.Unlock()
	base := heapInUse()
	cpu0, err := h.apiCPU(ctx)
	if err != nil {
		return res, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ws := map[string]*watcher{}
	for _, n := range nodes {
		w, err := newWatcher(h.rc, nodeName(n), mode)
		if err != nil {
			return res, err
		}
		ws[w.node] = w
	}
	defer func() {
		cancel()
		for _, w := range ws {
			w.stop()
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(ws))
	for _, w := range ws {
		wg.Go(func() {
			if err := w.start(wctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	res.SyncTime = time.Since(start)
	cpu1, err := h.apiCPU(ctx)
	if err != nil {
		return res, err
	}
	res.APICPUSync = cpu1 - cpu0
	atSync := map[string]Counts{}
	for n, w := range ws {
		atSync[n] = w.counts()
		res.Sync = add(res.Sync, atSync[n])
		res.LocalCompiled += w.compiled()
	}
	res.Sync = div(res.Sync, len(ws))
	res.HeapPerAgent = (heapInUse() - base) / int64(len(ws))
	res.RSS = rss()
	h.Logf("%s: %d agents synced in %s: %d KB, %d objects per agent", mode, len(ws), res.SyncTime.Round(time.Millisecond), res.Sync.Bytes>>10, res.Sync.Objects)

	expected, err := h.churn(ctx, ws)
	if err != nil {
		return res, err
	}
	// Let the last events arrive: the agents' watches lag the writes by milliseconds.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && pending(ws) > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	cpu2, err := h.apiCPU(ctx)
	if err != nil {
		return res, err
	}
	res.APICPUChurn = cpu2 - cpu1
	res.ChurnSeconds = h.cfg.ChurnDuration.Seconds()
	for n, w := range ws {
		res.Churn = add(res.Churn, w.counts().sub(atSync[n]))
		w.mu.Lock()
		res.Latency = append(res.Latency, w.lat...)
		res.Missed += len(w.ipAt)
		w.mu.Unlock()
	}
	res.Churn = div(res.Churn, len(ws))
	if got := len(res.Latency) + res.Missed; got != expected {
		return res, fmt.Errorf("%d local churn pods expected, %d registered", expected, got)
	}
	h.Logf("%s: churn %s: %d KB, %d objects per agent; latency p50 %s p99 %s (%d samples, %d missed)", mode, h.cfg.ChurnDuration,
		res.Churn.Bytes>>10, res.Churn.Objects, res.Percentile(50), res.Percentile(99), len(res.Latency), res.Missed)
	return res, nil
}

func pending(ws map[string]*watcher) int {
	n := 0
	for _, w := range ws {
		w.mu.Lock()
		n += len(w.ipAt)
		w.mu.Unlock()
	}
	return n
}

// churn runs ChurnRate pod lives per second for ChurnDuration: each tick creates a pod on a
// random node and deletes a random one. It returns how many created pods landed on a
// watched node.
func (h *Harness) churn(ctx context.Context, ws map[string]*watcher) (int, error) {
	if h.cfg.ChurnRate == 0 || h.cfg.ChurnDuration == 0 {
		return 0, nil
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / h.cfg.ChurnRate))
	defer tick.Stop()
	end := time.After(h.cfg.ChurnDuration)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	expected := 0
	sem := make(chan struct{}, 64) // writes in flight; a slow API server delays the churn rather than piling up
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-tick.C:
		}
		sem <- struct{}{}
		h.c.mu.Lock()
		node := nodeName(h.c.rng.IntN(h.cfg.Nodes))
		ns := nsName(h.c.rng.IntN(h.c.nss))
		h.c.mu.Unlock()
		w := ws[node]
		if w != nil {
			expected++
		}
		wg.Go(func() {
			defer func() { <-sem }()
			var before func(string)
			if w != nil {
				before = func(name string) { w.expect(types.NamespacedName{Namespace: ns, Name: name}, time.Now()) }
			}
			_, err := h.c.startPod(ctx, ns, node, before)
			if err == nil {
				err = h.c.deleteRandom(ctx)
			}
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return expected, ctx.Err()
}

// apiCPU reads kube-apiserver's process_cpu_seconds_total from its /metrics.
func (h *Harness) apiCPU(ctx context.Context) (float64, error) {
	raw, err := h.c.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("kube-apiserver /metrics: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("kube-apiserver /metrics has no process_cpu_seconds_total")
}

func add(a, b Counts) Counts {
	return Counts{a.Bytes + b.Bytes, a.Objects + b.Objects, a.FullPods + b.FullPods, a.ForeignPod + b.ForeignPod}
}

func div(a Counts, n int) Counts {
	d := int64(n)
	return Counts{a.Bytes / d, a.Objects / d, a.FullPods / d, a.ForeignPod / d}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// rss reads this process's resident set size from /proc.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// LivePods counts the pods the API server holds in the harness's namespaces.
func (h *Harness) LivePods(ctx context.Context) (int, error) {
	l, err := h.c.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	return len(l.Items), nil
}
