package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Down stops the cluster and removes everything it made: processes (components,
// shims, containers), mounts, network namespaces, routes, nftables tables and KUBE-*
// iptables chains, pod cgroups, CNI and containerd state, bpffs pins of strictgate, and
// the cluster's directories. It is safe to run when nothing is up.
func Down(ctx context.Context, cfg Config, out io.Writer) error {
	if os.Geteuid() != 0 {
		return errNotRoot
	}
	bins, err := cfg.binaries()
	if err != nil {
		return err
	}
	var errs []error
	// Stop the node first so nothing restarts pods while they are killed, then the rest.
	for _, name := range slices.Backward(componentOrder) {
		if name == "containerd" {
			continue // after the pods: a live containerd keeps shims calm while they die
		}
		if pid := cfg.pidOf(name, bins[name].path); pid != 0 {
			fmt.Fprintf(out, "cluster: stopping %s (pid %d)\n", name, pid)
			stopPIDs(ctx, []int{pid}, 10*time.Second)
		}
		if name == "kubelet" {
			killPods(ctx, cfg, bins)
			if pid := cfg.pidOf("containerd", bins["containerd"].path); pid != 0 {
				fmt.Fprintf(out, "cluster: stopping containerd (pid %d)\n", pid)
				stopPIDs(ctx, []int{pid}, 10*time.Second)
			}
		}
	}
	// Whatever is left (shims, orphans of an earlier run whose pid files are gone).
	if pids, _ := cfg.ourProcesses(bins); len(pids) > 0 {
		fmt.Fprintf(out, "cluster: killing %d leftover processes\n", len(pids))
		stopPIDs(ctx, pids, 3*time.Second)
	}
	if pids, _ := cfg.ourProcesses(bins); len(pids) > 0 {
		errs = append(errs, fmt.Errorf("processes still running: %v", pids))
	}
	for _, d := range podCgroups() {
		os.Remove(d)
	}
	if left := podCgroups(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("pod cgroups left: %s", strings.Join(left, ", ")))
	}
	if err := unmountAll(cfg.StateDir, cfg.RunDir); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, cfg.teardownNetwork(ctx)...)
	errs = append(errs, cfg.removeFiles(ctx)...)
	if len(errs) == 0 {
		fmt.Fprintln(out, "cluster: down, nothing left behind")
	}
	return errors.Join(errs...)
}

// killPods kills every process in a pod cgroup: the containers and their sandboxes.
// Their network namespaces, veths and /32 routes go with the netns mounts.
func killPods(ctx context.Context, cfg Config, bins map[string]binary) {
	var pids []int
	all, _ := cfg.ourProcesses(bins)
	for _, p := range all {
		if cfg.inPodCgroup(p) {
			pids = append(pids, p)
		}
	}
	stopPIDs(ctx, pids, 5*time.Second)
}

// removeFiles removes the cluster's directories and what its components left in
// places shared with the rest of the machine.
func (c Config) removeFiles(ctx context.Context) []error {
	var errs []error
	rm := func(p string) {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	rm(filepath.Join(c.CNIConfDir, c.CNIConfFile))
	rm(c.StateDir)
	rm(c.RunDir)
	rm(c.Dir)
	// Pins of the strictgate agent when it ran on this cluster.
	pins, _ := filepath.Glob("/sys/fs/bpf/strictgate-cluster*")
	pins = append(pins, "/sys/fs/bpf/strictgate")
	for _, p := range pins {
		if exists(p) {
			rm(p)
		}
	}
	// The kubelet links container logs in /var/log/containers (fixed path) to its
	// pod logs dir; containerd keeps shim sockets in /run/containerd/s; libcni caches
	// results in /var/lib/cni.
	if links, _ := filepath.Glob("/var/log/containers/*"); len(links) > 0 {
		for _, l := range links {
			if t, err := os.Readlink(l); err == nil && strings.HasPrefix(t, c.StateDir) {
				rm(l)
			}
		}
	}
	cache, _ := filepath.Glob("/var/lib/cni/results/" + cniNetName + "-*")
	// containerd's go-cni names every pod's lo network cni-loopback.
	lo, _ := filepath.Glob("/var/lib/cni/results/cni-loopback-*")
	for _, p := range append(cache, lo...) {
		rm(p)
	}
	rec := preexisting{Paths: map[string]bool{}}
	recPath := filepath.Join(c.CacheDir, "cluster-preexisting.json")
	if b, err := os.ReadFile(recPath); err == nil {
		json.Unmarshal(b, &rec)
	}
	for _, p := range sharedPaths {
		if had, known := rec.Paths[p]; known && !had && exists(p) {
			if ownedIfCreated[p] {
				rm(p)
				continue
			}
			// Remove only if empty: someone else may have put things there meanwhile.
			removeEmptyTree(p)
		}
	}
	errs = append(errs, removeEmptyIptablesTables(ctx, rec.NftTables)...)
	// With the shield gone, a host that forwards would route between its interfaces.
	for p, v := range rec.Sysctls {
		if v == "0" && readSysctl(p) != "0" {
			if err := os.WriteFile(p, []byte("0"), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restore %s: %w", p, err))
			}
		}
	}
	rm(recPath)
	return errs
}

// removeEmptyTree removes p and its subdirectories if they hold no files.
func removeEmptyTree(p string) {
	ents, err := os.ReadDir(p)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() {
			removeEmptyTree(filepath.Join(p, e.Name()))
		}
	}
	os.Remove(p)
}
