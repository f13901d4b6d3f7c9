# Sourced by scripts/test.sh and the benchmark scripts: installs (Debian
# packages, once) and starts on loopback the real components the tests use:
# PostgreSQL and MariaDB (the front-end databases, 前置机), Mosquitto (the
# 平安宜昌 video platform's MQTT broker), headless Chromium with its WebDriver
# and a CJK font (the desk's browser tests), and Apache Kafka (scripts/kafka.sh).
# Every step is a no-op when it is already done.

# Installs the Debian packages named, those not installed yet.
services_apt() {
  local missing=("$@")
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing ${missing[*]} (Debian packages, once)"
  export DEBIAN_FRONTEND=noninteractive
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -q "${missing[@]}" >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
}

# What the demo needs: PostgreSQL and MariaDB (the safety front ends), and
# Mosquitto (the demo's MQTT simulators start their own broker from it).
services_install_demo() {
  local missing=()
  command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
  [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
  [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  services_apt "${missing[@]}"
}

# Python with the packages the interop tests use (gmssl, the pure-Python
# SM2/SM3/SM4; cryptography, SM4-GCM; confluent-kafka with its Avro
# deserializer and schema-registry client, the independent reader of the
# Confluent wire format), in a virtualenv cached outside the clone;
# exports DUIJIE_TEST_PYTHON.
services_python() {
  local env=/var/tmp/duijie-pyenv
  if ! "$env/bin/python" -c 'import gmssl, cryptography, fastavro, confluent_kafka.schema_registry.avro' >/dev/null 2>&1; then
    echo "== installing gmssl, cryptography and confluent-kafka (PyPI) into $env, once"
    [ -x "$env/bin/pip" ] || python3 -m venv "$env" >/dev/null 2>&1 || { services_apt python3-venv && python3 -m venv "$env"; }
    "$env/bin/pip" install -q 'gmssl==3.2.2' 'cryptography>=44' 'confluent-kafka[avro,schemaregistry]==2.12.0' >/dev/null
  fi
  export DUIJIE_TEST_PYTHON="$env/bin/python"
}

# Everything the tests use.
services_install() {
  local missing=()
  command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
  [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
  [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  [ "$(dpkg-query -W -f='${Status}' fonts-wqy-zenhei 2>/dev/null)" = "install ok installed" ] || missing+=(fonts-wqy-zenhei)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  services_apt "${missing[@]}"
  services_python
}

# PostgreSQL: the packaged cluster, trusting loopback connections as user
# postgres, with a database `test` (what tests/ and pipelines/ connect to).
services_start_postgres() {
  local version
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q "duijie-test" "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust # duijie-test: loopback only' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
  fi
  pg_isready -h 127.0.0.1 -q 2>/dev/null \
    || pg_ctlcluster --skip-systemctl-redirect "$version" main start
  local _
  for _ in $(seq 1 150); do pg_isready -h 127.0.0.1 -q 2>/dev/null && break; sleep 0.2; done
  psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -qc "create database test"
}

# MariaDB: bound to loopback, root without a password over TCP from
# 127.0.0.1, with a database `test`.
services_start_mariadb() {
  if ! mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    start-stop-daemon --start --oknodo --background --chuid mysql \
      --exec /usr/sbin/mariadbd -- --bind-address=127.0.0.1 --skip-name-resolve
    local _
    for _ in $(seq 1 150); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.2; done
    mariadb -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
                GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
                CREATE DATABASE IF NOT EXISTS test;"
  fi
  mariadb-admin -h 127.0.0.1 -u root ping >/dev/null
}

# Mosquitto on a loopback port of its own, with password authentication;
# exports DUIJIE_TEST_MQTT (host:port) and the test user's credentials.
services_start_mosquitto() {
  local dir="$1"
  mkdir -p "$dir"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  : >"$dir/passwd"
  mosquitto_passwd -b "$dir/passwd" duijie-test duijie-test-password
  chmod 0600 "$dir/passwd"
  cat >"$dir/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous false
password_file $dir/passwd
persistence true
persistence_location $dir/
log_dest file $dir/mosquitto.log
pid_file $dir/pid
EOF
  chown -R mosquitto "$dir" 2>/dev/null || true
  mosquitto -c "$dir/mosquitto.conf" -d
  local _
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  export DUIJIE_TEST_MQTT="127.0.0.1:$port"
  export DUIJIE_TEST_MQTT_CONF="$dir/mosquitto.conf"
  export DUIJIE_TEST_MQTT_USER=duijie-test
  export DUIJIE_TEST_MQTT_PASSWORD=duijie-test-password
}

services_stop_mosquitto() {
  local dir="$1"
  [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
}
