#!/usr/bin/env bash
# helm, built once with Go from the Go module proxy into the project's local folder, for the
# chart test (tests/stack/test_helm_chart.py). Needs only Go; a second run with the pinned
# release already built does nothing.
#
#   deploy/local/helm.sh up      build helm when missing or another release, then print its path
#   deploy/local/helm.sh path    print where helm is (or would be) installed
#
# Settings (environment): CREDITS_LOCAL_DIR (.local).
set -euo pipefail

# The pinned release: go.mod of helm.sh/helm/v3 at this tag decides every dependency's version.
helm_version=v3.22.0

root=$(cd "$(dirname "$0")/../.." && pwd)
local_dir=${CREDITS_LOCAL_DIR:-$root/.local}
case "$local_dir" in /*) ;; *) local_dir=$root/$local_dir ;; esac
bin_dir=$local_dir/bin
helm_bin=$bin_dir/helm
# `go install pkg@version` leaves helm's own version string unset, so the release built is
# recorded beside the binary.
stamp=$bin_dir/helm.version

log() { printf 'helm: %s\n' "$*" >&2; }

installed() {
  [ -x "$helm_bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$helm_version" ]
}

build() {
  if ! command -v go >/dev/null 2>&1; then
    log "Go is needed to build helm $helm_version (https://go.dev/doc/install, or apt-get install golang-go)"
    return 1
  fi
  log "building helm $helm_version with $(go version | cut -d' ' -f3) (a few minutes, once)"
  mkdir -p "$bin_dir"
  local staging
  staging=$(mktemp -d "$bin_dir/.helm-build.XXXXXX")
  # A build interrupted half-way must not leave a helm that looks installed.
  trap 'rm -rf "$staging"' RETURN
  # CGO off: a static binary, no C toolchain needed. GOTOOLCHAIN=auto lets an older Go fetch the
  # toolchain helm's go.mod asks for (itself a module on the proxy).
  CGO_ENABLED=0 GOTOOLCHAIN=auto GOFLAGS="-trimpath -buildvcs=false" GOBIN="$staging" \
    go install "helm.sh/helm/v3/cmd/helm@$helm_version"
  mv -f "$staging/helm" "$helm_bin"
  printf '%s\n' "$helm_version" >"$stamp"
}

case "${1:-}" in
  up)
    installed || build
    "$helm_bin" version --short >/dev/null
    echo "$helm_bin"
    ;;
  path)
    echo "$helm_bin"
    ;;
  *)
    echo "usage: $0 up|path" >&2
    exit 2
    ;;
esac
