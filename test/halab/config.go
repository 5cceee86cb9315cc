// Package halab is the guide's topology as a lab: broker hosts, two
// load-balancer hosts (proxy + VRRP daemon each) and a client host on one
// bridge, built with internal/netlab (names unique per run). The proxy and
// VRRP configurations are generated from examples/guide so they cannot rot:
// only addresses, the interface, the host's name and role, the tracking
// script and a pid file are rewritten; every other line is the guide's.
package halab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Addresses inside the lab (they exist only in the lab's namespaces).
const (
	Subnet = "10.79.16"
	VIP    = Subnet + ".66"
	VRID   = 66
)

// BrokerAddr is broker i's address (i from 0).
func BrokerAddr(i int) string { return fmt.Sprintf("%s.%d", Subnet, 10+i) }

// LBAddr is load-balancer host i's address (i from 0).
func LBAddr(i int) string { return fmt.Sprintf("%s.%d", Subnet, 20+i) }

// ClientAddr is the client host's address.
const ClientAddr = Subnet + ".100"

// ProxyOptions choose how the guide's haproxy.cfg is rewritten.
type ProxyOptions struct {
	Servers   []string // broker addresses, named A, B, C... as in the guide
	PidFile   string   // added to global as 'pidfile' (HAProxy 2.6 and warren-proxy)
	CheckAMQP bool     // replace the plain TCP 'check' by 'check-amqp' (warren-proxy only)
	HAProxy   bool     // for HAProxy itself: drop chroot/user/group/uid/gid (no such user/dir in the lab) and daemon
}

// ProxyConfig rewrites the guide's haproxy.cfg (text) for the lab.
func ProxyConfig(guide string, o ProxyOptions) (string, error) {
	var out []string
	serversDone, pidDone := false, false
	for _, line := range strings.Split(guide, "\n") {
		f := strings.Fields(line)
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		switch {
		case len(f) == 0:
		case f[0] == "global" && !pidDone:
			out = append(out, line, indent+"    # halab: the lab's tracking script checks this host's proxy by its pid file")
			out = append(out, indent+"    pidfile "+o.PidFile)
			pidDone = true
			continue
		case o.HAProxy && (f[0] == "chroot" || f[0] == "user" || f[0] == "group" || f[0] == "uid" || f[0] == "gid" || f[0] == "daemon"):
			out = append(out, indent+"# halab (HAProxy in a namespace, run in the foreground): "+strings.TrimSpace(line))
			continue
		case f[0] == "bind" && len(f) >= 2:
			// the guide binds the host's own address; behind a VIP the proxy
			// must accept the VIP too, so it listens on every address
			_, port, ok := strings.Cut(f[1], ":")
			if !ok {
				return "", fmt.Errorf("guide haproxy.cfg: bind without a port: %q", line)
			}
			out = append(out, indent+"bind 0.0.0.0:"+port+strings.Join(append([]string{""}, f[2:]...), " "))
			continue
		case f[0] == "server" && len(f) >= 3:
			if serversDone {
				continue
			}
			serversDone = true
			opts := f[3:]
			if o.CheckAMQP {
				for i, w := range opts {
					if w == "check" {
						opts[i] = "check-amqp"
					}
				}
			}
			for i, addr := range o.Servers {
				_, port, _ := strings.Cut(f[2], ":")
				out = append(out, fmt.Sprintf("%sserver %c %s:%s %s", indent, 'A'+i, addr, port, strings.Join(opts, " ")))
			}
			continue
		}
		out = append(out, line)
	}
	if !serversDone || !pidDone {
		return "", fmt.Errorf("guide haproxy.cfg: no 'server' or 'global' line to rewrite (the guide's file changed; update test/halab)")
	}
	return strings.Join(out, "\n"), nil
}

// VRRPOptions choose how the guide's keepalived.conf is rewritten.
type VRRPOptions struct {
	RouterID  string
	Master    bool   // state MASTER priority 100, or BACKUP priority 90
	Interface string // eth0
	Script    string // the lab's tracking script
}

// VRRPConfig rewrites the guide's keepalived.conf (text) for the lab.
func VRRPConfig(guide string, o VRRPOptions) (string, error) {
	var out []string
	seen := map[string]bool{}
	inVIPs := false
	for _, line := range strings.Split(guide, "\n") {
		f := strings.Fields(line)
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		comment := ""
		if i := strings.Index(line, "##"); i >= 0 {
			comment = " " + line[i:]
		}
		if len(f) == 0 {
			out = append(out, line)
			continue
		}
		switch {
		case f[0] == "router_id":
			line = indent + "router_id " + o.RouterID + comment
		case f[0] == "script":
			line = indent + fmt.Sprintf("script %q", o.Script) + " ## halab: checks this host's proxy by its pid file (the guide's ps -C/killall see every namespace)"
		case f[0] == "state":
			st := "BACKUP"
			if o.Master {
				st = "MASTER"
			}
			line = indent + "state " + st + comment
		case f[0] == "priority":
			p := "90"
			if o.Master {
				p = f[1]
			}
			line = indent + "priority " + p + comment
		case f[0] == "interface":
			line = indent + "interface " + o.Interface + comment
		case f[0] == "virtual_ipaddress":
			inVIPs = true
		case inVIPs && f[0] == "}":
			inVIPs = false
		case inVIPs:
			_, mask, _ := strings.Cut(f[0], "/")
			line = indent + VIP + "/" + mask + comment
		case f[0] == "virtual_server" && len(f) >= 2:
			line = strings.Replace(line, f[1], VIP, 1)
		case f[0] == "real_server" && len(f) >= 2:
			line = strings.Replace(line, f[1], BrokerAddr(0), 1)
		default:
			out = append(out, line)
			continue
		}
		seen[f[0]] = true
		out = append(out, line)
	}
	for _, k := range []string{"router_id", "script", "state", "priority", "interface", "virtual_ipaddress"} {
		if !seen[k] {
			return "", fmt.Errorf("guide keepalived.conf: no %q line to rewrite (the guide's file changed; update test/halab)", k)
		}
	}
	return strings.Join(out, "\n"), nil
}

// CheckScript is the lab's tracking script: exit 0 when the process
// named in pidfile is alive and is a proxy (warren-proxy or haproxy).
// Unlike the guide's script it neither restarts the proxy nor kills the
// VRRP daemon: a failing check lowers the priority (weight -20) and the
// VIP moves, which is what fault 2 measures.
func CheckScript(pidfile string) string {
	return fmt.Sprintf(`#!/bin/sh
# halab tracking script (generated): is THIS host's proxy alive?
# The guide's haproxy_check.sh uses ps -C/killall, which see every
# namespace's processes on one machine; this one reads the proxy's pid file.
pid=$(cat %q 2>/dev/null) || exit 1
[ -n "$pid" ] || exit 1
kill -0 "$pid" 2>/dev/null || exit 1
case "$(cat /proc/$pid/comm 2>/dev/null)" in
warren-proxy|haproxy) exit 0 ;;
esac
exit 1
`, pidfile)
}

// GuideFile reads a file of examples/guide under the repository root.
func GuideFile(root, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "examples", "guide", name))
	return string(b), err
}
