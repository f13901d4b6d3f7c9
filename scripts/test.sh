#!/usr/bin/env bash
# The test command: the whole suite against the real components, on a fresh
# machine by itself.
#
# Installs what is missing (Debian packages; Kafka jars from Maven Central
# into a cache outside the clone), starts PostgreSQL, MariaDB, Mosquitto and
# a one-node Apache Kafka and Apicurio Registry (from Maven Central, cached
# outside the clone, on the Java 21+ JDK) on loopback, exports
# DUIJIE_TEST_BROKERS, DUIJIE_TEST_REGISTRY and DUIJIE_TEST_MQTT, runs
# `cargo test`, and stops what it started.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh ingest`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
command -v java >/dev/null || { echo "java 17+ is required (Apache Kafka)"; exit 1; }
command -v mvn >/dev/null || { echo "mvn is required (fetches the Kafka jars)"; exit 1; }

# shellcheck source=scripts/services.sh
. scripts/services.sh
services_install
services_start_postgres
services_start_mariadb

run_dir=$(mktemp -d -t duijie-test.XXXXXX)
cleanup() {
  scripts/kafka.sh stop "$run_dir/kafka" || true
  scripts/apicurio.sh stop "$run_dir/apicurio" || true
  services_stop_mosquitto "$run_dir/mosquitto"
  rm -rf "$run_dir"
}
trap cleanup EXIT
services_start_mosquitto "$run_dir/mosquitto"
DUIJIE_TEST_BROKERS="$(scripts/kafka.sh start "$run_dir/kafka" 1)"
export DUIJIE_TEST_BROKERS
DUIJIE_TEST_REGISTRY="$(scripts/apicurio.sh start "$run_dir/apicurio")"
export DUIJIE_TEST_REGISTRY
echo "== Apache Kafka on $DUIJIE_TEST_BROKERS, Apicurio Registry at $DUIJIE_TEST_REGISTRY, Mosquitto on $DUIJIE_TEST_MQTT, PostgreSQL and MariaDB on 127.0.0.1"

cargo test --workspace "$@"
