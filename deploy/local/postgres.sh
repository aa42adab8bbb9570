#!/usr/bin/env bash
# Local PostgreSQL from Debian's packages, with its cluster inside the project's local folder.
# Idempotent: a second `up` with the server already answering only checks it (and the database).
#
#   deploy/local/postgres.sh up      install if missing, initdb once, start, create role and database
#   deploy/local/postgres.sh down    stop the server (fast shutdown: sessions end, nothing committed lost)
#   deploy/local/postgres.sh status  exit 0 when the server accepts connections
#
# Settings (environment): CREDITS_LOCAL_DIR (.local), CREDITS_PG_HOST (127.0.0.1),
# CREDITS_PG_PORT (55432), CREDITS_PG_USER (credits), CREDITS_PG_PASSWORD (credits),
# CREDITS_PG_DATABASE (credits).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
local_dir=${CREDITS_LOCAL_DIR:-$root/.local}
case "$local_dir" in /*) ;; *) local_dir=$root/$local_dir ;; esac
host=${CREDITS_PG_HOST:-127.0.0.1}
# Not 5432: a machine may already run its own cluster there.
port=${CREDITS_PG_PORT:-55432}
user=${CREDITS_PG_USER:-credits}
password=${CREDITS_PG_PASSWORD:-credits}
database=${CREDITS_PG_DATABASE:-credits}

pg_dir=$local_dir/pg
data_dir=$pg_dir/data
socket_dir=$pg_dir/run
log_dir=$local_dir/log/postgres

log() { printf 'postgres: %s\n' "$*" >&2; }

# initdb and postgres refuse to run as root: as root, run them as the `postgres` user.
if [ "$(id -u)" = 0 ]; then
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

find_bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

ensure_installed() {
  if bin_dir=$(find_bin_dir); then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    log "PostgreSQL is not installed; run: sudo apt-get install postgresql"
    return 1
  fi
  log "installing PostgreSQL (Debian packages)"
  apt-get update -qq
  # policy-rc.d 101: the package must not start its own cluster; ours lives in .local/.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  # A line per package downloaded (`Get:`), no progress bars or dpkg's escape codes; errors
  # go to stderr as they are.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 postgresql |
    awk '/^Get:/ { print "postgres: " $0; fflush() }' >&2
  rm -f /usr/sbin/policy-rc.d
  bin_dir=$(find_bin_dir)
}

ready() {
  local bin
  bin=$(find_bin_dir) || return 1
  "$bin/pg_isready" -q -h "$host" -p "$port"
}

# The `postgres` user must reach the data folder. A clone in a private temp folder (mode 700) is
# not reachable, so grant search (x, not read) on the ancestors that lack it.
ensure_reachable() {
  [ "$(id -u)" = 0 ] || return 0
  local dir=$pg_dir
  local -a blocked=()
  while [ "$dir" != "/" ]; do
    dir=$(dirname "$dir")
    if [ -d "$dir" ] && ! runuser -u postgres -- test -x "$dir"; then
      blocked+=("$dir")
    fi
  done
  if [ ${#blocked[@]} -gt 0 ]; then
    log "granting search permission to others on: ${blocked[*]}"
    chmod o+x "${blocked[@]}"
  fi
}

init_once() {
  mkdir -p "$pg_dir" "$socket_dir" "$log_dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$pg_dir" "$socket_dir" "$log_dir"
  fi
  ensure_reachable
  if [ -f "$data_dir/PG_VERSION" ]; then
    return 0
  fi
  log "initdb in $data_dir"
  # Superuser `postgres` by socket only (trust); everyone else by password over TCP.
  as_pg "$bin_dir/initdb" -D "$data_dir" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >"$log_dir/initdb.log"
  # Sized for 2 cores and 24 GiB. fsync and synchronous_commit stay on: acknowledged work must
  # survive a crash.
  cat >>"$data_dir/postgresql.conf" <<EOF

# Written once by deploy/local/postgres.sh.
listen_addresses = '$host'
port = $port
unix_socket_directories = '$socket_dir'
max_connections = 200
shared_buffers = 512MB
effective_cache_size = 4GB
work_mem = 16MB
maintenance_work_mem = 256MB
wal_buffers = 16MB
max_wal_size = 2GB
checkpoint_timeout = 15min
fsync = on
synchronous_commit = on
logging_collector = off
log_min_messages = warning
EOF
}

start() {
  log "starting on $host:$port (data in $data_dir)"
  # pg_ctl detaches the server into its own session, so a Ctrl-C in make run does not reach it.
  # Address, port and socket folder from the settings of this start, not those initdb wrote
  # into postgresql.conf: a changed CREDITS_PG_PORT must not leave the server on the old one.
  as_pg "$bin_dir/pg_ctl" -D "$data_dir" -l "$log_dir/server.log" -w -t 60 \
    -o "-c listen_addresses=$host -c port=$port -c unix_socket_directories=$socket_dir" start >/dev/null
}

ensure_database() {
  local psql=("$bin_dir/psql" -h "$socket_dir" -p "$port" -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [ "$(as_pg "${psql[@]}" -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" != 1 ]; then
    log "creating role $user"
    as_pg "${psql[@]}" -d postgres -c "CREATE ROLE \"$user\" LOGIN CREATEDB PASSWORD '$password'"
  fi
  if [ "$(as_pg "${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$database'")" != 1 ]; then
    log "creating database $database"
    as_pg "${psql[@]}" -d postgres -c "CREATE DATABASE \"$database\" OWNER \"$user\""
  fi
}

# The role and database answer over TCP with the configured password: all the service needs.
database_answers() {
  PGPASSWORD=$password PGCONNECT_TIMEOUT=5 "$bin_dir/psql" -h "$host" -p "$port" -U "$user" \
    -d "$database" -qtA -c "SELECT 1" >/dev/null 2>&1
}

up() {
  ensure_installed
  if ready; then
    log "already answering on $host:$port"
    if database_answers; then
      log "ready: postgresql://$user@$host:$port/$database"
      return 0
    fi
    if [ ! -f "$data_dir/postmaster.pid" ]; then
      # Another checkout's (or the machine's) server holds the port: not ours to change.
      log "a server on $host:$port that this checkout did not start refuses $user@$database;"
      log "stop it, or set CREDITS_PG_PORT to a free port"
      return 1
    fi
  else
    init_once
    start
  fi
  ensure_database
  log "ready: postgresql://$user@$host:$port/$database"
}

down() {
  bin_dir=$(find_bin_dir) || { log "not installed"; return 0; }
  if [ ! -f "$data_dir/postmaster.pid" ]; then
    log "not running"
    return 0
  fi
  as_pg "$bin_dir/pg_ctl" -D "$data_dir" -m fast -w -t 60 stop >/dev/null
  log "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) ready ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
