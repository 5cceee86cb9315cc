// Package halab is the guide's topology as a lab: broker hosts, two
// load-balancer hosts (proxy + VRRP daemon each) and a client host on one
// bridge, built with internal/netlab (names unique per run). Every
// configuration is generated from the deployment examples in
// deploy/examples (warren.conf, haproxy.cfg, keepalived.conf,
// warren-proxy-check.sh) so they cannot rot: only addresses, the
// interface, the host's name and role, file paths and (with clustering
// off) the cluster_formation lines are rewritten; every other line is the
// example's.
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

// ExamplePidFile is the proxy's pid file in the deployment examples
// (haproxy.cfg's pidfile, the check script's default).
const ExamplePidFile = "/run/warren-proxy/warren-proxy.pid"

// ProxyOptions choose how the example haproxy.cfg is rewritten.
type ProxyOptions struct {
	Servers     []string // broker addresses, in the order of the example's server lines (A, B, C)
	PidFile     string   // replaces the path of 'pidfile'
	StatsSocket string   // replaces the path of 'stats socket'
	CheckAMQP   bool     // replace the plain TCP 'check' by 'check-amqp' (warren-proxy only)
}

// ProxyConfig rewrites the example haproxy.cfg (text) for the lab: the
// server lines' addresses (server lines beyond len(Servers) are commented
// out), the pid file and the stats socket's paths.
func ProxyConfig(example string, o ProxyOptions) (string, error) {
	var out []string
	servers, pidDone, sockDone := 0, false, false
	for _, line := range strings.Split(example, "\n") {
		f := strings.Fields(line)
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		switch {
		case len(f) == 0:
		case f[0] == "pidfile" && len(f) == 2:
			line = indent + "pidfile " + o.PidFile
			pidDone = true
		case f[0] == "stats" && len(f) >= 3 && f[1] == "socket":
			line = indent + strings.Join(append([]string{"stats", "socket", o.StatsSocket}, f[3:]...), " ")
			sockDone = true
		case f[0] == "server" && len(f) >= 3:
			if servers >= len(o.Servers) {
				line = indent + "# halab: " + fmt.Sprint(len(o.Servers)) + " broker(s) in this lab: " + strings.TrimSpace(line)
				break
			}
			_, port, ok := strings.Cut(f[2], ":")
			if !ok {
				return "", fmt.Errorf("example haproxy.cfg: server without a port: %q", line)
			}
			opts := append([]string(nil), f[3:]...)
			if o.CheckAMQP {
				for i, w := range opts {
					if w == "check" {
						opts[i] = "check-amqp"
					}
				}
			}
			line = indent + strings.Join(append([]string{"server", f[1], o.Servers[servers] + ":" + port}, opts...), " ")
			servers++
		}
		out = append(out, line)
	}
	if servers < len(o.Servers) || !pidDone || !sockDone {
		return "", fmt.Errorf("example haproxy.cfg: %d server lines for %d brokers, pidfile %v, stats socket %v (the example changed; update test/halab)", servers, len(o.Servers), pidDone, sockDone)
	}
	return strings.Join(out, "\n"), nil
}

// WarrenConfig rewrites the example warren.conf for the lab: with
// clustering off, the cluster_formation lines are commented out (each node
// then starts standalone); every other line is the example's. The node
// names (warren@A, B, C) resolve through the lab's /etc/hosts files.
func WarrenConfig(example string, cluster bool) (string, error) {
	var out []string
	n := 0
	for _, line := range strings.Split(example, "\n") {
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "cluster_formation.") {
			n++
			if !cluster {
				line = "# halab: clustering off (HALAB_CLUSTER=0): " + t
			}
		}
		out = append(out, line)
	}
	if n == 0 {
		return "", fmt.Errorf("example warren.conf has no cluster_formation lines (the example changed; update test/halab)")
	}
	return strings.Join(out, "\n"), nil
}

// NodeNames are the example's broker host names (warren@A...), in the
// order of the lab's broker hosts b1, b2, b3.
var NodeNames = []string{"A", "B", "C"}

// VRRPOptions choose how the example keepalived.conf is rewritten.
type VRRPOptions struct {
	RouterID  string
	Master    bool   // state MASTER priority 100, or BACKUP priority 90
	Interface string // eth0
	Script    string // the lab's tracking script
}

// VRRPConfig rewrites the example keepalived.conf (text) for the lab.
func VRRPConfig(example string, o VRRPOptions) (string, error) {
	var out []string
	seen := map[string]bool{}
	inVIPs := false
	for _, line := range strings.Split(example, "\n") {
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
			line = indent + fmt.Sprintf("script %q", o.Script) + " ## halab: the lab's copy of the example's script"
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
			return "", fmt.Errorf("example keepalived.conf: no %q line to rewrite (the example changed; update test/halab)", k)
		}
	}
	return strings.Join(out, "\n"), nil
}

// CheckScript is the example tracking script (warren-proxy-check.sh)
// with its default pid file replaced by pidfile: exit 0 when the process
// named there is alive and is a proxy (warren-proxy or haproxy).
func CheckScript(example, pidfile string) (string, error) {
	if !strings.Contains(example, ExamplePidFile) {
		return "", fmt.Errorf("example warren-proxy-check.sh does not mention %s (the example changed; update test/halab)", ExamplePidFile)
	}
	return strings.ReplaceAll(example, ExamplePidFile, pidfile), nil
}

// ExampleFile reads a file of deploy/examples under the repository root.
func ExampleFile(root, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "deploy", "examples", name))
	return string(b), err
}
