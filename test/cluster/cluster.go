package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strictgate/strictgate/test/images"
)

// Cluster is a running one-node cluster.
type Cluster struct {
	Config Config
	// Kubeconfig is the cluster-admin kubeconfig (client certificate in system:masters).
	Kubeconfig string
	RESTConfig *rest.Config
	Client     kubernetes.Interface
	NodeName   string
	NodeIP     net.IP
	PodCIDR    *net.IPNet
	// ServiceCIDR holds every ClusterIP; the kubernetes Service has its first address.
	ServiceCIDR *net.IPNet
	// NodeIPv6, PodCIDRv6, ServiceCIDRv6 are set when the cluster is dual-stack.
	NodeIPv6      net.IP
	PodCIDRv6     *net.IPNet
	ServiceCIDRv6 *net.IPNet
	// Reused is true when Up found the cluster already running.
	Reused bool

	bins map[string]binary
}

// Images every cluster has imported.
const (
	ProbeImage = images.ProbeRef
	PauseImage = images.PauseRef
)

// componentOrder is the start order; Down stops in reverse.
var componentOrder = []string{"etcd", "containerd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

func (c Config) components(bins map[string]binary) map[string]component {
	cfgDir := filepath.Join(c.Dir, "config")
	svc := c.serviceCIDRs()
	kc := c.kubeconfig
	return map[string]component{
		"etcd": {name: "etcd", bin: bins["etcd"].path, args: []string{
			"--name=strictgate", "--data-dir=" + filepath.Join(c.StateDir, "etcd"),
			"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
			"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
			"--initial-cluster=strictgate=http://127.0.0.1:2380", "--listen-metrics-urls=http://127.0.0.1:2381",
			// A test cluster: losing the last writes on a machine crash is fine, slow fsyncs are not.
			"--unsafe-no-fsync=true", "--log-level=warn",
		}},
		"containerd": {name: "containerd", bin: bins["containerd"].path, args: []string{
			"--config=" + filepath.Join(cfgDir, "containerd.toml"), "--log-level=warn",
		}},
		"kube-apiserver": {name: "kube-apiserver", bin: bins["kube-apiserver"].path, args: []string{
			"--etcd-servers=http://127.0.0.1:2379",
			// Pods reach the API server through the kubernetes Service, which needs a
			// non-loopback endpoint: listen on all addresses, shielded by nftables.
			"--bind-address=0.0.0.0", fmt.Sprintf("--secure-port=%d", c.APIServerPort),
			"--advertise-address=" + c.primaryNodeIP().String(),
			"--service-cluster-ip-range=" + svc,
			"--client-ca-file=" + c.pki("ca.crt"),
			"--tls-cert-file=" + c.pki("apiserver.crt"), "--tls-private-key-file=" + c.pki("apiserver.key"),
			"--kubelet-client-certificate=" + c.pki("apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + c.pki("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority=" + c.pki("ca.crt"),
			"--kubelet-preferred-address-types=InternalIP",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + c.pki("sa.pub"),
			"--service-account-signing-key-file=" + c.pki("sa.key"),
			"--authorization-mode=Node,RBAC", "--anonymous-auth=false",
			"--enable-admission-plugins=NodeRestriction", "--allow-privileged=true",
			"--cert-dir=" + filepath.Join(c.RunDir, "apiserver"), "--profiling=false", "--v=1",
		}},
		"kube-controller-manager": {name: "kube-controller-manager", bin: bins["kube-controller-manager"].path, args: []string{
			"--kubeconfig=" + kc("kube-controller-manager"),
			"--authentication-kubeconfig=" + kc("kube-controller-manager"),
			"--authorization-kubeconfig=" + kc("kube-controller-manager"),
			"--client-ca-file=" + c.pki("ca.crt"),
			"--bind-address=127.0.0.1", "--leader-elect=false",
			"--service-account-private-key-file=" + c.pki("sa.key"), "--root-ca-file=" + c.pki("ca.crt"),
			"--cluster-signing-cert-file=" + c.pki("ca.crt"), "--cluster-signing-key-file=" + c.pki("ca.key"),
			"--use-service-account-credentials=true", "--service-cluster-ip-range=" + svc,
			"--cluster-cidr=" + c.podCIDRs(), "--allocate-node-cidrs=false",
			"--tls-cert-file=" + c.pki("kube-controller-manager-serving.crt"),
			"--tls-private-key-file=" + c.pki("kube-controller-manager-serving.key"),
			"--profiling=false", "--v=1",
		}},
		"kube-scheduler": {name: "kube-scheduler", bin: bins["kube-scheduler"].path, args: []string{
			"--kubeconfig=" + kc("kube-scheduler"),
			"--authentication-kubeconfig=" + kc("kube-scheduler"),
			"--authorization-kubeconfig=" + kc("kube-scheduler"),
			"--client-ca-file=" + c.pki("ca.crt"),
			"--bind-address=127.0.0.1", "--leader-elect=false",
			"--tls-cert-file=" + c.pki("kube-scheduler-serving.crt"),
			"--tls-private-key-file=" + c.pki("kube-scheduler-serving.key"),
			"--profiling=false", "--v=1",
		}},
		"kubelet": {name: "kubelet", bin: bins["kubelet"].path, args: []string{
			"--config=" + filepath.Join(cfgDir, "kubelet.yaml"), "--kubeconfig=" + kc("kubelet"),
			"--hostname-override=" + c.NodeName, "--node-ip=" + c.nodeIPs(),
			"--root-dir=" + filepath.Join(c.StateDir, "kubelet"),
			"--cert-dir=" + filepath.Join(c.StateDir, "kubelet", "pki"), "--v=1",
		}},
		"kube-proxy": {name: "kube-proxy", bin: bins["kube-proxy"].path, args: []string{
			"--config=" + filepath.Join(cfgDir, "kube-proxy.yaml"), "--v=1",
		}},
	}
}

// ensureBuilt builds the missing components with test/tools/build.sh.
func (c Config) ensureBuilt(ctx context.Context, bins map[string]binary, out io.Writer) error {
	var missing []string
	seen := map[string]bool{}
	for _, b := range bins {
		if !exists(b.path) && !seen[b.component] {
			seen[b.component] = true
			missing = append(missing, b.component)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	fmt.Fprintf(out, "cluster: building %s into %s (first time: ~15 minutes on 2 cores)\n", strings.Join(missing, " "), c.CacheDir)
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(c.ToolsDir, "build.sh"), missing...)
	cmd.Env = append(os.Environ(), "STRICTGATE_CACHE="+c.CacheDir)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s: %w", strings.Join(missing, " "), err)
	}
	fmt.Fprintf(out, "cluster: built in %s\n", time.Since(start).Round(time.Second))
	return nil
}

// Up starts the cluster, or returns the running one if it is healthy. Progress goes to
// out. A broken or half-started cluster is torn down and started afresh.
func Up(ctx context.Context, cfg Config, out io.Writer) (*Cluster, error) {
	if os.Geteuid() != 0 {
		return nil, errNotRoot
	}
	bins, err := cfg.binaries()
	if err != nil {
		return nil, err
	}
	if err := cfg.ensureBuilt(ctx, bins, out); err != nil {
		return nil, err
	}
	if statuses := cfg.status(ctx, bins); healthy(statuses) {
		cl, err := cfg.connect(bins)
		if err == nil {
			// Re-assert the sinks and the shield (idempotent, atomic): a reused cluster
			// gets this version's rules.
			if err := cfg.setupNetwork(ctx); err != nil {
				return nil, err
			}
			// And the images of this checkout (a second or two): tests may rely on a
			// newer probe than the one the cluster started with.
			// Several test processes may do this at once: each in a directory of its own.
			dir, err := os.MkdirTemp(cfg.Dir, "images-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(dir)
			imgs, err := buildImages(ctx, dir)
			if err != nil {
				return nil, err
			}
			for _, im := range imgs {
				if err := cfg.importImage(ctx, bins, im.Tarball); err != nil {
					return nil, err
				}
			}
			cl.Reused = true
			return cl, nil
		}
		fmt.Fprintf(out, "cluster: running but unusable (%v); restarting\n", err)
	} else if cfg.anythingLeft(ctx, bins) {
		fmt.Fprintf(out, "cluster: not healthy (%s); restarting\n", unhealthy(statuses))
	}
	if err := Down(ctx, cfg, io.Discard); err != nil {
		return nil, fmt.Errorf("clean up before start: %w", err)
	}
	start := time.Now()
	if err := cfg.up(ctx, bins, out); err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", err, filepath.Join(cfg.Dir, "logs"))
	}
	cl, err := cfg.connect(bins)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "cluster: up in %s\n", time.Since(start).Round(100*time.Millisecond))
	return cl, nil
}

func (c Config) up(ctx context.Context, bins map[string]binary, out io.Writer) error {
	for _, d := range []string{c.Dir, filepath.Join(c.Dir, "config"), filepath.Join(c.Dir, "logs"), c.StateDir, c.RunDir, c.CNIBinDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(c.primaryFamilyFile(), []byte(c.PrimaryFamily()+"\n"), 0o644); err != nil {
		return err
	}
	if err := c.recordPreexisting(); err != nil {
		return err
	}
	// The sinks and the shield come first: from here on nothing can leave.
	if err := c.setupNetwork(ctx); err != nil {
		return err
	}
	if err := c.writePKI(); err != nil {
		return err
	}
	if err := c.writeKubeconfigs(); err != nil {
		return err
	}
	for _, p := range []string{"ptp", "host-local", "loopback"} {
		if err := copyFile(bins[p].path, filepath.Join(c.CNIBinDir, p), 0o755); err != nil {
			return fmt.Errorf("install cni plugin %s: %w", p, err)
		}
	}
	if err := c.writeCNIConfig(nil); err != nil {
		return err
	}
	cfgDir := filepath.Join(c.Dir, "config")
	for name, body := range map[string]string{
		"containerd.toml": c.containerdConfig(bins),
		"kubelet.yaml":    c.kubeletConfig(),
		"kube-proxy.yaml": c.kubeProxyConfig(),
	} {
		if err := os.WriteFile(filepath.Join(cfgDir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	comps := c.components(bins)
	path := "PATH=" + filepath.Dir(bins["containerd"].path) + ":" + filepath.Dir(bins["runc"].path) +
		":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	startAll := func(names ...string) error {
		for _, n := range names {
			comp := comps[n]
			comp.env = append(comp.env, path)
			if err := c.start(comp); err != nil {
				return err
			}
		}
		return nil
	}
	step := func(what string, f func() error) error {
		t := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		fmt.Fprintf(out, "cluster: %-34s %s\n", what, time.Since(t).Round(100*time.Millisecond))
		return nil
	}
	hc, err := c.httpClient()
	if err != nil {
		return err
	}
	if err := startAll("etcd", "containerd"); err != nil {
		return err
	}
	// Images build while etcd and containerd come up.
	imgDir := filepath.Join(c.Dir, "images")
	var imgs []images.Image
	if err := step("build pause and probe images", func() (err error) {
		imgs, err = buildImages(ctx, imgDir)
		return err
	}); err != nil {
		return err
	}
	if err := step("etcd healthy", func() error {
		return c.waitFor(ctx, "etcd", bins, 60*time.Second, func() error { return httpOK(ctx, hc, "http://127.0.0.1:2379/health") })
	}); err != nil {
		return err
	}
	if err := startAll("kube-apiserver"); err != nil {
		return err
	}
	if err := step("containerd ready, images imported", func() error {
		if err := c.waitFor(ctx, "containerd", bins, 60*time.Second, func() error { return c.ctr(ctx, bins, "version") }); err != nil {
			return err
		}
		for _, im := range imgs {
			if err := c.importImage(ctx, bins, im.Tarball); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := step("kube-apiserver ready", func() error {
		return c.waitFor(ctx, "kube-apiserver", bins, 120*time.Second, func() error { return httpOK(ctx, hc, c.apiServerURL()+"/readyz") })
	}); err != nil {
		return err
	}
	if err := startAll("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"); err != nil {
		return err
	}
	cl, err := c.connect(bins)
	if err != nil {
		return err
	}
	if err := step("node Ready", func() error {
		return c.waitFor(ctx, "kubelet", bins, 120*time.Second, func() error { return nodeReady(ctx, cl.Client, c.NodeName) })
	}); err != nil {
		return err
	}
	return step("control plane and kube-proxy healthy", func() error {
		return c.waitFor(ctx, "kube-proxy", bins, 120*time.Second, func() error {
			if s := c.status(ctx, bins); !healthy(s) {
				return errors.New(unhealthy(s))
			}
			// Pods need their namespace's default ServiceAccount (made by the controller-manager).
			_, err := cl.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
			return err
		})
	})
}

func buildImages(ctx context.Context, dir string) ([]images.Image, error) {
	var imgs []images.Image
	for _, build := range []func(context.Context, string) (images.Image, error){images.Pause, images.Probe} {
		im, err := build(ctx, dir)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, im)
	}
	return imgs, nil
}

// waitFor polls check until it succeeds, the component dies or timeout passes.
func (c Config) waitFor(ctx context.Context, name string, bins map[string]binary, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = check(); err == nil {
			return nil
		}
		if c.pidOf(name, bins[name].path) == 0 {
			return fmt.Errorf("%s exited: see %s", name, c.logFile(name))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w (see %s)", name, timeout, err, c.logFile(name))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func nodeReady(ctx context.Context, cs kubernetes.Interface, name string) error {
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s not Ready: %s", name, cond.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", name)
}

// httpClient trusts the cluster CA and presents the admin certificate, for health checks.
func (c Config) httpClient() (*http.Client, error) {
	tlsCfg := &tls.Config{}
	if ca, err := os.ReadFile(c.pki("ca.crt")); err == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		tlsCfg.RootCAs = pool
	}
	if cert, err := tls.LoadX509KeyPair(c.pki("admin.crt"), c.pki("admin.key")); err == nil {
		tlsCfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}, nil
}

func httpOK(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// ComponentStatus is one line of `cluster status`.
type ComponentStatus struct {
	Name   string
	PID    int
	Health string // "ok" or why not
}

func healthy(s []ComponentStatus) bool {
	for _, c := range s {
		if c.Health != "ok" {
			return false
		}
	}
	return len(s) > 0
}

func unhealthy(s []ComponentStatus) string {
	var bad []string
	for _, c := range s {
		if c.Health != "ok" {
			bad = append(bad, c.Name+": "+c.Health)
		}
	}
	return strings.Join(bad, "; ")
}

// Status reports every component's process and health endpoint.
func Status(ctx context.Context, cfg Config) ([]ComponentStatus, error) {
	bins, err := cfg.binaries()
	if err != nil {
		return nil, err
	}
	return cfg.status(ctx, bins), nil
}

func (c Config) status(ctx context.Context, bins map[string]binary) []ComponentStatus {
	hc, _ := c.httpClient()
	checks := map[string]func() error{
		"etcd":                    func() error { return httpOK(ctx, hc, "http://127.0.0.1:2379/health") },
		"containerd":              func() error { return c.ctr(ctx, bins, "version") },
		"kube-apiserver":          func() error { return httpOK(ctx, hc, c.apiServerURL()+"/readyz") },
		"kube-controller-manager": func() error { return httpOK(ctx, hc, "https://127.0.0.1:10257/healthz") },
		"kube-scheduler":          func() error { return httpOK(ctx, hc, "https://127.0.0.1:10259/healthz") },
		"kubelet":                 func() error { return httpOK(ctx, hc, "http://127.0.0.1:10248/healthz") },
		"kube-proxy":              func() error { return httpOK(ctx, hc, "http://127.0.0.1:10256/healthz") },
	}
	var out []ComponentStatus
	for _, name := range componentOrder {
		s := ComponentStatus{Name: name, PID: c.pidOf(name, bins[name].path)}
		switch {
		case s.PID == 0:
			s.Health = "not running"
		default:
			if err := checks[name](); err != nil {
				s.Health = err.Error()
			} else {
				s.Health = "ok"
			}
		}
		out = append(out, s)
	}
	// A cluster started with the other primary family is not the one asked for: report
	// it unhealthy, so Up (and Ensure, under the exclusive lock) starts it afresh.
	if got := c.runningPrimaryFamily(); got != c.PrimaryFamily() {
		out = append(out, ComponentStatus{Name: "primary-family", Health: fmt.Sprintf("the cluster runs with %s primary; this configuration wants %s", got, c.PrimaryFamily())})
	}
	return out
}

func (c Config) primaryFamilyFile() string { return filepath.Join(c.Dir, "primary-family") }

// runningPrimaryFamily is the primary family the cluster was last started with; a
// cluster started before the file existed is IPv4-primary.
func (c Config) runningPrimaryFamily() string {
	b, err := os.ReadFile(c.primaryFamilyFile())
	if err != nil {
		return "ipv4"
	}
	return strings.TrimSpace(string(b))
}

// anythingLeft tells whether a previous cluster left processes or state behind.
func (c Config) anythingLeft(ctx context.Context, bins map[string]binary) bool {
	if pids, _ := c.ourProcesses(bins); len(pids) > 0 {
		return true
	}
	return exists(c.StateDir) || exists(c.RunDir) || exists(filepath.Join(c.CNIConfDir, c.CNIConfFile))
}

func (c Config) connect(bins map[string]binary) (*Cluster, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig())
	if err != nil {
		return nil, fmt.Errorf("load admin kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 50, 100
	// Inline the PEM data: client-go caches TLS transports by config, and a cluster
	// started again has a new CA behind the same file names.
	for _, f := range []struct {
		file *string
		data *[]byte
	}{{&rc.CAFile, &rc.CAData}, {&rc.CertFile, &rc.CertData}, {&rc.KeyFile, &rc.KeyData}} {
		if *f.file == "" {
			continue
		}
		b, err := os.ReadFile(*f.file)
		if err != nil {
			return nil, fmt.Errorf("load admin credentials: %w", err)
		}
		*f.data, *f.file = b, ""
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &Cluster{
		Config: c, Kubeconfig: c.AdminKubeconfig(), RESTConfig: rc, Client: cs,
		NodeName: c.NodeName, NodeIP: c.NodeIP, PodCIDR: c.PodCIDR, ServiceCIDR: c.ServiceCIDR,
		NodeIPv6: c.NodeIPv6, PodCIDRv6: c.PodCIDRv6, ServiceCIDRv6: c.ServiceCIDRv6,
		bins: bins,
	}, nil
}

func (c Config) ctr(ctx context.Context, bins map[string]binary, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_, err := run(ctx, bins["ctr"].path, append([]string{"--address", c.containerdSocket(), "--namespace", "k8s.io"}, args...)...)
	return err
}

func (c Config) importImage(ctx context.Context, bins map[string]binary, tarball string) error {
	if err := c.ctr(ctx, bins, "images", "import", "--no-unpack=false", tarball); err != nil {
		return fmt.Errorf("import image %s: %w", tarball, err)
	}
	return nil
}

// ImportImage imports an image tarball (docker-archive or OCI) into the node's
// containerd, where the kubelet finds it (use imagePullPolicy Never or IfNotPresent).
func (cl *Cluster) ImportImage(ctx context.Context, tarball string) error {
	return cl.Config.importImage(ctx, cl.bins, tarball)
}

// WriteCNIConfig rewrites the cluster's conflist with chained plugins after ptp (e.g.
// {"type": "strictgate"}); containerd picks it up for the next pod. Put the plugin's
// binary into Config.CNIBinDir or one of Config.ExtraCNIBinDirs.
func (cl *Cluster) WriteCNIConfig(chained ...map[string]any) error {
	return cl.Config.writeCNIConfig(chained)
}

// CNIConfPath is the conflist's path.
func (cl *Cluster) CNIConfPath() string {
	return filepath.Join(cl.Config.CNIConfDir, cl.Config.CNIConfFile)
}

// Kubectl returns the path of a kubectl of the cluster's version.
func (cl *Cluster) Kubectl() string { return cl.bins["kubectl"].path }

// Ctr runs containerd's ctr against the node's containerd (namespace k8s.io).
func (cl *Cluster) Ctr(ctx context.Context, args ...string) error {
	return cl.Config.ctr(ctx, cl.bins, args...)
}

// preexisting is what the host had before the first up, so Down removes only what
// the cluster created among paths shared with the rest of the machine.
type preexisting struct {
	Paths map[string]bool `json:"paths"`
	// NftTables are "family name" of the tables there were, e.g. "ip filter".
	NftTables []string `json:"nftTables"`
	// Sysctls are the forwarding switches' values.
	Sysctls map[string]string `json:"sysctls"`
}

// sharedPaths are created by components outside the cluster's own directories:
// containerd's shim sockets, the kubelet's device-plugin socket and container log
// links, the CNI conf dir, ip netns' dir. ownedIfCreated ones hold only sockets of our
// components when they did not exist before: removed whole, not only when empty.
var sharedPaths = []string{"/run/containerd", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/etc/cni/net.d", "/etc/cni", "/opt/cni/bin", "/opt/cni", "/var/lib/cni", "/run/netns"}

var ownedIfCreated = map[string]bool{"/run/containerd": true, "/var/lib/kubelet": true}

func (c Config) recordPreexisting() error {
	p := filepath.Join(c.CacheDir, "cluster-preexisting.json")
	if exists(p) {
		return nil
	}
	rec := preexisting{Paths: map[string]bool{}}
	for _, s := range sharedPaths {
		rec.Paths[s] = exists(s)
	}
	rec.NftTables = nftTables(context.Background())
	rec.Sysctls = map[string]string{}
	for _, p := range forwardingSysctls {
		rec.Sysctls[p] = readSysctl(p)
	}
	b, _ := json.Marshal(rec)
	return os.WriteFile(p, b, 0o644)
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeAtomic(dst, b, mode)
}
