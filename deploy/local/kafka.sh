#!/usr/bin/env bash
# Local Apache Kafka: a single KRaft node (broker + controller) resolved from Maven Central by
# deploy/local/kafka/pom.xml and run on the machine's JDK. Idempotent: a second `up` with the broker
# already answering only checks it.
#
#   deploy/local/kafka.sh up      resolve jars (cached), format storage once, start, wait until it answers
#   deploy/local/kafka.sh down    stop the broker (SIGTERM, then SIGKILL after a bounded wait)
#   deploy/local/kafka.sh status  exit 0 when the broker answers
#
# Settings (environment): CREDITS_LOCAL_DIR (.local), CREDITS_KAFKA_BOOTSTRAP (127.0.0.1:9092;
# the local broker's PLAINTEXT listener is its first entry), CREDITS_KAFKA_CONTROLLER_PORT (9093),
# CREDITS_KAFKA_HEAP_MB (768), CREDITS_KAFKA_START_TIMEOUT_SECONDS (90),
# CREDITS_KAFKA_SASL_PORT (empty: off; a port adds a SASL_PLAINTEXT listener with the PLAIN
# mechanism beside the PLAINTEXT one, which keeps serving everything else),
# CREDITS_KAFKA_SASL_USERS (credits:credits-local; the users that listener knows, as
# user:password,user:password, written into the broker's own JAAS configuration). Listeners are
# set when the broker starts: a running broker gets a new one at its next start.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
local_dir=${CREDITS_LOCAL_DIR:-$root/.local}
case "$local_dir" in /*) ;; *) local_dir=$root/$local_dir ;; esac
bootstrap=${CREDITS_KAFKA_BOOTSTRAP:-127.0.0.1:9092}
first=${bootstrap%%,*}
host=${first%:*}
port=${first##*:}
controller_port=${CREDITS_KAFKA_CONTROLLER_PORT:-9093}
# 2 cores and 24 GiB: a bounded heap keeps the JVM from taking a quarter of the machine.
heap_mb=${CREDITS_KAFKA_HEAP_MB:-768}
start_timeout_seconds=${CREDITS_KAFKA_START_TIMEOUT_SECONDS:-90}
sasl_port=${CREDITS_KAFKA_SASL_PORT:-}
sasl_users=${CREDITS_KAFKA_SASL_USERS:-credits:credits-local}

kafka_dir=$local_dir/kafka
libs_dir=$kafka_dir/libs
data_dir=$kafka_dir/data
log_dir=$local_dir/log/kafka
pid_file=$kafka_dir/kafka.pid
config_file=$kafka_dir/server.properties
pom=$root/deploy/local/kafka/pom.xml

log() { printf 'kafka: %s\n' "$*" >&2; }

answers() {
  python3 "$root/infra/kafka_probe.py" "$host" "${1:-$port}"
}

# The PLAIN login module's users, one `user_NAME="PASSWORD"` each. Plain characters only: the
# values go into a quoted JAAS string.
jaas_users() {
  local entry name password out=""
  local -a entries
  IFS=, read -r -a entries <<<"$sasl_users"
  for entry in "${entries[@]}"; do
    name=${entry%%:*}
    password=${entry#*:}
    if ! [[ "$entry" == *:* && "$name" =~ ^[A-Za-z0-9._-]{1,64}$ && "$password" =~ ^[A-Za-z0-9._~+/=-]{1,128}$ ]]; then
      log "CREDITS_KAFKA_SASL_USERS: want user:password,... of [A-Za-z0-9._-] names and [A-Za-z0-9._~+/=-] passwords"
      return 1
    fi
    out+=" user_${name}=\"${password}\""
  done
  printf '%s' "$out"
}

running_pid() {
  [ -f "$pid_file" ] || return 1
  local pid
  pid=$(cat "$pid_file")
  kill -0 "$pid" 2>/dev/null || return 1
  # A killed broker whose parent has not reaped it yet is a zombie: gone, for us.
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  echo "$pid"
}

ensure_java() {
  if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    log "installing a JDK and Maven (Debian packages)"
    apt-get update -qq
    # A line per package downloaded (`Get:`), no progress bars or dpkg's escape codes; errors
  # go to stderr as they are.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 default-jdk-headless maven |
    awk '/^Get:/ { print "kafka: " $0; fflush() }' >&2
  fi
}

ensure_jars() {
  local stamp=$libs_dir/.pom.sha256
  local want
  want=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  log "resolving Apache Kafka from Maven Central (cached in $libs_dir)"
  rm -rf "$libs_dir"
  mkdir -p "$libs_dir"
  mvn -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs_dir" 2>&1 </dev/null |
    awk -f "$root/deploy/local/maven_progress.awk" >&2
  echo "$want" >"$stamp"
  log "$(find "$libs_dir" -name '*.jar' | wc -l) jars in $libs_dir"
}

write_config() {
  mkdir -p "$kafka_dir" "$data_dir" "$log_dir"
  local listeners=PLAINTEXT://$host:$port advertised=PLAINTEXT://$host:$port sasl_config=""
  local protocols=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
  if [ -n "$sasl_port" ]; then
    local users
    users=$(jaas_users)
    listeners+=,SASL_PLAINTEXT://$host:$sasl_port
    advertised+=,SASL_PLAINTEXT://$host:$sasl_port
    protocols+=,SASL_PLAINTEXT:SASL_PLAINTEXT
    sasl_config="sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$users;"
  fi
  # It may hold passwords: readable by its owner only.
  : >"$config_file"
  chmod 600 "$config_file"
  cat >"$config_file" <<EOF
# Written by deploy/local/kafka.sh; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$host:$controller_port
listeners=$listeners,CONTROLLER://$host:$controller_port
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
$sasl_config
log.dirs=$data_dir
# Topics are created on purpose with a fixed partition count (credits topics create).
auto.create.topics.enable=false
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
# Fewer internal partitions than the default 50: faster start on two cores.
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=168
EOF
  cat >"$kafka_dir/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $log_dir/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
EOF
}

java_opts=(
  -Xms256m -Xmx"${heap_mb}"m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$kafka_dir/log4j2.properties"
  -cp "$libs_dir/*"
)

java_cmd() {
  java "${java_opts[@]}" "$@"
}

format_once() {
  if [ -f "$data_dir/meta.properties" ]; then
    return 0
  fi
  log "formatting storage in $data_dir"
  local cluster_id
  cluster_id=$(java_cmd kafka.tools.StorageTool random-uuid | tail -n 1)
  java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$config_file" >>"$log_dir/format.log" 2>&1
}

up() {
  # The jars belong to this checkout's stack even when a broker already answers (another
  # checkout's): tests run Kafka's own Java code from them. A stamp check when cached.
  ensure_java
  ensure_jars
  if answers; then
    log "already answering on $host:$port"
    if [ -n "$sasl_port" ] && ! answers "$sasl_port"; then
      log "the running broker has no SASL listener on $host:$sasl_port: listeners are set at start" \
        "(deploy/local/kafka.sh down, then up, if no one else uses this broker)"
      return 1
    fi
    return 0
  fi
  if pid=$(running_pid); then
    log "process $pid is up but not answering yet; waiting"
  else
    write_config
    format_once
    log "starting on $host:$port (heap ${heap_mb} MiB, logs in $log_dir)"
    # A session of its own: the broker outlives the shell that started it (make run, make test)
    # and a Ctrl-C there does not reach it. The subshell execs java, so $! is the broker's pid.
    (exec setsid java "${java_opts[@]}" kafka.Kafka "$config_file") >>"$log_dir/stdout.log" 2>&1 </dev/null &
    echo $! >"$pid_file"
  fi
  local waited=0
  until answers && { [ -z "$sasl_port" ] || answers "$sasl_port"; }; do
    if ! running_pid >/dev/null; then
      log "the broker exited; last lines of $log_dir/stdout.log:"
      tail -n 20 "$log_dir/stdout.log" >&2 || true
      return 1
    fi
    if [ "$waited" -ge "$start_timeout_seconds" ]; then
      log "not answering after ${start_timeout_seconds}s; see $log_dir"
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "answering on $host:$port${sasl_port:+ (SASL/PLAIN on $host:$sasl_port)} after ${waited}s"
}

down() {
  local pid
  if ! pid=$(running_pid); then
    log "not running"
    rm -f "$pid_file"
    return 0
  fi
  kill "$pid"
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge 30 ]; then
      log "still up after 30s; killing"
      kill -9 "$pid" 2>/dev/null || true
      break
    fi
    sleep 1
    waited=$((waited + 1))
  done
  rm -f "$pid_file"
  log "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) answers ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
