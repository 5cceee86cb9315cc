#!/usr/bin/env bash
# Side-by-side benchmark suite: Warren vs RabbitMQ 3.10 (Debian package,
# installed if missing) on this machine. Extra arguments go to the suite,
# e.g. `bash bench/run.sh -quick` or `-only 1,3`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v rabbitmq-server >/dev/null; then
  echo "bench: installing rabbitmq-server (the reference broker)"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec go run ./bench/suite "$@"
