package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/strictgate/strictgate/test/images"
)

// writeKubeconfigs writes one kubeconfig per identity that talks to the API server,
// with paths to the certificate files (so that tools and people can read them).
func (c Config) writeKubeconfigs() error {
	for _, user := range []string{"admin", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet"} {
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["strictgate"] = &clientcmdapi.Cluster{Server: c.apiServerURL(), CertificateAuthority: c.pki("ca.crt")}
		cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificate: c.pki(user + ".crt"), ClientKey: c.pki(user + ".key")}
		cfg.Contexts["strictgate"] = &clientcmdapi.Context{Cluster: "strictgate", AuthInfo: user, Namespace: "default"}
		cfg.CurrentContext = "strictgate"
		if err := clientcmd.WriteToFile(*cfg, c.kubeconfig(user)); err != nil {
			return fmt.Errorf("write kubeconfig for %s: %w", user, err)
		}
		if err := os.Chmod(c.kubeconfig(user), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// CNIOptions shapes the conflist of the cluster's pod network.
type CNIOptions struct {
	// Name is the network name (the CNI cache and IPAM state are keyed by it).
	Name string
	// PodCIDR is the IPv4 range host-local hands out; PodCIDRv6, if set, adds IPv6.
	PodCIDR   string
	PodCIDRv6 string
	// DataDir holds host-local's allocations.
	DataDir string
	// MTU of the pod interfaces; 0 = ptp's default.
	MTU int
	// Chained plugins run after ptp, in order: e.g. {"type": "strictgate", "mode": "strict"}.
	Chained []map[string]any
}

// CNIConflist renders the conflist: ptp with host-local IPAM (no masquerade: pod
// traffic must not be NATed towards the outside, it must not go there at all), then
// any chained plugins. The loopback plugin is not part of the list: containerd runs it
// from the same bin dirs for every pod's lo on its own.
func CNIConflist(o CNIOptions) ([]byte, error) {
	if o.Name == "" || o.PodCIDR == "" {
		return nil, fmt.Errorf("cni conflist needs a name and a pod CIDR")
	}
	if _, _, err := net.ParseCIDR(o.PodCIDR); err != nil {
		return nil, fmt.Errorf("cni pod CIDR: %w", err)
	}
	ranges := [][]map[string]any{{{"subnet": o.PodCIDR}}}
	routes := []map[string]any{{"dst": "0.0.0.0/0"}}
	if o.PodCIDRv6 != "" {
		if _, _, err := net.ParseCIDR(o.PodCIDRv6); err != nil {
			return nil, fmt.Errorf("cni pod CIDR v6: %w", err)
		}
		ranges = append(ranges, []map[string]any{{"subnet": o.PodCIDRv6}})
		routes = append(routes, map[string]any{"dst": "::/0"})
	}
	ipam := map[string]any{"type": "host-local", "ranges": ranges, "routes": routes}
	if o.DataDir != "" {
		ipam["dataDir"] = o.DataDir
	}
	ptp := map[string]any{"type": "ptp", "ipMasq": false, "ipam": ipam}
	if o.MTU > 0 {
		ptp["mtu"] = o.MTU
	}
	plugins := []map[string]any{ptp}
	for _, p := range o.Chained {
		if t, _ := p["type"].(string); t == "" {
			return nil, fmt.Errorf("chained cni plugin %v has no type", p)
		}
		plugins = append(plugins, p)
	}
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       o.Name,
		"plugins":    plugins,
	}, "", "  ")
}

func (c Config) cniOptions(chained []map[string]any) CNIOptions {
	v6 := ""
	if c.DualStack() {
		v6 = c.PodCIDRv6.String()
	}
	return CNIOptions{
		Name:      cniNetName,
		PodCIDR:   c.PodCIDR.String(),
		PodCIDRv6: v6,
		DataDir:   filepath.Join(c.StateDir, "cni", "networks"),
		Chained:   chained,
	}
}

// writeCNIConfig installs the conflist atomically (containerd watches the directory
// and must never read half a file).
func (c Config) writeCNIConfig(chained []map[string]any) error {
	b, err := CNIConflist(c.cniOptions(chained))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.CNIConfDir, 0o755); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(c.CNIConfDir, c.CNIConfFile), b, 0o644)
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (c Config) containerdConfig(bins map[string]binary) string {
	binDirs := append([]string{c.CNIBinDir}, c.ExtraCNIBinDirs...)
	q := make([]string, len(binDirs))
	for i, d := range binDirs {
		q[i] = fmt.Sprintf("%q", d)
	}
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[5]q

[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE here: containerd may not lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  # Network namespaces live under the state dir, so cluster-down finds all of them.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %[6]q
        Root = %[7]q
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[8]s]
    conf_dir = %[9]q
    max_conf_num = 1

# NRI would listen in /run/nri; nothing here uses it.
[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
`, filepath.Join(c.StateDir, "containerd"), filepath.Join(c.RunDir, "containerd"),
		c.containerdSocket(), filepath.Join(c.RunDir, "containerd", "containerd.sock.ttrpc"),
		images.PauseRef, bins["runc"].path, filepath.Join(c.RunDir, "runc"),
		strings.Join(q, ", "), c.CNIConfDir)
}

func (c Config) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[2]s
authorization:
  mode: Webhook
tlsCertFile: %[3]s
tlsPrivateKeyFile: %[4]s
# This machine has a hybrid cgroup v1 hierarchy and no systemd.
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://%[5]s
podLogsDir: %[6]s
clusterDomain: cluster.local
failSwapOn: false
resolvConf: /etc/resolv.conf
maxPods: 110
serializeImagePulls: false
# The machine's disk is shared with builds: do not evict pods or collect our images.
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
`, c.primaryNodeIP(), c.pki("ca.crt"), c.pki("kubelet-serving.crt"), c.pki("kubelet-serving.key"),
		c.containerdSocket(), filepath.Join(c.StateDir, "pod-logs"))
}

func (c Config) kubeProxyConfig() string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: %[1]s
hostnameOverride: %[2]s
clusterCIDR: %[3]s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts only on the node IP (shielded like every cluster port), never elsewhere.
nodePortAddresses: [%[4]s]
conntrack:
  maxPerCore: 0
`, c.kubeconfig("kube-proxy"), c.NodeName, c.podCIDRs(), c.nodePortAddresses())
}

func (c Config) nodePortAddresses() string {
	s := fmt.Sprintf("%q", c.NodeIP.String()+"/32")
	if c.DualStack() {
		s += fmt.Sprintf(", %q", c.NodeIPv6.String()+"/128")
	}
	return s
}
