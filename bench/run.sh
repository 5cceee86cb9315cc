#!/usr/bin/env bash
# Side-by-side benchmark suite: Warren vs RabbitMQ 3.10 (Debian package,
# installed if missing) on this machine. Extra arguments go to the suite:
#
#   bash bench/run.sh                       # everything, 3 rounds (hours)
#   bash bench/run.sh -quick -only 1,3      # a smoke run
#   bash bench/run.sh -modes plain,pinned,raw,raw-pinned -rabbit-configs default,tuned
#   bash bench/run.sh -log-level info       # both brokers at info
#   bash bench/run.sh -quick -only 21,22,23 # the cluster scenarios alone
#   bash bench/run.sh -cluster=false        # everything but the clusters
#
# Every option, the modes, the RabbitMQ configurations and the checks are
# described in bench/README.md. The RabbitMQ nodes it starts (one per
# configuration, and a 3-node cluster per configuration for 21-23) have
# their own node names, ports, files and Erlang cookie under a temporary
# directory; a RabbitMQ already running (e.g. on 5672) is not touched. Exit status 1 when a run
# lost or duplicated messages (its rows print FAILED and no ratio).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v rabbitmq-server >/dev/null; then
  echo "bench: installing rabbitmq-server (the reference broker)"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server
fi
if ! command -v taskset >/dev/null; then
  echo "bench: taskset (util-linux) not found: run with -modes plain,raw" >&2
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec go run ./bench/suite "$@"
