// Package cni is strictgate's chained CNI plugin (`strictgate cni`).
//
// It runs after the main plugin (ptp, VPC CNI, Calico, ...) has made the pod's
// interface: on ADD it finds the host side of that interface and attaches the eBPF
// datapath to it in the mode's unprogrammed state (strict: deny-all), so the pod carries
// no traffic its policy forbids from its very first packet; the agent replaces that
// state with the pod's rules. A strict-mode ADD that cannot attach fails: a pod must
// never come up open. The previous result passes through unchanged.
package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"

	"github.com/strictgate/strictgate/agent/cniserver"
	"github.com/strictgate/strictgate/agent/datapath"
	"github.com/strictgate/strictgate/agent/netdev"
	"github.com/strictgate/strictgate/agent/rules"
	"github.com/strictgate/strictgate/internal/contract"
)

// PluginType is the "type" of the conflist entry (and the binary's name in the CNI bin
// directory).
const PluginType = "strictgate"

// ModeStrict is the mode of an entry that names none (contract.ModeStrict).
const ModeStrict = contract.ModeStrict

// NetConf is the plugin's entry in a conflist.
type NetConf struct {
	types.PluginConf
	// Mode is strict (default), standard or audit, as the agent's --mode.
	Mode contract.Mode `json:"mode,omitempty"`
	// PinRoot is the datapath's bpffs directory (default contract.DefaultPinRoot).
	PinRoot string `json:"pinRoot,omitempty"`
	// LogFile, if set, receives one line per operation (the runtime discards stderr).
	LogFile string `json:"logFile,omitempty"`
	// AgentSocket, if set, is the agent's unix socket (agent/cniserver): after
	// attaching, ADD asks the agent to program the pod now and waits up to
	// ProgramTimeout (a Go duration, default 3s) for the rules to be in the kernel.
	AgentSocket    string `json:"agentSocket,omitempty"`
	ProgramTimeout string `json:"programTimeout,omitempty"`
}

// DefaultProgramTimeout is how long ADD waits for the agent when the entry names none.
const DefaultProgramTimeout = 3 * time.Second

// Options are the optional settings of the plugin's conflist entry.
type Options struct {
	LogFile        string
	AgentSocket    string
	ProgramTimeout time.Duration
}

// Entry returns the plugin's conflist entry, to append to the "plugins" list after
// the main plugin.
func Entry(mode contract.Mode, pinRoot, logFile string) map[string]any {
	return EntryWith(mode, pinRoot, Options{LogFile: logFile})
}

// EntryWith is Entry with all optional settings.
func EntryWith(mode contract.Mode, pinRoot string, o Options) map[string]any {
	e := map[string]any{"type": PluginType, "mode": string(mode), "pinRoot": pinRoot}
	if o.LogFile != "" {
		e["logFile"] = o.LogFile
	}
	if o.AgentSocket != "" {
		e["agentSocket"] = o.AgentSocket
		if o.ProgramTimeout > 0 {
			e["programTimeout"] = o.ProgramTimeout.String()
		}
	}
	return e
}

// EntryJSON is Entry as JSON.
func EntryJSON(mode contract.Mode, pinRoot, logFile string) ([]byte, error) {
	return json.Marshal(Entry(mode, pinRoot, logFile))
}

// Datapath is what the plugin needs from agent/datapath.
type Datapath interface {
	Attach(ifindex int, ingress, egress rules.State) (datapath.Pod, error)
	SetAudit(ifindex int, on bool) error
	Pod(ifindex int) (datapath.Pod, error)
	Detach(ifindex int) error
	Close() error
}

// Opener opens the pinned datapath under pinRoot.
type Opener func(pinRoot string) (Datapath, error)

// OpenPinned opens (or creates) the pinned datapath.
func OpenPinned(pinRoot string) (Datapath, error) {
	return datapath.Open(datapath.Options{PinRoot: pinRoot})
}

// SupportedVersions are the CNI spec versions the plugin speaks; prevResult needs ≥0.4.0
// in practice (CHECK), STATUS needs 1.1.0.
var SupportedVersions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

// Plugin implements the CNI commands.
type Plugin struct {
	Open Opener
	// Interfaces finds host-side interfaces; default netdev.New(nil).
	Interfaces interface {
		HostInterface(ip netip.Addr) (netdev.Interface, error)
	}
}

// Funcs returns the skel callbacks.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, Status: p.Status}
}

// Main runs the plugin as the CNI spec asks (environment + stdin, result on stdout).
func Main() {
	p := &Plugin{Open: OpenPinned}
	skel.PluginMainFuncs(p.Funcs(), SupportedVersions, "strictgate: chained CNI plugin attaching the NetworkPolicy datapath")
}

func parse(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, fmt.Errorf("parse network configuration: %w", err)
	}
	if conf.Mode == "" {
		conf.Mode = ModeStrict
	}
	if _, err := contract.ParseMode(string(conf.Mode)); err != nil {
		return nil, fmt.Errorf("strictgate conflist entry: %w", err)
	}
	conf.PinRoot = contract.PinsAt(conf.PinRoot).Root()
	if conf.ProgramTimeout != "" {
		d, err := time.ParseDuration(conf.ProgramTimeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("strictgate conflist entry: programTimeout %q: want a positive duration such as 3s", conf.ProgramTimeout)
		}
	}
	if conf.RawPrevResult != nil {
		if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
			return nil, fmt.Errorf("parse prevResult: %w", err)
		}
	}
	return conf, nil
}

func (c *NetConf) logf(format string, args ...any) {
	if c.LogFile == "" {
		return
	}
	f, err := os.OpenFile(c.LogFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
}

// hostInterface finds the host side of the pod's interface: the interface the host
// routes the pod's IPs to (as the agent does), else the sandbox-less interface the main
// plugin reported.
func (p *Plugin) hostInterface(res *types100.Result) (int, string, error) {
	finder := p.Interfaces
	if finder == nil {
		finder = netdev.New(nil)
	}
	var errs []error
	for _, ipc := range res.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		in, err := finder.HostInterface(a.Unmap())
		if err == nil {
			return in.Index, in.Name, nil
		}
		errs = append(errs, err)
	}
	for _, in := range res.Interfaces {
		if in.Sandbox != "" || in.Name == "" {
			continue
		}
		l, err := netlink.LinkByName(in.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("host interface %s from prevResult: %w", in.Name, err))
			continue
		}
		return l.Attrs().Index, in.Name, nil
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("prevResult names no IP and no host-side interface"))
	}
	return 0, "", fmt.Errorf("find the pod's host-side interface: %w", errors.Join(errs...))
}

func prevResult(conf *NetConf) (*types100.Result, error) {
	if conf.PrevResult == nil {
		return nil, errors.New("no prevResult: strictgate is a chained plugin and must come after the main plugin in the conflist")
	}
	res, err := types100.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return nil, fmt.Errorf("convert prevResult: %w", err)
	}
	return res, nil
}

// Add attaches the datapath and passes prevResult through.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	conf, err := parse(args.StdinData)
	if err != nil {
		return err
	}
	res, err := prevResult(conf)
	if err != nil {
		return err
	}
	ifindex, ifname, err := p.attach(conf, res)
	if err != nil {
		conf.logf("ADD %s: %v", args.ContainerID, err)
		if conf.Mode.FailsClosed() {
			return types.NewError(types.ErrInternal, "strictgate could not close the pod", err.Error())
		}
		// Unprogrammed-allow is open anyway: the agent attaches when it sees the pod.
	} else if conf.AgentSocket != "" {
		p.programAtAdd(conf, args, res, ifindex, ifname)
	}
	return types.PrintResult(conf.PrevResult, conf.CNIVersion)
}

// programAtAdd asks the agent to program the pod now (agent/cniserver) and waits at
// most programTimeout. Whatever the answer, ADD succeeds: the pod is already in the
// mode's unprogrammed state (strict: deny-all), which is exactly as safe as today's
// path, and the agent's normal reconcile programs it once the kubelet reports its IP.
// Failing ADD instead would make the kubelet tear the sandbox down and retry it with
// back-off, delaying the pod far longer than the normal path would, for no safety gain.
func (p *Plugin) programAtAdd(conf *NetConf, args *skel.CmdArgs, res *types100.Result, ifindex int, ifname string) {
	start := time.Now()
	timeout := DefaultProgramTimeout
	if conf.ProgramTimeout != "" {
		timeout, _ = time.ParseDuration(conf.ProgramTimeout) // parse validated it
	}
	ns, name, err := podOf(args.Args)
	if err != nil {
		conf.logf("ADD %s: program at ADD skipped: %v", args.ContainerID, err)
		return
	}
	req := &cniserver.Request{Version: cniserver.Version, Namespace: ns, Name: name, ContainerID: args.ContainerID,
		Interface: ifname, IfIndex: ifindex}
	for _, ipc := range res.IPs {
		if a, ok := netip.AddrFromSlice(ipc.Address.IP); ok {
			req.IPs = append(req.IPs, a.Unmap().String())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := cniserver.Program(ctx, conf.AgentSocket, req)
	took := time.Since(start)
	switch {
	case err != nil:
		conf.logf("ADD %s: program at ADD %s/%s failed after %s, pod stays %s: %v", args.ContainerID, ns, name, took, conf.Mode.InitialState(), err)
	case !resp.Programmed:
		conf.logf("ADD %s: agent did not program %s/%s (%s), pod stays %s: %s", args.ContainerID, ns, name, took, conf.Mode.InitialState(), resp.Error)
	default:
		conf.logf("ADD %s: programmed %s/%s at ADD in %s", args.ContainerID, ns, name, took)
	}
}

// podOf reads K8S_POD_NAMESPACE and K8S_POD_NAME from CNI_ARGS ("K=V;K=V").
func podOf(cniArgs string) (ns, name string, err error) {
	for _, kv := range strings.Split(cniArgs, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			ns = v
		case "K8S_POD_NAME":
			name = v
		}
	}
	if ns == "" || name == "" {
		return "", "", errors.New("CNI_ARGS lacks K8S_POD_NAMESPACE or K8S_POD_NAME")
	}
	return ns, name, nil
}

func (p *Plugin) attach(conf *NetConf, res *types100.Result) (int, string, error) {
	ifindex, name, err := p.hostInterface(res)
	if err != nil {
		return 0, "", err
	}
	dp, err := p.Open(conf.PinRoot)
	if err != nil {
		return 0, "", fmt.Errorf("open datapath at %s: %w", conf.PinRoot, err)
	}
	defer dp.Close()
	s := conf.Mode.InitialState()
	if _, err := dp.Attach(ifindex, s, s); err != nil {
		return 0, "", fmt.Errorf("attach to %s (ifindex %d): %w", name, ifindex, err)
	}
	if conf.Mode.Audits() {
		if err := dp.SetAudit(ifindex, true); err != nil {
			return 0, "", fmt.Errorf("audit on %s: %w", name, err)
		}
	}
	conf.logf("ADD attached %s (ifindex %d) %s", name, ifindex, s)
	return ifindex, name, nil
}

// Del detaches the datapath from the pod's interface; detaching what is gone succeeds
// (the agent collects leftovers too).
func (p *Plugin) Del(args *skel.CmdArgs) error {
	conf, err := parse(args.StdinData)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return nil // nothing tells us the interface; the agent collects it
	}
	res, err := prevResult(conf)
	if err != nil {
		return err
	}
	ifindex, name, err := p.hostInterface(res)
	if err != nil {
		conf.logf("DEL %s: interface gone: %v", args.ContainerID, err)
		return nil
	}
	if _, err := os.Stat(conf.PinRoot); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	dp, err := p.Open(conf.PinRoot)
	if err != nil {
		return fmt.Errorf("open datapath at %s: %w", conf.PinRoot, err)
	}
	defer dp.Close()
	if err := dp.Detach(ifindex); err != nil {
		return fmt.Errorf("detach from %s (ifindex %d): %w", name, ifindex, err)
	}
	conf.logf("DEL detached %s (ifindex %d)", name, ifindex)
	return nil
}

// Check verifies that the pod's interface is attached.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	conf, err := parse(args.StdinData)
	if err != nil {
		return err
	}
	res, err := prevResult(conf)
	if err != nil {
		return err
	}
	ifindex, name, err := p.hostInterface(res)
	if err != nil {
		return err
	}
	dp, err := p.Open(conf.PinRoot)
	if err != nil {
		return fmt.Errorf("open datapath at %s: %w", conf.PinRoot, err)
	}
	defer dp.Close()
	pod, err := dp.Pod(ifindex)
	if err != nil {
		return fmt.Errorf("%s (ifindex %d) is not enforced: %w", name, ifindex, err)
	}
	if pod.Attach == datapath.AttachNone {
		return fmt.Errorf("%s (ifindex %d) has a pod entry but no programs attached", name, ifindex)
	}
	return nil
}

// Status reports whether ADDs can succeed: the datapath must open. Runtimes ask often,
// so pinned maps on a bpf filesystem are taken as the answer without loading programs.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	conf, err := parse(args.StdinData)
	if err != nil {
		return err
	}
	if datapath.Pinned(conf.PinRoot) {
		return nil
	}
	dp, err := p.Open(conf.PinRoot)
	if err != nil {
		if !conf.Mode.FailsClosed() {
			return nil
		}
		return types.NewError(types.ErrPluginNotAvailable, "strictgate datapath unavailable", err.Error())
	}
	return dp.Close()
}

// compile-time check that the real datapath fits.
var _ Datapath = (*datapath.Datapath)(nil)
