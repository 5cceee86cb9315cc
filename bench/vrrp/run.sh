#!/usr/bin/env bash
# Failover figures for warren-vrrp vs keepalived in network namespaces
# (needs root, iproute2, keepalived, ping). Prints a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
WARREN_VRRP_FIGURES=1 go test -count=1 -run TestFailoverFigures -v ./internal/vrrp | grep -E '^\|'
