package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestPrivilegedDownLeavesNothingBehind tears the shared cluster down with pods
// running, checks that nothing it made is left on the host, and brings it back up so
// later tests (and people) still have it. It waits until no other test process uses
// the cluster.
func TestPrivilegedDownLeavesNothingBehind(t *testing.T) {
	cl := Ensure(t)
	cfg := cl.Config
	ns := namespace(t, cl)
	probeDeployment(t, cl, ns, "victim", 2)

	if err := flockWait(lockFile, syscall.LOCK_EX, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	// Back to shared afterwards unless this process holds the cluster exclusively.
	defer func() {
		if exclusiveErr == nil && !exclusiveHeld() {
			syscall.Flock(int(lockFile.Fd()), syscall.LOCK_SH)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	var rec preexisting
	b, err := os.ReadFile(filepath.Join(cfg.CacheDir, "cluster-preexisting.json"))
	if err != nil {
		t.Fatalf("read the pre-up record: %v", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	start := time.Now()
	if err := Down(ctx, cfg, &log); err != nil {
		t.Fatalf("down: %v\n%s", err, log.String())
	}
	t.Logf("down took %s", time.Since(start).Round(100*time.Millisecond))
	// Whatever happens next, give later tests a cluster again.
	defer func() {
		ensureOnce = sync.Once{}
		ensureOnce.Do(func() { ensureCluster, ensureErr = Up(ctx, cfg, os.Stderr) })
		if ensureErr != nil {
			t.Errorf("up again after down: %v", ensureErr)
		}
	}()

	bins, err := cfg.binaries()
	if err != nil {
		t.Fatal(err)
	}
	if pids, err := cfg.ourProcesses(bins); err != nil || len(pids) > 0 {
		t.Errorf("processes left: %v (%v)", pids, err)
	}
	if left := podCgroups(); len(left) > 0 {
		t.Errorf("pod cgroups left: %v", left)
	}
	if mps, err := mountsUnder(cfg.StateDir, cfg.RunDir, cfg.Dir); err != nil || len(mps) > 0 {
		t.Errorf("mounts left: %v (%v)", mps, err)
	}
	cidrs := []string{cfg.PodCIDR.String(), cfg.ServiceCIDR.String()}
	if cfg.DualStack() {
		cidrs = append(cidrs, cfg.PodCIDRv6.String(), cfg.ServiceCIDRv6.String())
	}
	for _, cidr := range cidrs {
		if out, _ := run(ctx, "ip", "route", "show", "root", cidr); strings.TrimSpace(out) != "" {
			t.Errorf("routes into %s left:\n%s", cidr, out)
		}
		if out, _ := run(ctx, "ip", "-o", "addr", "show", "to", cidr); strings.TrimSpace(out) != "" {
			t.Errorf("addresses in %s left:\n%s", cidr, out)
		}
	}
	if _, err := run(ctx, "ip", "link", "show", sinkHostDev); err == nil {
		t.Errorf("service sink %s left", sinkHostDev)
	}
	if out, _ := run(ctx, "ip", "netns", "list"); strings.Contains(out, sinkNetns) || strings.Contains(out, "cni-") {
		t.Errorf("network namespaces left:\n%s", out)
	}
	had := map[string]bool{}
	for _, tb := range rec.NftTables {
		had[tb] = true
	}
	for _, tb := range nftTables(ctx) {
		if tb == "inet "+nftTable || strings.HasSuffix(tb, " kube-proxy") {
			t.Errorf("nftables table %s left", tb)
		}
		fam, name, _ := strings.Cut(tb, " ")
		if (fam == "ip" || fam == "ip6") && (name == "filter" || name == "nat" || name == "mangle") && !had[tb] {
			t.Errorf("nftables table %s left (made by iptables calls of the kubelet or kube-proxy)", tb)
		}
	}
	for p, v := range rec.Sysctls {
		if got := readSysctl(p); v == "0" && got != "0" {
			t.Errorf("%s is %s, was %s before the cluster", p, got, v)
		}
	}
	if chains := kubeIptablesChains(ctx); len(chains) > 0 {
		t.Errorf("iptables chains left: %v", chains)
	}
	paths := []string{cfg.StateDir, cfg.RunDir, cfg.Dir, filepath.Join(cfg.CNIConfDir, cfg.CNIConfFile),
		filepath.Join(cfg.CacheDir, "cluster-preexisting.json"), "/sys/fs/bpf/strictgate"}
	for p, existed := range rec.Paths {
		if !existed && p != "/run/netns" && p != "/opt/cni" && p != "/opt/cni/bin" {
			paths = append(paths, p)
		}
	}
	for _, p := range paths {
		if exists(p) {
			t.Errorf("%s left", p)
		}
	}
	if links, _ := filepath.Glob("/var/log/containers/*"); len(links) > 0 {
		for _, l := range links {
			if target, _ := os.Readlink(l); strings.HasPrefix(target, cfg.StateDir) {
				t.Errorf("container log link %s left", l)
			}
		}
	}
	// A second down on nothing is fine too.
	if err := Down(ctx, cfg, &log); err != nil {
		t.Errorf("second down: %v", err)
	}
}
