#!/usr/bin/env bash
# helm, built once with Go from the Go module proxy into the project's local folder, for the
# chart test (tests/stack/test_helm_chart.py). Needs only Go; a second run with the pinned
# release already built does nothing.
#
#   deploy/local/helm.sh up      build helm when missing or another release, then print its path
#   deploy/local/helm.sh start   the same in the background (log in .local/helm-build.log), so
#                                that a first build (minutes: downloads and compiling) overlaps
#                                the rest of `make test`'s set-up; a later `up` waits for it
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
  trap 'rm -rf "${staging:-}"; trap - RETURN' RETURN
  # CGO off: a static binary, no C toolchain needed. GOTOOLCHAIN=auto lets an older Go fetch the
  # toolchain helm's go.mod asks for (itself a module on the proxy).
  CGO_ENABLED=0 GOTOOLCHAIN=auto GOFLAGS="-trimpath -buildvcs=false" GOBIN="$staging" \
    go install "helm.sh/helm/v3/cmd/helm@$helm_version"
  mv -f "$staging/helm" "$helm_bin"
  printf '%s\n' "$helm_version" >"$stamp"
}

# One build at a time: a second `up` (or the one after `start`) waits for the first one's lock,
# then finds helm built. A limit on the wait: a build that has not ended in 20 minutes failed.
lock=$local_dir/helm.lock
LOCK_WAIT_SECONDS=1200

locked_up() {
  mkdir -p "$local_dir"
  exec 9>"$lock"
  flock -w "$LOCK_WAIT_SECONDS" 9 || { log "another helm build held the lock for ${LOCK_WAIT_SECONDS}s"; return 1; }
  installed || build
}

case "${1:-}" in
  up)
    locked_up
    "$helm_bin" version --short >/dev/null
    echo "$helm_bin"
    ;;
  start)
    if installed; then
      exit 0
    fi
    mkdir -p "$local_dir"
    log "building in the background (log: $local_dir/helm-build.log)"
    nohup "$0" up >"$local_dir/helm-build.log" 2>&1 </dev/null &
    # The background build takes the lock before this returns, so a later `up` waits for it.
    for _ in $(seq 1 50); do
      if [ -f "$lock" ] && ! flock -n "$lock" true 2>/dev/null; then break; fi
      sleep 0.1
    done
    ;;
  path)
    echo "$helm_bin"
    ;;
  *)
    echo "usage: $0 up|start|path" >&2
    exit 2
    ;;
esac
