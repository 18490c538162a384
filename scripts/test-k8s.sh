#!/usr/bin/env bash
# test-k8s.sh checks the Kubernetes manifests: it renders deploy/k8s with
# `kubectl kustomize` (offline: no cluster needed) and runs deploy/k8s-check,
# which decodes every object strictly into the k8s.io/api types and checks the
# contract of docs/deployment.md's Kubernetes section (probes, shutdown arithmetic,
# security, every configuration variable, ...). `make test-k8s` runs it.
#
# It needs kubectl. As root it installs Debian's kubernetes-client package
# when kubectl is missing, and otherwise fails: a check that cannot run is not
# a passing one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
GO=${GO:-go}

die() { echo "test-k8s: $*" >&2; exit 1; }

if ! command -v kubectl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test-k8s: kubectl not found; installing Debian's kubernetes-client package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null; } ||
      die "could not install kubernetes-client (kubectl) with apt-get"
  fi
  command -v kubectl >/dev/null ||
    die "the Kubernetes check needs kubectl (as root: apt-get install kubernetes-client); NOT skipping it"
fi

render=$(mktemp "${TMPDIR:-/tmp}/usersd-k8s.XXXXXX.yaml")
trap 'rm -f "$render"' EXIT
kubectl kustomize deploy/k8s >"$render" || die "kubectl kustomize deploy/k8s failed"
echo "test-k8s: rendered deploy/k8s with $(kubectl version --client 2>/dev/null | head -1)" >&2

$GO -C deploy/k8s-check vet ./...
K8S_RENDER=$render $GO -C deploy/k8s-check test -count=1 "$@" ./...
