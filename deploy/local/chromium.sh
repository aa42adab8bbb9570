#!/usr/bin/env bash
# Debian's headless Chromium and its driver, for the browser tests of the Plan & Usage page
# (tests/portal/). Idempotent: does nothing when /usr/bin/chromium is already there.
#
#   deploy/local/chromium.sh up       install `chromium` and `chromium-driver` when missing
#   deploy/local/chromium.sh status   exit 0 when the browser runs (prints its version)
#
# The tests drive it with Playwright for Python against this executable; they never download a
# browser (`playwright install` is not used).
set -euo pipefail

browser=/usr/bin/chromium
log() { printf 'chromium: %s\n' "$*" >&2; }

status() {
  [ -x "$browser" ] && "$browser" --headless --no-sandbox --disable-gpu --version
}

up() {
  if [ -x "$browser" ]; then
    status
    return
  fi
  if [ "$(id -u)" != 0 ]; then
    log "not installed and not root: run 'apt-get install -y chromium chromium-driver' as root"
    exit 1
  fi
  log "installing chromium and chromium-driver (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  status
}

case "${1:-up}" in
  up) up ;;
  status) status ;;
  *) echo "usage: $0 up|status" >&2; exit 2 ;;
esac
