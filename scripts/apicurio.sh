#!/usr/bin/env bash
# Apicurio Registry 3.x for the tests, from its Maven Central distribution
# (io.apicurio:apicurio-registry-app, tar.gz, classifier `all`), on
# loopback only, in-memory storage (its default), on a Java 21+ runtime
# (the Temurin 25 JDK beside Java 17, or $DUIJIE_APICURIO_JAVA).
#
#   scripts/apicurio.sh fetch        fetch and unpack it once into the cache
#   scripts/apicurio.sh start DIR    start it in DIR; prints its Confluent-
#                                    compatible API's URL (also DIR/url)
#   scripts/apicurio.sh stop DIR     stop it (SIGTERM, then SIGKILL)
#
# The distribution lives outside the clone, in $DUIJIE_APICURIO_CACHE
# (default /var/tmp/duijie-apicurio/<version>).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's:.*<apicurio.version>\(.*\)</apicurio.version>.*:\1:p' "$here/apicurio/pom.xml")"
cache="${DUIJIE_APICURIO_CACHE:-/var/tmp/duijie-apicurio/$version}"

java_bin() {
  if [ -n "${DUIJIE_APICURIO_JAVA:-}" ]; then echo "$DUIJIE_APICURIO_JAVA"; return; fi
  for j in /usr/lib/jvm/temurin-25-jdk-amd64/bin/java /usr/lib/jvm/temurin-21-jdk-amd64/bin/java; do
    if [ -x "$j" ]; then echo "$j"; return; fi
  done
  echo "Apicurio Registry $version needs Java 21 or later: set DUIJIE_APICURIO_JAVA" >&2
  exit 1
}

fetch() {
  if [ -f "$cache/.complete" ]; then return 0; fi
  echo "== fetching Apicurio Registry $version from Maven Central into $cache (once)" >&2
  rm -rf "$cache"
  mkdir -p "$cache"
  (cd "$here/apicurio" && mvn -q -B dependency:copy \
    -Dartifact="io.apicurio:apicurio-registry-app:$version:tar.gz:all" \
    -DoutputDirectory="$cache") >&2
  tar xzf "$cache/apicurio-registry-app-$version-all.tar.gz" -C "$cache"
  rm -f "$cache/apicurio-registry-app-$version-all.tar.gz"
  touch "$cache/.complete"
}

free_ports() {
  python3 -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
for s in socks: print(s.getsockname()[1])
' "$1"
}

start() {
  local dir="$1"
  fetch
  mkdir -p "$dir"
  local java ports port management
  java="$(java_bin)"
  ports="$(free_ports 2)"
  port="$(echo "$ports" | sed -n 1p)"
  management="$(echo "$ports" | sed -n 2p)"
  # The JVM's own pid in DIR/pid (not a subshell's: stop must reach it).
  nohup "$java" -Xms128m -Xmx512m \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$management" \
    -jar "$cache/quarkus-run.jar" >"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  local url="http://127.0.0.1:$port/apis/ccompat/v7"
  local deadline=$((SECONDS + 120))
  until curl -fsS -m 2 "$url/subjects" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "Apicurio Registry did not start; its log: $dir/server.log" >&2
      tail -20 "$dir/server.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
  echo "$url" >"$dir/url"
  echo "$url"
}

stop() {
  local dir="$1" pid
  pid="$(cat "$dir/pid" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start "${2:?DIR}" ;;
  stop) stop "${2:?DIR}" ;;
  *) echo "usage: $0 fetch | start DIR | stop DIR" >&2; exit 2 ;;
esac
