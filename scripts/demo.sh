#!/usr/bin/env bash
# The demo command, on a fresh machine by itself: installs and starts the
# two front-end databases the safety-production system exposes (PostgreSQL
# and MariaDB, Debian packages, loopback only; no-ops once running),
# installs Mosquitto (which the MQTT simulators start for themselves), then
# builds both binaries (`duijie`, which the report's "Where to look next"
# commands run, and `duijie-sandbox`), and runs `duijie-sandbox demo` on the
# embedded broker (librdkafka's mock cluster: nothing else to install). The
# hub's log goes to var/duijie-demo.log (`--verbose`: on the terminal).
# Extra arguments go to `duijie-sandbox demo` (e.g. `scripts/demo.sh
# --seconds 60`, `scripts/demo.sh --stay` to keep the desk and the public
# window up until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
# shellcheck source=scripts/services.sh
. scripts/services.sh
services_install_demo
services_start_postgres
services_start_mariadb
echo "building duijie and duijie-sandbox (release; the first build takes minutes) …"
cargo build --release -q -p duijie -p duijie-sandbox --bins
exec "${CARGO_TARGET_DIR:-target}/release/duijie-sandbox" demo "$@"
