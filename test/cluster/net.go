package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// run executes a host tool and returns its combined output in the error.
func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// clusterPorts are every port a cluster component listens on (etcd, API server,
// kubelet, kube-proxy, controller-manager, scheduler), the NodePort range, and the
// ports strictgate's host-network agent and webhook use (metrics 9960-9969, 9443).
const clusterPorts = "2379-2381, 6443, 9443, 9960-9969, 10248-10260, 30000-32767"

// nftRuleset shields the cluster: no connection from an external interface reaches a
// cluster port; no pod packet is forwarded to an external interface; nothing for the
// pod or service CIDRs leaves through one even if routes were wrong.
func (c Config) nftRuleset() string {
	ext := make([]string, 0, len(c.ExternalInterfaces))
	for _, i := range c.ExternalInterfaces {
		ext = append(ext, fmt.Sprintf("%q", i))
	}
	// An empty set cannot be written inline; a name that cannot exist keeps it valid.
	if len(ext) == 0 {
		ext = append(ext, `"sg-none"`)
	}
	pods, svcs := c.PodCIDR.String(), c.ServiceCIDR.String()
	forward := fmt.Sprintf(`
		oifname @external ip saddr %[1]s counter drop
		oifname @external ip daddr { %[1]s, %[2]s } counter drop`, pods, svcs)
	output := fmt.Sprintf(`
		oifname @external ip daddr { %[1]s, %[2]s } counter drop`, pods, svcs)
	if c.PodCIDRv6 != nil && c.ServiceCIDRv6 != nil {
		pods6, svcs6 := c.PodCIDRv6.String(), c.ServiceCIDRv6.String()
		forward += fmt.Sprintf(`
		oifname @external ip6 saddr %[1]s counter drop
		oifname @external ip6 daddr { %[1]s, %[2]s } counter drop`, pods6, svcs6)
		output += fmt.Sprintf(`
		oifname @external ip6 daddr { %[1]s, %[2]s } counter drop`, pods6, svcs6)
	}
	// Pods reach the API server (and a host-network agent) at the node address of the
	// primary family, through the kubernetes Service; over the other family no pod
	// needs a cluster port.
	v6Input := `iifname != "lo" meta nfproto ipv6 tcp dport @ports counter drop`
	if c.PrimaryFamily() == "ipv6" {
		v6Input = fmt.Sprintf(`iifname != "lo" ip6 saddr != %s tcp dport @ports counter drop`, c.PodCIDRv6)
	}
	return fmt.Sprintf(`table inet %[1]s {
	set external { type ifname; elements = { %[2]s } }
	set ports { type inet_service; flags interval; elements = { %[3]s } }
	chain input {
		type filter hook input priority filter - 10; policy accept;
		iifname @external tcp dport @ports counter drop
		iifname @external udp dport 30000-32767 counter drop
		%[7]s
		iifname != "lo" ip saddr != %[4]s tcp dport @ports counter drop
	}
	chain forward {
		type filter hook forward priority filter - 10; policy accept;%[5]s
	}
	chain output {
		type filter hook output priority filter - 10; policy accept;%[6]s
	}
}
`, nftTable, strings.Join(ext, ", "), clusterPorts, pods, forward, output, v6Input)
}

// sinkRoutes are the routes setupNetwork adds: "ip" arguments after "route replace".
func (c Config) sinkRoutes() [][]string {
	r := [][]string{{"blackhole", c.PodCIDR.String()}, {c.ServiceCIDR.String(), "dev", sinkHostDev}}
	if c.DualStack() {
		r = append(r, []string{"blackhole", c.PodCIDRv6.String()}, []string{c.ServiceCIDRv6.String(), "dev", sinkHostDev})
	}
	return r
}

// setupNetwork puts the sinks and the shield in place; it runs before any component
// starts and is idempotent.
func (c Config) setupNetwork(ctx context.Context) error {
	// Replace the table as a whole, in one transaction (no moment without the shield),
	// so a second up never stacks rules: declaring it first makes the delete valid.
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(fmt.Sprintf("table inet %[1]s\ndelete table inet %[1]s\n", nftTable) + c.nftRuleset())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("install nftables shield: %w: %s", err, out)
	}
	for _, r := range c.sinkRoutes() {
		if r[0] != "blackhole" {
			continue
		}
		if _, err := run(ctx, "ip", append([]string{"route", "replace"}, r...)...); err != nil {
			return fmt.Errorf("route pod CIDR to blackhole: %w", err)
		}
	}
	if !exists("/run/netns/" + sinkNetns) {
		if _, err := run(ctx, "ip", "netns", "add", sinkNetns); err != nil {
			return fmt.Errorf("make service sink namespace: %w", err)
		}
	}
	if _, err := run(ctx, "ip", "link", "show", sinkHostDev); err != nil {
		if _, err := run(ctx, "ip", "link", "add", sinkHostDev, "type", "veth", "peer", "name", sinkPeerDev, "netns", sinkNetns); err != nil {
			return fmt.Errorf("make service sink veth: %w", err)
		}
	}
	if _, err := run(ctx, "ip", "link", "set", sinkHostDev, "up"); err != nil {
		return err
	}
	if _, err := run(ctx, "ip", "-n", sinkNetns, "link", "set", sinkPeerDev, "up"); err != nil {
		return err
	}
	for _, r := range c.sinkRoutes() {
		if r[0] == "blackhole" {
			continue
		}
		if _, err := run(ctx, "ip", append([]string{"route", "replace"}, r...)...); err != nil {
			return fmt.Errorf("route service CIDR to sink: %w", err)
		}
	}
	return nil
}

// teardownNetwork removes what setupNetwork and kube-proxy/the kubelet added. Missing
// pieces are fine; it returns the first real failure.
func (c Config) teardownNetwork(ctx context.Context) []error {
	var errs []error
	note := func(err error) {
		if err != nil && !strings.Contains(err.Error(), "No such") && !strings.Contains(err.Error(), "Cannot find") &&
			!strings.Contains(err.Error(), "does not exist") && !strings.Contains(err.Error(), "not found") {
			errs = append(errs, err)
		}
	}
	for _, t := range [][]string{{"inet", nftTable}, {"ip", "kube-proxy"}, {"ip6", "kube-proxy"}} {
		if _, err := run(ctx, "nft", "list", "table", t[0], t[1]); err == nil {
			_, err := run(ctx, "nft", "delete", "table", t[0], t[1])
			note(err)
		}
	}
	for _, r := range c.sinkRoutes() {
		prefix := r[0]
		if prefix == "blackhole" {
			prefix = r[1]
		}
		if out, _ := run(ctx, "ip", "route", "show", "exact", prefix); strings.TrimSpace(out) != "" {
			args := []string{"route", "del", prefix}
			if r[0] == "blackhole" {
				args = []string{"route", "del", "blackhole", prefix}
			}
			_, err := run(ctx, "ip", args...)
			note(err)
		}
	}
	if _, err := run(ctx, "ip", "link", "show", sinkHostDev); err == nil {
		_, err := run(ctx, "ip", "link", "del", sinkHostDev)
		note(err)
	}
	if exists("/run/netns/" + sinkNetns) {
		_, err := run(ctx, "ip", "netns", "del", sinkNetns)
		note(err)
	}
	errs = append(errs, cleanKubeIptables(ctx)...)
	return errs
}

// forwardingSysctls are turned on by ptp; Down turns them off again if they were off.
var forwardingSysctls = []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"}

func readSysctl(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// kubeIptablesChains lists the KUBE-* chains (the kubelet's and kube-proxy's canaries
// and hints) in every table, per tool.
func kubeIptablesChains(ctx context.Context) map[string][]string {
	found := map[string][]string{}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			continue
		}
		for _, table := range []string{"mangle", "nat", "filter"} {
			out, err := run(ctx, tool, "-w", "-t", table, "-S")
			if err != nil {
				continue
			}
			for _, line := range strings.Split(out, "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "-N" && strings.HasPrefix(f[1], "KUBE-") {
					found[tool+" "+table] = append(found[tool+" "+table], f[1])
				}
			}
		}
	}
	return found
}

func cleanKubeIptables(ctx context.Context) []error {
	var errs []error
	for key, chains := range kubeIptablesChains(ctx) {
		tool, table, _ := strings.Cut(key, " ")
		out, _ := run(ctx, tool, "-w", "-t", table, "-S")
		// Jumps into the chains first, then the chains themselves.
		for _, line := range strings.Split(out, "\n") {
			if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, "-j KUBE-") {
				continue
			}
			args := append([]string{"-w", "-t", table, "-D"}, splitRule(line[3:])...)
			if _, err := run(ctx, tool, args...); err != nil {
				errs = append(errs, err)
			}
		}
		for _, ch := range chains {
			run(ctx, tool, "-w", "-t", table, "-F", ch)
		}
		for _, ch := range chains {
			if _, err := run(ctx, tool, "-w", "-t", table, "-X", ch); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// splitRule splits an iptables -S rule, keeping quoted comments together.
func splitRule(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote := false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
		case r == ' ' && !inQuote:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// mountsUnder lists mount points below any of roots, deepest first.
func mountsUnder(roots ...string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mps []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		for _, r := range roots {
			if mp == r || strings.HasPrefix(mp, r+"/") {
				mps = append(mps, mp)
				break
			}
		}
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	return mps, sc.Err()
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// unmountAll detaches every mount below roots (pod volumes, rootfs overlays, netns
// bind mounts, shm), repeating while mounts stacked on mounts appear.
func unmountAll(roots ...string) error {
	for i := 0; i < 5; i++ {
		mps, err := mountsUnder(roots...)
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
	mps, _ := mountsUnder(roots...)
	if len(mps) > 0 {
		return fmt.Errorf("still mounted after unmounting: %s", strings.Join(mps, ", "))
	}
	return nil
}

// podCgroups lists the kubelet's pod cgroup directories in every hierarchy, deepest
// first so they can be removed in that order.
func podCgroups() []string {
	var dirs []string
	hier, _ := filepath.Glob("/sys/fs/cgroup/*")
	hier = append(hier, "/sys/fs/cgroup")
	for _, h := range hier {
		root := filepath.Join(h, "kubepods")
		if !exists(root) {
			continue
		}
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	return dirs
}

// nftTables lists the host's nftables tables as "family name".
func nftTables(ctx context.Context) []string {
	out, err := run(ctx, "nft", "list", "tables")
	if err != nil {
		return nil
	}
	var tables []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "table" {
			tables = append(tables, f[1]+" "+f[2])
		}
	}
	return tables
}

// removeEmptyIptablesTables deletes the iptables-nft tables (filter, nat, mangle)
// that the kubelet's and kube-proxy's iptables calls created, once they hold no rule:
// only those that were not there before the cluster started.
func removeEmptyIptablesTables(ctx context.Context, before []string) []error {
	had := map[string]bool{}
	for _, t := range before {
		had[t] = true
	}
	var errs []error
	for _, t := range nftTables(ctx) {
		fam, name, _ := strings.Cut(t, " ")
		if had[t] || (fam != "ip" && fam != "ip6") || (name != "filter" && name != "nat" && name != "mangle") {
			continue
		}
		out, err := run(ctx, "nft", "list", "table", fam, name)
		if err != nil {
			continue
		}
		empty := true
		for _, line := range strings.Split(out, "\n") {
			l := strings.TrimSpace(line)
			if l == "" || l == "}" || strings.HasPrefix(l, "table ") || strings.HasPrefix(l, "chain ") || strings.HasPrefix(l, "type ") {
				continue
			}
			empty = false
		}
		if empty {
			if _, err := run(ctx, "nft", "delete", "table", fam, name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}
