package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/strictgate/strictgate/cni"
	"github.com/strictgate/strictgate/internal/contract"
)

func init() {
	register("cni", "chained CNI plugin (run by the container runtime); 'cni install' sets it up on a node", runCNI)
}

func runCNI(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "install" && args[0] != "uninstall" && args[0] != "entry" {
		cni.Main() // speaks the CNI protocol on stdin/stdout and exits on error
		return nil
	}
	fs := flag.NewFlagSet("strictgate cni "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := cni.ModeStrict
	fs.Func("mode", "enforcement mode: strict, standard or audit (as the agent's --mode; default "+string(mode)+")", func(s string) error {
		m, err := contract.ParseMode(s)
		mode = m
		return err
	})
	pinRoot := fs.String("pin-root", contract.DefaultPinRoot, "bpffs directory of the datapath's pins")
	logFile := fs.String("log-file", "", "plugin log file on the node (the runtime discards stderr)")
	binDir := fs.String("bin-dir", "/opt/cni/bin", "CNI binary directory to install the plugin into")
	confDir := fs.String("conf-dir", "/etc/cni/net.d", "CNI configuration directory whose first .conflist gets the strictgate entry")
	agentSocket := fs.String("agent-socket", "", "agent's unix socket for program-at-ADD (empty: off; the pod waits for the agent's normal path)")
	programTimeout := fs.Duration("program-timeout", cni.DefaultProgramTimeout, "how long ADD waits for the agent to program the pod")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	entry := cni.EntryWith(mode, *pinRoot, cni.Options{LogFile: *logFile, AgentSocket: *agentSocket, ProgramTimeout: *programTimeout})
	switch args[0] {
	case "entry":
		b, err := json.Marshal(entry)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(b))
		return nil
	case "uninstall":
		path, changed, err := cni.PatchConfList(*confDir, entry, true)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed strictgate from %s (changed: %v)\n", path, changed)
		return nil
	}
	if err := cni.InstallBinary(*binDir); err != nil {
		return err
	}
	path, changed, err := cni.PatchConfList(*confDir, entry, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "installed %s/%s; chained into %s (changed: %v)\n", *binDir, cni.PluginType, path, changed)
	return nil
}
