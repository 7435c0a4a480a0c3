// Command cluster starts, stops and inspects the one-node test cluster (make
// cluster-up, cluster-down, cluster-status), and imports image tarballs into it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/strictgate/strictgate/test/cluster"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "import" && len(os.Args) != 2) {
		fmt.Fprintln(os.Stderr, "usage: cluster up|down|status|import IMAGE.tar...")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := cluster.DefaultConfig()
	if err != nil {
		fail(err)
	}
	switch os.Args[1] {
	case "up":
		ctx, cancel := context.WithTimeout(ctx, 60*time.Minute)
		defer cancel()
		var cl *cluster.Cluster
		err := cluster.WithUpLock(ctx, cfg, 30*time.Minute, func() (err error) {
			cl, err = cluster.Up(ctx, cfg, os.Stdout)
			return err
		})
		if err != nil {
			fail(err)
		}
		if cl.Reused {
			fmt.Println("cluster: already running and healthy")
		}
		usage(cl)
	case "down":
		if err := cluster.WithExclusiveLock(cfg, 30*time.Minute, func() error { return cluster.Down(ctx, cfg, os.Stdout) }); err != nil {
			fail(err)
		}
	case "status":
		st, err := cluster.Status(ctx, cfg)
		if err != nil {
			fail(err)
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "COMPONENT\tPID\tHEALTH")
		ok := true
		for _, s := range st {
			pid := "-"
			if s.PID != 0 {
				pid = fmt.Sprint(s.PID)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\n", s.Name, pid, s.Health)
			ok = ok && s.Health == "ok"
		}
		w.Flush()
		if ok {
			fmt.Printf("\nexport KUBECONFIG=%s\n", cfg.AdminKubeconfig())
		} else {
			fmt.Println("\ncluster is not (fully) up: make cluster-up")
			os.Exit(1)
		}
	case "import":
		cl, err := cluster.Up(ctx, cfg, os.Stderr)
		if err != nil {
			fail(err)
		}
		for _, tarball := range os.Args[2:] {
			if err := cl.ImportImage(ctx, tarball); err != nil {
				fail(err)
			}
			fmt.Println("cluster: imported", tarball)
		}
	default:
		fail(fmt.Errorf("unknown sub-command %q: want up, down or status", os.Args[1]))
	}
}

func usage(cl *cluster.Cluster) {
	c := cl.Config
	kubectl, _ := filepath.Glob(filepath.Join(c.CacheDir, "kubectl-*", "kubectl"))
	node, pods, svcs := cl.NodeIP.String(), cl.PodCIDR.String(), cl.ServiceCIDR.String()
	if c.DualStack() {
		node += ", " + cl.NodeIPv6.String()
		pods += ", " + cl.PodCIDRv6.String()
		svcs += ", " + cl.ServiceCIDRv6.String()
	}
	fmt.Printf(`
one-node cluster: node %s (%s), pods %s, services %s

  export KUBECONFIG=%s
`, cl.NodeName, node, pods, svcs, cl.Kubeconfig)
	if len(kubectl) > 0 {
		fmt.Printf("  %s get pods -A        # a matching kubectl (or test/tools/build.sh kubectl)\n", kubectl[0])
	} else {
		fmt.Println("  kubectl get pods -A        # test/tools/build.sh kubectl builds a matching one")
	}
	fmt.Printf(`  images: %s (probe serve: tcp 8080, udp 8081, http 8082), %s
  import an image tarball: go run ./test/cluster/cmd/cluster import IMAGE.tar  (Go: (*cluster.Cluster).ImportImage)
  logs: %s
  make cluster-status | make cluster-down
`, cluster.ProbeImage, cluster.PauseImage, filepath.Join(c.Dir, "logs"))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "cluster:", err)
	os.Exit(1)
}
