#!/usr/bin/env bash
# Apache Kafka (KRaft, no ZooKeeper) for the tests and benchmarks, from its
# Maven artifacts (scripts/kafka/pom.xml), on loopback only.
#
#   scripts/kafka.sh fetch                 fetch the jars once into the cache
#   scripts/kafka.sh start DIR [NODES]     format and start NODES (1 or 3) combined
#                                          broker+controller nodes in DIR; prints the
#                                          bootstrap list, also written to DIR/bootstrap
#   scripts/kafka.sh stop DIR              stop every node of DIR (SIGTERM, then SIGKILL)
#   scripts/kafka.sh kill-node DIR I       SIGKILL node I (broker-failure tests)
#   scripts/kafka.sh start-node DIR I      start node I again on its old storage and ports
#
# The jars live outside the clone, in $DUIJIE_KAFKA_CACHE (default
# /var/tmp/duijie-kafka/<version>/libs); `mvn dependency:copy-dependencies`
# fills it on first use and is skipped after that.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")"
cache="${DUIJIE_KAFKA_CACHE:-/var/tmp/duijie-kafka/$version}"
libs="$cache/libs"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  echo "== fetching Apache Kafka $version from Maven Central into $libs (once)" >&2
  rm -rf "$libs"
  mkdir -p "$libs"
  (cd "$here/kafka" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$libs") >&2
  touch "$libs/.complete"
}

# N distinct free loopback ports, one a line: every socket stays bound until
# all are taken, so the kernel cannot hand out the same port twice.
free_ports() {
  python3 -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
for s in socks: print(s.getsockname()[1])
' "$1"
}

node_pid() { cat "$1/node-$2/pid" 2>/dev/null || true; }

start_node() {
  local dir="$1" i="$2" node="$1/node-$2"
  : >"$node/server.log"
  # shellcheck disable=SC2086
  nohup "$java" -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$node/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$node/server.properties" >"$node/stdout.log" 2>&1 &
  echo $! >"$node/pid"
}

wait_ready() {
  local dir="$1"; shift
  local deadline=$((SECONDS + 90))
  for i in "$@"; do
    until grep -q "Kafka Server started" "$dir/node-$i/server.log" 2>/dev/null; do
      if ! kill -0 "$(node_pid "$dir" "$i")" 2>/dev/null; then
        echo "kafka node $i exited while starting:" >&2
        tail -n 40 "$dir/node-$i/stdout.log" "$dir/node-$i/server.log" >&2
        return 1
      fi
      if [ $SECONDS -ge $deadline ]; then
        echo "kafka node $i did not start within 90 s" >&2
        tail -n 40 "$dir/node-$i/server.log" >&2
        return 1
      fi
      sleep 0.2
    done
  done
}

start() {
  local dir="$1" nodes="${2:-1}"
  fetch
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local rf=1 isr=1
  if [ "$nodes" -ge 3 ]; then rf=3; isr=2; fi
  local voters="" bootstrap="" i
  declare -A bport cport
  local ports
  mapfile -t ports < <(free_ports $((2 * nodes)))
  for i in $(seq 1 "$nodes"); do
    bport[$i]=${ports[$((2 * i - 2))]}; cport[$i]=${ports[$((2 * i - 1))]}
    voters="${voters:+$voters,}$i@127.0.0.1:${cport[$i]}"
    bootstrap="${bootstrap:+$bootstrap,}127.0.0.1:${bport[$i]}"
  done
  # A Kafka cluster id is 22 characters of URL-safe base64; one that starts
  # with `-` is passed as `--cluster-id=…` so it is not read as an option.
  local cluster_id
  cluster_id=$(python3 -c 'import base64,uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')
  for i in $(seq 1 "$nodes"); do
    local node="$dir/node-$i"
    mkdir -p "$node/data"
    cat >"$node/server.properties" <<EOF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${bport[$i]},CONTROLLER://127.0.0.1:${cport[$i]}
advertised.listeners=PLAINTEXT://127.0.0.1:${bport[$i]}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$node/data
num.partitions=1
auto.create.topics.enable=true
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
# KIP-848 groups (group_protocol = "consumer") may set a session short
# enough for a 2 s takeover (the defaults' minimums are 45 s and 5 s).
group.consumer.min.session.timeout.ms=1000
group.consumer.min.heartbeat.interval.ms=100
# The log cleaner runs often so that compaction is visible within a test.
log.cleaner.backoff.ms=1000
log.retention.check.interval.ms=5000
EOF
    cat >"$node/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $node/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = org.apache.kafka
logger.kafka.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
EOF
    "$java" -cp "$libs/*" -Dlog4j2.configurationFile="$node/log4j2.properties" \
      kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$node/server.properties" >"$node/format.log" 2>&1 \
      || { echo "formatting kafka node $i failed:" >&2; cat "$node/format.log" >&2; return 1; }
  done
  for i in $(seq 1 "$nodes"); do start_node "$dir" "$i"; done
  echo "$nodes" >"$dir/nodes"
  echo "$bootstrap" >"$dir/bootstrap"
  wait_ready "$dir" $(seq 1 "$nodes") || { stop "$dir"; return 1; }
  echo "$bootstrap"
}

stop() {
  local dir="$1" i pid
  [ -f "$dir/nodes" ] || return 0
  for i in $(seq 1 "$(cat "$dir/nodes")"); do
    pid=$(node_pid "$dir" "$i"); [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  local deadline=$((SECONDS + 20))
  for i in $(seq 1 "$(cat "$dir/nodes")"); do
    pid=$(node_pid "$dir" "$i")
    while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then kill -9 "$pid" 2>/dev/null || true; fi
      sleep 0.1
    done
  done
}

case "${1:-}" in
  fetch) fetch ;;
  start) start "${2:?DIR}" "${3:-1}" ;;
  stop) stop "${2:?DIR}" ;;
  kill-node) kill -9 "$(node_pid "${2:?DIR}" "${3:?I}")" ;;
  start-node) start_node "${2:?DIR}" "${3:?I}"; wait_ready "$2" "$3" ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
