package cni_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/netdev/netdevtest"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/cni"
	"github.com/strictgate/strictgate/internal/contract"
)

// The test binary doubles as the plugin binary, so the plugin is exercised exactly as
// a container runtime runs it: a process with CNI_* in its environment, the network
// configuration on stdin and the result (or error) on stdout.
const envPlugin = "STRICTGATE_TEST_RUN_CNI_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(envPlugin) == "1" {
		cni.Main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runPlugin runs the plugin with command and conf; it returns stdout and whether the
// process succeeded.
func runPlugin(t *testing.T, command string, conf []byte, netnsPath, containerID string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envPlugin+"=1",
		"CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID, "CNI_NETNS="+netnsPath,
		"CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin")
	cmd.Stdin = bytes.NewReader(conf)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		t.Logf("%s: stdout %s stderr %s", command, out.String(), stderr.String())
	}
	return out.Bytes(), err
}

// result is what a ptp-like main plugin returns for pod p.
func result(p *netdevtest.Pod) *types100.Result {
	one := 1
	return &types100.Result{
		CNIVersion: "1.1.0",
		Interfaces: []*types100.Interface{
			{Name: p.Host},
			{Name: "eth0", Mac: p.MAC, Sandbox: p.NetnsPath()},
		},
		IPs: []*types100.IPConfig{{
			Interface: &one,
			Address:   net.IPNet{IP: p.IP.AsSlice(), Mask: net.CIDRMask(32, 32)},
			Gateway:   netdevtest.GatewayIP.AsSlice(),
		}},
	}
}

func netconf(t *testing.T, mode, pinRoot string, prev *types100.Result) []byte {
	t.Helper()
	e := cni.Entry(contract.Mode(mode), pinRoot, filepath.Join(t.TempDir(), "cni.log"))
	e["cniVersion"] = "1.1.0"
	e["name"] = "k8s-pod-network"
	if prev != nil {
		e["prevResult"] = prev
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEntry(t *testing.T) {
	b, err := cni.EntryJSON("strict", "/sys/fs/bpf/strictgate", "/var/log/strictgate-cni.log")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"logFile":"/var/log/strictgate-cni.log","mode":"strict","pinRoot":"/sys/fs/bpf/strictgate","type":"strictgate"}`
	if string(b) != want {
		t.Fatalf("EntryJSON = %s, want %s", b, want)
	}
}

func TestPrivilegedPlugin(t *testing.T) {
	if !netdevtest.Isolate(t) {
		return
	}
	pinRoot := "/sys/fs/bpf/strictgate"
	peer := netdevtest.AddPod(t, "peer", netip.MustParseAddr("10.201.0.2"))
	pod := netdevtest.AddPod(t, "pod", netip.MustParseAddr("10.201.0.3"))
	pod.ListenTCP(t, 8080)
	pod.ListenUDP(t, 5353)
	if err := peer.ProbeTCP(pod.IP, 8080, 2*time.Second); err != nil {
		t.Fatalf("before ADD the pod must be reachable (no strictgate yet): %v", err)
	}
	kernel := func(t *testing.T) (datapath.Pod, error) {
		t.Helper()
		d, err := datapath.Open(datapath.Options{PinRoot: pinRoot})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		return d.Pod(pod.HostIndex)
	}
	reachable := func() bool {
		return peer.ProbeTCP(pod.IP, 8080, 500*time.Millisecond) == nil || peer.ProbeUDP(pod.IP, 5353, 500*time.Millisecond) == nil
	}
	prev := result(pod)

	for _, tc := range []struct {
		mode  string
		state rules.State
		audit bool
		open  bool
	}{
		{mode: "strict", state: rules.StateUnprogrammedDeny, open: false},
		{mode: "standard", state: rules.StateUnprogrammedAllow, open: true},
		{mode: "audit", state: rules.StateUnprogrammedDeny, audit: true, open: true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			conf := netconf(t, tc.mode, pinRoot, prev)
			out, err := runPlugin(t, "ADD", conf, pod.NetnsPath(), "c-"+tc.mode)
			if err != nil {
				t.Fatalf("ADD failed: %v", err)
			}
			// prevResult passes through unchanged.
			var got types100.Result
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("ADD printed %q: %v", out, err)
			}
			// Compare after the same decoding, as the next plugin or the runtime would.
			var want types100.Result
			pj, _ := json.Marshal(prev)
			if err := json.Unmarshal(pj, &want); err != nil {
				t.Fatal(err)
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			if !bytes.Equal(gj, wj) {
				t.Fatalf("ADD result\n got %s\nwant %s", gj, wj)
			}
			kp, err := kernel(t)
			if err != nil {
				t.Fatalf("after ADD the kernel has no entry: %v", err)
			}
			if kp.Ingress != tc.state || kp.Egress != tc.state || kp.Audit != tc.audit || kp.Attach == datapath.AttachNone {
				t.Fatalf("kernel entry %+v, want both directions %s, audit %v, attached", kp, tc.state, tc.audit)
			}
			if got := reachable(); got != tc.open {
				t.Fatalf("after ADD in %s mode reachable = %v, want %v", tc.mode, got, tc.open)
			}
			if _, err := runPlugin(t, "CHECK", conf, pod.NetnsPath(), "c-"+tc.mode); err != nil {
				t.Fatalf("CHECK after ADD: %v", err)
			}
			for i := range 2 { // DEL is idempotent
				if _, err := runPlugin(t, "DEL", conf, pod.NetnsPath(), "c-"+tc.mode); err != nil {
					t.Fatalf("DEL #%d: %v", i+1, err)
				}
			}
			if _, err := kernel(t); !errors.Is(err, datapath.ErrNoPod) {
				t.Fatalf("after DEL the kernel entry is %v, want none", err)
			}
			if !reachable() {
				t.Fatal("after DEL the pod is still filtered")
			}
			if _, err := runPlugin(t, "CHECK", conf, pod.NetnsPath(), "c-"+tc.mode); err == nil {
				t.Fatal("CHECK passed for a detached pod")
			}
		})
	}

	t.Run("strict ADD fails when it cannot attach; standard does not", func(t *testing.T) {
		notBPF := t.TempDir() // pins cannot be made outside bpffs
		out, err := runPlugin(t, "ADD", netconf(t, "strict", notBPF, prev), pod.NetnsPath(), "c-bad")
		var cerr types.Error
		if err == nil || json.Unmarshal(out, &cerr) != nil || cerr.Code != types.ErrInternal {
			t.Fatalf("strict ADD without a datapath = %v, %s; want a CNI error", err, out)
		}
		if !reachable() {
			t.Fatal("a failed ADD changed the pod")
		}
		if _, err := runPlugin(t, "ADD", netconf(t, "standard", notBPF, prev), pod.NetnsPath(), "c-bad"); err != nil {
			t.Fatalf("standard ADD without a datapath: %v", err)
		}
		out, err = runPlugin(t, "STATUS", netconf(t, "strict", notBPF, nil), "", "")
		if err == nil || json.Unmarshal(out, &cerr) != nil || cerr.Code != types.ErrPluginNotAvailable {
			t.Fatalf("STATUS without a datapath = %v, %s; want error 50", err, out)
		}
		if _, err := runPlugin(t, "STATUS", netconf(t, "strict", pinRoot, nil), "", ""); err != nil {
			t.Fatalf("STATUS with a datapath: %v", err)
		}
	})

	t.Run("ADD without prevResult fails", func(t *testing.T) {
		out, err := runPlugin(t, "ADD", netconf(t, "strict", pinRoot, nil), pod.NetnsPath(), "c-first")
		if err == nil || !strings.Contains(string(out), "chained plugin") {
			t.Fatalf("ADD as first plugin = %v, %s", err, out)
		}
	})

	t.Run("DEL after the interface is gone", func(t *testing.T) {
		gone := netdevtest.AddPod(t, "gone", netip.MustParseAddr("10.201.0.9"))
		conf := netconf(t, "strict", pinRoot, result(gone))
		if _, err := runPlugin(t, "ADD", conf, gone.NetnsPath(), "c-gone"); err != nil {
			t.Fatal(err)
		}
		gone.NS.Close() // the namespace and its veth pair vanish
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := net.InterfaceByName(gone.Host); err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("veth did not go away with its namespace")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := runPlugin(t, "DEL", conf, "", "c-gone"); err != nil {
			t.Fatalf("DEL of a vanished interface: %v", err)
		}
	})

	t.Run("VERSION", func(t *testing.T) {
		out, err := runPlugin(t, "VERSION", []byte(`{"cniVersion":"1.1.0"}`), "", "")
		if err != nil || !strings.Contains(string(out), `"1.1.0"`) || !strings.Contains(string(out), `"1.0.0"`) {
			t.Fatalf("VERSION = %s, %v", out, err)
		}
	})
}

func TestEntryWithProgramAtAdd(t *testing.T) {
	e := cni.EntryWith("strict", "/sys/fs/bpf/strictgate", cni.Options{AgentSocket: "/etc/cni/net.d/strictgate/agent.sock", ProgramTimeout: 1500 * time.Millisecond})
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"agentSocket":"/etc/cni/net.d/strictgate/agent.sock","mode":"strict","pinRoot":"/sys/fs/bpf/strictgate","programTimeout":"1.5s","type":"strictgate"}`
	if string(b) != want {
		t.Fatalf("EntryWith = %s, want %s", b, want)
	}
	// A bad timeout is refused before anything is touched.
	for _, bad := range []string{"soon", "-1s", "0s"} {
		e["programTimeout"] = bad
		e["cniVersion"] = "1.1.0"
		e["name"] = "k8s-pod-network"
		conf, _ := json.Marshal(e)
		out, err := runPlugin(t, "ADD", conf, "/var/run/netns/unused", "c-bad-timeout")
		if err == nil || !strings.Contains(string(out), "programTimeout") {
			t.Errorf("programTimeout %q: ADD = %v, %s; want a configuration error naming programTimeout", bad, err, out)
		}
	}
}
