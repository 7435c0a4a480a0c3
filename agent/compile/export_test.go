package compile

import (
	"math/rand/v2"
	"net/netip"
)

// RandState and Remotes expose the random cluster generator of reference_test.go to
// the external tests (the engine differential test).
func RandState(seed uint64) State { return randState(rand.New(rand.NewPCG(seed, 42))) }

func Remotes(s State) []netip.Addr { return remotes(s) }
