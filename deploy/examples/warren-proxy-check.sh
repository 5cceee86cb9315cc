#!/bin/sh
# /etc/warren/warren-proxy-check.sh: warren-vrrp's tracking script
# (keepalived.conf, vrrp_script chk_haproxy). Exit 0 when this host's proxy
# runs: the process named in its pid file is alive and is warren-proxy (or
# haproxy). Only /proc is read, so it works as any user; unlike the guide's
# haproxy_check.sh it does not use `ps -C`/`killall` (they see every
# container's processes) and does not restart the proxy (systemd does):
# a failing check lowers this host's priority by 20 and the VIP moves.
pidfile=${WARREN_PROXY_PIDFILE:-/run/warren-proxy/warren-proxy.pid}
pid=$(cat "$pidfile" 2>/dev/null) || exit 1
case "$pid" in
''|*[!0-9]*) exit 1 ;;
esac
case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
warren-proxy|haproxy) exit 0 ;;
esac
exit 1
