package compile

import (
	"math/rand/v2"
	"net/netip"

	"github.com/strictgate/strictgate/agent/compile/compiletest"
)

var (
	nsNames     = compiletest.NsNames
	podNames    = compiletest.PodNames
	testPorts   = compiletest.TestPorts
	randLabels  = compiletest.RandLabels
	randPod     = compiletest.RandPod
	randPolicy  = compiletest.RandPolicy
	randService = compiletest.RandService
)

func randState(r *rand.Rand) State { return State(compiletest.RandCluster(r)) }

func remotes(s State) []netip.Addr { return compiletest.Remotes(compiletest.Cluster(s)) }
