#!/usr/bin/env bash
# Runs the small real-client suites (python pika, RabbitMQ Java client) against
# a freshly built warren-server on a free port. Each script exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")"
ls *.py *.java >/dev/null 2>&1 || { echo "clients: no client scripts yet"; exit 0; }
