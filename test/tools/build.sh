#!/usr/bin/env bash
# build.sh COMPONENT... — builds outside components from the Go module proxy into a
# cache keyed by version and prints nothing but errors. Idempotent: a component whose
# binary is already cached is not rebuilt.
#
#   $STRICTGATE_CACHE/<component>-<version>/<binary>
#
# Components: kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
#             kubectl etcd containerd runc cni-plugins helm e2e-netpol agnhost ginkgo e2e-full
#
# containerd installs containerd, containerd-shim-runc-v2 and ctr into one directory;
# cni-plugins installs ptp, host-local and loopback; runc needs cgo and libseccomp-dev.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${STRICTGATE_CACHE:-$HOME/.cache/strictgate}
mkdir -p "$cache"
export GOFLAGS=-mod=mod CGO_ENABLED=${CGO_ENABLED:-0} GOTOOLCHAIN=local

# kube_module prepares a throw-away module that builds k8s.io/kubernetes commands with
# every staging module replaced by its released version (the monorepo's own replace
# directives point at ./staging, which a module download does not have).
kube_module() {
  local dir="$cache/src/kubernetes-$KUBERNETES_VERSION"
  if [ ! -f "$dir/.ready" ]; then
    rm -rf "$dir"; mkdir -p "$dir"
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    {
      echo "module strictgate.local/kubebuild"
      echo
      echo "go 1.26.0"
      echo
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo
      grep '=> ./staging/src/' "$gomod" | awk -v v="$KUBE_STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
    } > "$dir/go.mod"
    printf 'package kubebuild\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n' > "$dir/tools.go"
    (cd "$dir" && go mod tidy >/dev/null 2>&1 || true; go mod download all >/dev/null 2>&1 || true)
    touch "$dir/.ready"
  fi
  echo "$dir"
}

ldflags_kube() {
  local p=k8s.io/client-go/pkg/version q=k8s.io/component-base/version
  echo "-s -w -X $p.gitVersion=$KUBERNETES_VERSION -X $q.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $q.gitMajor=1 -X $p.gitMinor=${KUBERNETES_VERSION#v1.} -X $q.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2) -X $q.gitTreeState=clean -X $q.buildDate=1970-01-01T00:00:00Z"
}

build_kube() {
  local name=$1 out="$cache/$1-$KUBERNETES_VERSION"
  [ -x "$out/$name" ] && return 0
  local mod; mod=$(kube_module)
  local tags=""
  [ "$name" = kubelet ] && tags="-tags=providerless"
  mkdir -p "$out.tmp"
  (cd "$mod" && go build $tags -trimpath -ldflags "$(ldflags_kube)" -o "$out.tmp/$name" "k8s.io/kubernetes/cmd/$name")
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# kube_e2e_module is kube_module for the e2e side (the netpol suite, agnhost): a module
# directory of its own, so resolving test/e2e's many extra dependencies never touches the
# module the control plane is built from (and never invalidates its cached builds).
kube_e2e_module() {
  local dir="$cache/src/kubernetes-e2e-$KUBERNETES_VERSION"
  if [ ! -f "$dir/.ready" ]; then
    rm -rf "$dir"; mkdir -p "$dir/netpol"
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    {
      echo "module strictgate.local/kubee2e"
      echo
      echo "go 1.26.0"
      echo
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo
      grep '=> ./staging/src/' "$gomod" | awk -v v="$KUBE_STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
    } > "$dir/go.mod"
    printf '//go:build tools\n\npackage kubee2e\n\nimport (\n\t_ "github.com/onsi/ginkgo/v2/ginkgo"\n\t_ "k8s.io/kubernetes/test/e2e"\n\t_ "k8s.io/kubernetes/test/e2e/network/netpol"\n\t_ "k8s.io/kubernetes/test/images/agnhost"\n)\n' > "$dir/tools.go"
    e2e_netpol_main > "$dir/netpol/netpol_test.go"
    (cd "$dir" && go mod tidy >/dev/null 2>&1 || true; go mod download all >/dev/null 2>&1 || true)
    touch "$dir/.ready"
  fi
  echo "$dir"
}

# e2e_netpol_main writes the test main of the netpol-only suite binary: the entry point
# of k8s.io/kubernetes/test/e2e (its flags, its suite set-up, RunE2ETests) with only the
# [sig-network] Netpol spec package linked in, unmodified. The whole e2e.test links every
# SIG's specs and takes far longer to build (test/netpol/README.md has the numbers).
e2e_netpol_main() {
  cat <<'GO'
// Package netpol is the [sig-network] Netpol suite of k8s.io/kubernetes/test/e2e, alone.
package netpol

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"k8s.io/component-base/version"
	"k8s.io/kubernetes/test/e2e"
	"k8s.io/kubernetes/test/e2e/framework"
	"k8s.io/kubernetes/test/e2e/framework/config"

	// The framework's own extensions, as the full suite links them.
	_ "k8s.io/kubernetes/test/e2e/framework/debug/init"
	_ "k8s.io/kubernetes/test/e2e/framework/metrics/init"
	_ "k8s.io/kubernetes/test/e2e/framework/node/init"
	_ "k8s.io/kubernetes/test/utils/ktesting/format"

	// The only specs in this binary.
	_ "k8s.io/kubernetes/test/e2e/network/netpol"
)

func TestMain(m *testing.M) {
	showVersion := flag.Bool("version", false, "print the Kubernetes version the suite was built from")
	config.CopyFlags(config.Flags, flag.CommandLine)
	framework.RegisterCommonFlags(flag.CommandLine)
	framework.RegisterClusterFlags(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Get())
		os.Exit(0)
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unknown arguments: %v\n", flag.Args())
		os.Exit(2)
	}
	framework.AfterReadingAllFlags(&framework.TestContext)
	os.Exit(m.Run())
}

func TestE2E(t *testing.T) { e2e.RunE2ETests(t) }
GO
}

# build_e2e builds a suite binary: e2e-netpol (the netpol specs only, what the tests
# use) or e2e-full (the real e2e.test with every SIG's specs, for comparison).
build_e2e() {
  local name=$1 out="$cache/$1-$KUBERNETES_VERSION"
  [ -x "$out/e2e.test" ] && return 0
  local mod; mod=$(kube_e2e_module) pkg=./netpol
  [ "$name" = e2e-full ] && pkg=k8s.io/kubernetes/test/e2e
  mkdir -p "$out.tmp"
  (cd "$mod" && go test -c -trimpath -ldflags "$(ldflags_kube)" -o "$out.tmp/e2e.test" "$pkg")
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# build_e2e_tool builds a main package of the e2e module's build list: agnhost (the
# suite's server and client) or ginkgo (the CLI that runs a suite binary in parallel
# processes), at the versions k8s.io/kubernetes@$KUBERNETES_VERSION pins.
build_e2e_tool() {
  local name=$1 pkg=$2 out="$cache/$1-$KUBERNETES_VERSION"
  [ -x "$out/$name" ] && return 0
  local mod; mod=$(kube_e2e_module)
  mkdir -p "$out.tmp"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/$name" "$pkg")
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# go_build builds main packages of module@version into one cache directory through a
# throw-away module: `go install pkg@version` refuses modules with replace directives
# (etcd has them) and cannot put several binaries of one version side by side.
#   go_build NAME MODULE VERSION TAGS BIN=PKG...
go_build() {
  local name=$1 module=$2 version=$3 tags=$4; shift 4
  local out="$cache/$name-$version" spec missing=0
  for spec in "$@"; do [ -x "$out/${spec%%=*}" ] || missing=1; done
  [ "$missing" = 0 ] && return 0
  local dir="$cache/src/$name-$version"
  mkdir -p "$dir" "$out.tmp"
  if [ ! -f "$dir/go.mod" ]; then
    printf 'module strictgate.local/build\n\ngo 1.26.0\n' > "$dir/go.mod"
  fi
  (cd "$dir" && go get "$module@$version" >/dev/null 2>&1 && go mod download all >/dev/null 2>&1 || true)
  for spec in "$@"; do
    (cd "$dir" && go build ${tags:+-tags "$tags"} -trimpath -ldflags "-s -w" -o "$out.tmp/${spec%%=*}" "${spec#*=}")
  done
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# One build at a time: tests in several packages may ask for the same component at once.
exec 9>"$cache/.build.lock"
flock 9

for c in "$@"; do
  case "$c" in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl) build_kube "$c" ;;
    e2e-netpol|e2e-full) build_e2e "$c" ;;
    agnhost) build_e2e_tool agnhost k8s.io/kubernetes/test/images/agnhost ;;
    ginkgo) build_e2e_tool ginkgo github.com/onsi/ginkgo/v2/ginkgo ;;
    etcd) go_build etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "" etcd=go.etcd.io/etcd/server/v3 ;;
    helm) go_build helm helm.sh/helm/v3 "$HELM_VERSION" "" helm=helm.sh/helm/v3/cmd/helm ;;
    containerd)
      m=github.com/containerd/containerd/v2
      go_build containerd "$m" "$CONTAINERD_VERSION" "no_btrfs no_devmapper no_zfs" \
        containerd=$m/cmd/containerd containerd-shim-runc-v2=$m/cmd/containerd-shim-runc-v2 ctr=$m/cmd/ctr ;;
    runc)
      # Debian's runc 1.1.5 fails on this kernel; seccomp support needs cgo + libseccomp.
      CGO_ENABLED=1 go_build runc github.com/opencontainers/runc "$RUNC_VERSION" seccomp runc=github.com/opencontainers/runc ;;
    cni-plugins)
      m=github.com/containernetworking/plugins
      go_build cni-plugins "$m" "$CNI_PLUGINS_VERSION" "" \
        ptp=$m/plugins/main/ptp host-local=$m/plugins/ipam/host-local loopback=$m/plugins/main/loopback ;;
    *) echo "build.sh: unknown component $c" >&2; exit 2 ;;
  esac
done
