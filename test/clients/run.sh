#!/usr/bin/env bash
# Runs the real-client suites (python pika, RabbitMQ Java client) against a
# freshly built warren-server on a free loopback port, or against
# $WARREN_CLIENTS_AGAINST_URL / $WARREN_CLIENTS_AGAINST_PORT when set (to
# check the suites themselves against RabbitMQ). Exits non-zero on failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

missing=()
/usr/bin/python3 -c 'import pika' 2>/dev/null || missing+=(python3-pika)
[ -e /usr/share/java/amqp-client.jar ] || missing+=(librabbitmq-client-java)
[ -e /usr/share/java/slf4j-api.jar ] || missing+=(libslf4j-java)
command -v javac >/dev/null || missing+=(default-jdk-headless)
if [ ${#missing[@]} -gt 0 ]; then
  echo "clients: missing Debian packages: ${missing[*]} (apt-get install -y ${missing[*]})" >&2
  exit 1
fi

if [ -n "${WARREN_CLIENTS_AGAINST_PORT:-}" ]; then
  port=$WARREN_CLIENTS_AGAINST_PORT
else
  (cd "$root" && go build -o "$tmp/warren-server" ./cmd/warren-server)
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$tmp/warren-server" --port "$port" --management-port 0 --prometheus-port 0 --control-port 0 --data-dir "$tmp/data" >"$tmp/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
fi

status=0
echo "clients: python pika against 127.0.0.1:$port"
AMQP_URL="amqp://guest:guest@127.0.0.1:$port/%2F" timeout 120 /usr/bin/python3 "$here/pika_basic.py" || status=1
echo "clients: python pika queue features against 127.0.0.1:$port"
AMQP_URL="amqp://guest:guest@127.0.0.1:$port/%2F" timeout 120 /usr/bin/python3 "$here/pika_features.py" || status=1
echo "clients: RabbitMQ Java client against 127.0.0.1:$port"
CP=/usr/share/java/amqp-client.jar:/usr/share/java/slf4j-api.jar
javac -d "$tmp/classes" -cp "$CP" "$here/JavaBasic.java"
AMQP_PORT=$port timeout 120 java -cp "$tmp/classes:$CP" JavaBasic 2>/dev/null || status=1
if [ $status -ne 0 ] && [ -f "$tmp/server.log" ]; then
  echo "--- warren-server log ---"; tail -50 "$tmp/server.log"
fi
exit $status
