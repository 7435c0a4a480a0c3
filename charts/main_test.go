package charts

import (
	"fmt"
	"os"
	"testing"
)

// TestMain builds the pinned helm binary before any test starts. Building it takes
// minutes on a cold cache (more on busy cores), and the tests' own deadlines are for
// what they exercise on the API server, not for compiling helm: with the build inside
// the first test's context, a fresh machine timed out rendering the chart and every
// later subtest inherited the expired deadline.
func TestMain(m *testing.M) {
	if _, err := HelmBinary(); err != nil {
		fmt.Fprintf(os.Stderr, "charts tests need helm and it could not be built: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
