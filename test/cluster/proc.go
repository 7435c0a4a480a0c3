package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// component is one long-running process of the cluster.
type component struct {
	name string
	bin  string
	args []string
	env  []string
}

func (c Config) pidFile(name string) string { return filepath.Join(c.RunDir, "pids", name+".pid") }

// start runs comp detached: its own session (so the terminal's or test's signals never
// reach it), stdin from /dev/null, output appended to its log file, and its pid in a
// file for status and down.
func (c Config) start(comp component) error {
	if err := os.MkdirAll(filepath.Dir(c.pidFile(comp.name)), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.logFile(comp.name)), 0o755); err != nil {
		return err
	}
	log, err := os.OpenFile(c.logFile(comp.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	fmt.Fprintf(log, "\n==== %s starting %s %s\n", time.Now().Format(time.RFC3339), comp.bin, strings.Join(comp.args, " "))
	cmd := exec.Command(comp.bin, comp.args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), comp.env...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", comp.name, err)
	}
	pid := cmd.Process.Pid
	// Reap it if it dies while we are still around; once we exit, init does.
	go cmd.Wait()
	return os.WriteFile(c.pidFile(comp.name), []byte(strconv.Itoa(pid)), 0o644)
}

// pidOf returns the running pid of a component, or 0. A pid file whose process is gone
// or is now another program does not count.
func (c Config) pidOf(name, bin string) int {
	b, err := os.ReadFile(c.pidFile(name))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || exe != bin {
		return 0
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// A zombie has exited: its parent just has not reaped it yet.
		if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return 0
		}
	}
	return pid
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs.
func stopPIDs(ctx context.Context, pids []int, grace time.Duration) {
	if len(pids) == 0 {
		return
	}
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		alive := false
		for _, p := range pids {
			if processAlive(p) {
				alive = true
			}
		}
		if !alive {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
	for i := 0; i < 50; i++ {
		alive := false
		for _, p := range pids {
			if processAlive(p) {
				alive = true
			}
		}
		if !alive {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func processAlive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(st)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z"
}

// ourProcesses finds every process the cluster made: a cluster binary whose command
// line points into the cluster's directories (the same binaries also run under envtest
// for other tests, which must be left alone), or any process in a pod cgroup.
func (c Config) ourProcesses(bins map[string]binary) ([]int, error) {
	exes := map[string]bool{}
	for _, b := range bins {
		exes[b.path] = true
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || !processAlive(pid) {
			continue
		}
		if c.inPodCgroup(pid) {
			pids = append(pids, pid)
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || !exes[exe] {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cl := string(cmdline)
		if strings.Contains(cl, c.RunDir) || strings.Contains(cl, c.StateDir) || strings.Contains(cl, c.Dir) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// inPodCgroup tells whether pid runs in a cgroup the kubelet made for pods.
func (c Config) inPodCgroup(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && strings.HasPrefix(parts[2], "/kubepods") {
			return true
		}
	}
	return false
}

var errNotRoot = errors.New("the one-node cluster needs root (network namespaces, routes, nftables, containers)")
