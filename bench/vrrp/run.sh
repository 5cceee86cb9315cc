#!/usr/bin/env bash
# Failover figures for warren-vrrp vs keepalived in network namespaces
# (needs root, iproute2, keepalived, ping). Prints a table with four rows,
# three rounds each: keepalived and warren-vrrp with VRRPv2 advert_int 1
# (the guide's settings), and both with VRRPv3 advert_int 0.1.
#
# The namespaces have fixed names (wv*): do not run this while anything
# else uses them (the internal/vrrp namespace tests, another run).
set -euo pipefail
cd "$(dirname "$0")/../.."
WARREN_VRRP_FIGURES=1 go test -count=1 -run TestFailoverFigures -v ./internal/vrrp | grep -E '^\|'
