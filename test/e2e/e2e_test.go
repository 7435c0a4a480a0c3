package e2e

import (
	"testing"
)

func TestPrivilegedHelmInstall(t *testing.T) {
	_, in := setup(t)
	t.Logf("build+import %s, helm install --wait %s", in.BuildTook, in.HelmTook)
}
