// Package cluster runs a real one-node Kubernetes cluster on this machine for
// strictgate's end-to-end tests, `helm install` tests and the demo: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd + runc, the kubelet
// and kube-proxy (nftables mode), with the CNI reference plugins (ptp, host-local,
// loopback). Every component is built from source once into $STRICTGATE_CACHE (see
// test/tools/build.sh) and started detached, so the cluster outlives the process that
// started it; tests get it with Ensure, people with `make cluster-up`.
//
// Nothing leaves the machine: the pod CIDR is routed to a blackhole (the per-pod /32
// routes of ptp win over it), the service CIDR into a veth whose peer sits in an isolated
// network namespace, and an nftables table drops forwarded pod traffic towards the
// external interfaces and connections to the cluster's ports arriving from them.
package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/strictgate/strictgate/internal/toolchain"
)

// Config says where the cluster lives and how its network looks. DefaultConfig fills
// it; the zero value is not usable.
type Config struct {
	// CacheDir holds the built components ($STRICTGATE_CACHE, ~/.cache/strictgate).
	CacheDir string
	// Dir holds what people and tests read: admin.kubeconfig, pki/, logs/, images/.
	Dir string
	// StateDir holds the components' data (etcd, containerd root, kubelet root, IPAM).
	StateDir string
	// RunDir holds sockets, pid files and containerd's state (netns mounts, runc state).
	RunDir string
	// CNIConfDir is where the conflist goes; CNIConfFile is its name there.
	CNIConfDir  string
	CNIConfFile string
	// CNIBinDir holds ptp, host-local and loopback (copied from the cache); a chained
	// plugin may be put there too. ExtraCNIBinDirs are searched after it.
	CNIBinDir       string
	ExtraCNIBinDirs []string
	// ToolsDir is the repository's test/tools (build.sh, versions.env).
	ToolsDir string

	NodeName    string
	NodeIP      net.IP
	PodCIDR     *net.IPNet
	ServiceCIDR *net.IPNet
	// NodeIPv6, PodCIDRv6 and ServiceCIDRv6 make the cluster dual-stack (IPv4 first);
	// nil when the machine has no global IPv6 address or STRICTGATE_CLUSTER_IPV6=0.
	NodeIPv6      net.IP
	PodCIDRv6     *net.IPNet
	ServiceCIDRv6 *net.IPNet
	// IPv6Primary puts IPv6 first on a dual-stack cluster: the node's first address,
	// every pod's status.podIP and every single-stack Service's ClusterIP (the
	// kubernetes Service too) are IPv6, so suites that probe "the" pod or Service IP
	// (the upstream netpol e2e suite) test IPv6. STRICTGATE_CLUSTER_PRIMARY=ipv6 sets it.
	IPv6Primary bool
	// ExternalInterfaces are shielded: no cluster port answers on them and no pod
	// traffic is forwarded to them.
	ExternalInterfaces []string

	APIServerPort int
}

// Names of things the cluster makes on the host, so Down (and its test) can find them.
const (
	nftTable    = "strictgate-cluster"
	sinkNetns   = "strictgate-svcsink"
	sinkHostDev = "sg-svcsink0"
	sinkPeerDev = "sg-svcsink1"
	cniNetName  = "strictgate-cluster"
)

// DefaultConfig returns the cluster's standard layout. Set STRICTGATE_NODE_IP to pick
// the node address when the machine has several.
func DefaultConfig() (Config, error) {
	cache := os.Getenv("STRICTGATE_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return Config{}, fmt.Errorf("find home for the cache dir: %w", err)
		}
		cache = filepath.Join(home, ".cache", "strictgate")
	}
	tools, err := findToolsDir()
	if err != nil {
		return Config{}, err
	}
	_, pod, _ := net.ParseCIDR("10.244.0.0/24")
	_, svc, _ := net.ParseCIDR("10.96.0.0/16")
	c := Config{
		CacheDir:        cache,
		Dir:             filepath.Join(cache, "cluster"),
		StateDir:        "/var/lib/strictgate-cluster",
		RunDir:          "/run/strictgate-cluster",
		CNIConfDir:      "/etc/cni/net.d",
		CNIConfFile:     "10-strictgate-cluster.conflist",
		CNIBinDir:       "/var/lib/strictgate-cluster/cni/bin",
		ExtraCNIBinDirs: []string{"/opt/cni/bin"},
		ToolsDir:        tools,
		NodeName:        "strictgate-node",
		PodCIDR:         pod,
		ServiceCIDR:     svc,
		APIServerPort:   6443,
	}
	c.NodeIP, c.NodeIPv6, c.ExternalInterfaces, err = nodeAddress(os.Getenv("STRICTGATE_NODE_IP"))
	if err != nil {
		return Config{}, err
	}
	if c.NodeIPv6 != nil && os.Getenv("STRICTGATE_CLUSTER_IPV6") != "0" {
		_, c.PodCIDRv6, _ = net.ParseCIDR("fd00:10:244::/64")
		_, c.ServiceCIDRv6, _ = net.ParseCIDR("fd00:10:96::/112")
	} else {
		c.NodeIPv6 = nil
	}
	switch p := os.Getenv("STRICTGATE_CLUSTER_PRIMARY"); p {
	case "", "ipv4":
	case "ipv6":
		if !c.DualStack() {
			return Config{}, errors.New("STRICTGATE_CLUSTER_PRIMARY=ipv6 needs a dual-stack cluster: the node has no global IPv6 address or STRICTGATE_CLUSTER_IPV6=0")
		}
		c.IPv6Primary = true
	default:
		return Config{}, fmt.Errorf("STRICTGATE_CLUSTER_PRIMARY=%s: want ipv4 or ipv6", p)
	}
	return c, nil
}

// PrimaryFamily is "ipv4" or "ipv6": the family of the node's first address, of pods'
// status.podIP and of single-stack Services' ClusterIPs.
func (c Config) PrimaryFamily() string {
	if c.IPv6Primary && c.DualStack() {
		return "ipv6"
	}
	return "ipv4"
}

// primaryNodeIP is the node address of the primary family: the API server advertises
// it (its family must be the primary service CIDR's) and the kubelet serves on it.
func (c Config) primaryNodeIP() net.IP {
	if c.PrimaryFamily() == "ipv6" {
		return c.NodeIPv6
	}
	return c.NodeIP
}

// findToolsDir finds test/tools from the working directory upwards: `go run` and
// `go test` both run somewhere inside the repository.
func findToolsDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "test", "tools")
		if _, err := os.Stat(filepath.Join(p, "build.sh")); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find test/tools/build.sh: run inside the strictgate repository")
		}
		dir = parent
	}
}

// nodeAddress picks the node IP: the kubelet refuses loopback, so it is this machine's
// own global IPv4 address (want, if given), plus a global IPv6 address of the same
// interface for dual-stack. Every interface with a global address is external and
// gets shielded.
func nodeAddress(want string) (net.IP, net.IP, []string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list interfaces: %w", err)
	}
	var ip, ip6 net.IP
	var ext []string
	v6 := map[string]net.IP{}
	ipIface := ""
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback != 0 || isOurs(ifc.Name) {
			continue
		}
		addrs, _ := ifc.Addrs()
		global := false
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !ipn.IP.IsGlobalUnicast() {
				continue
			}
			// Pod-side addresses (ptp puts the gateway on host veths) are not external.
			if _, pod, _ := net.ParseCIDR("10.244.0.0/24"); pod.Contains(ipn.IP) {
				continue
			}
			if _, pod6, _ := net.ParseCIDR("fd00:10:244::/64"); pod6.Contains(ipn.IP) {
				continue
			}
			global = true
			if ifc.Flags&net.FlagUp == 0 {
				continue
			}
			if v4 := ipn.IP.To4(); v4 != nil {
				if (want == "" && ip == nil) || v4.String() == want {
					ip, ipIface = v4, ifc.Name
				}
			} else if v6[ifc.Name] == nil {
				v6[ifc.Name] = ipn.IP
			}
		}
		if global {
			ext = append(ext, ifc.Name)
		}
	}
	if ip == nil {
		if want != "" {
			return nil, nil, nil, fmt.Errorf("STRICTGATE_NODE_IP=%s is not an address of an up interface", want)
		}
		return nil, nil, nil, errors.New("find node IP: no up interface has a global IPv4 address; set STRICTGATE_NODE_IP")
	}
	ip6 = v6[ipIface]
	return ip, ip6, ext, nil
}

// isOurs tells the interfaces the cluster makes (pod veths, the service sink).
func isOurs(name string) bool {
	return strings.HasPrefix(name, "veth") || strings.HasPrefix(name, "sg-")
}

// versions reads test/tools/versions.env (KEY=VALUE lines).
func (c Config) versions() (map[string]string, error) {
	return toolchain.ReadVersions(filepath.Join(c.ToolsDir, "versions.env"))
}

// binaries maps each binary the cluster runs to its path in the cache, and names the
// build.sh component that makes it.
type binary struct {
	component, path string
}

func (c Config) binaries() (map[string]binary, error) {
	v, err := c.versions()
	if err != nil {
		return nil, err
	}
	b := map[string]binary{}
	add := func(comp, version string, bins ...string) {
		for _, bin := range bins {
			b[bin] = binary{comp, filepath.Join(c.CacheDir, comp+"-"+version, bin)}
		}
	}
	k := v["KUBERNETES_VERSION"]
	for _, n := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		add(n, k, n)
	}
	// kubectl is not run by the cluster, but people and tests use it against it.
	add("kubectl", k, "kubectl")
	add("etcd", v["ETCD_VERSION"], "etcd")
	add("containerd", v["CONTAINERD_VERSION"], "containerd", "containerd-shim-runc-v2", "ctr")
	add("runc", v["RUNC_VERSION"], "runc")
	add("cni-plugins", v["CNI_PLUGINS_VERSION"], "ptp", "host-local", "loopback")
	for name, bin := range b {
		if strings.HasSuffix(bin.path, "--") || strings.Contains(bin.path, "-/") {
			return nil, fmt.Errorf("versions.env has no version for %s", name)
		}
	}
	return b, nil
}

func (c Config) kubeconfig(user string) string {
	return filepath.Join(c.Dir, user+".kubeconfig")
}

// AdminKubeconfig is the path of the cluster-admin kubeconfig.
func (c Config) AdminKubeconfig() string { return c.kubeconfig("admin") }

func (c Config) pki(name string) string { return filepath.Join(c.Dir, "pki", name) }

func (c Config) logFile(component string) string {
	return filepath.Join(c.Dir, "logs", component+".log")
}

func (c Config) containerdSocket() string {
	return filepath.Join(c.RunDir, "containerd", "containerd.sock")
}

// DualStack tells whether pods and Services get IPv6 addresses too.
func (c Config) DualStack() bool {
	return c.PodCIDRv6 != nil && c.ServiceCIDRv6 != nil && c.NodeIPv6 != nil
}

// joined lists the IPv4 value and, when dual-stack, the IPv6 one, comma-separated as
// the components' flags want them: the primary family first.
func (c Config) joined(v4, v6 fmt.Stringer) string {
	if c.PrimaryFamily() == "ipv6" {
		return v6.String() + "," + v4.String()
	}
	if c.DualStack() {
		return v4.String() + "," + v6.String()
	}
	return v4.String()
}

func (c Config) podCIDRs() string     { return c.joined(c.PodCIDR, c.PodCIDRv6) }
func (c Config) serviceCIDRs() string { return c.joined(c.ServiceCIDR, c.ServiceCIDRv6) }
func (c Config) nodeIPs() string      { return c.joined(c.NodeIP, c.NodeIPv6) }

func (c Config) apiServerURL() string {
	return fmt.Sprintf("https://127.0.0.1:%d", c.APIServerPort)
}
