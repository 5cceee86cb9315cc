package mgmt

import (
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/warrenmq/warren/internal/broker"
)

// Node figures for /api/nodes, named and measured as RabbitMQ's are where
// Warren has the same thing, and documented where it differs:
//
//   - fd_used: open file descriptors (/proc/self/fd); fd_total: the
//     process's soft RLIMIT_NOFILE.
//   - sockets_used: open AMQP client connections; sockets_total: fd_total
//     (every descriptor may be a socket; Warren keeps no separate budget).
//   - proc_used: goroutines; proc_total: how many goroutines fit in the
//     memory high watermark at the smallest goroutine stack (2 KiB), the
//     bound the memory alarm sets in practice (Go has no fixed limit).
//   - run_queue: runnable goroutines waiting for a processor
//     (runtime/metrics /sched/goroutines/runnable); processors: GOMAXPROCS.
//   - mem_used: resident memory (what the memory alarm compares with
//     mem_limit, the watermark in bytes).
//   - disk_free: free space under the data directory; disk_free_limit:
//     the effective limit in bytes.

const minGoroutineStack = 2 << 10

func fdUsed() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents) - 1 // the descriptor ReadDir itself had open
}

func fdTotal() int64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return int64(rl.Cur)
}

func runQueue() uint64 {
	sm := []metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
	metrics.Read(sm)
	if sm[0].Value.Kind() == metrics.KindUint64 {
		return sm[0].Value.Uint64()
	}
	return 0
}

func (s *Server) node() map[string]any {
	cfg := s.b.Config()
	alarms := s.b.Alarms()
	memLimit := s.b.MemoryLimit()
	fdt := fdTotal()
	diskFree := s.b.DiskFree()
	churn := s.b.Churn()
	return map[string]any{
		"name": cfg.NodeName, "type": "disc", "running": true, "being_drained": s.b.UnderMaintenance(), "os_pid": strconv.Itoa(os.Getpid()),
		"uptime":                   time.Since(s.b.Started()).Milliseconds(),
		"mem_used":                 broker.MemoryUsed(),
		"mem_limit":                memLimit,
		"mem_alarm":                contains(alarms, "memory"),
		"disk_free":                diskFree,
		"disk_free_limit":          s.b.DiskFreeLimit(),
		"disk_free_alarm":          contains(alarms, "disk"),
		"fd_used":                  fdUsed(),
		"fd_total":                 fdt,
		"sockets_used":             len(s.b.Connections()),
		"sockets_total":            fdt,
		"proc_used":                runtime.NumGoroutine(),
		"proc_total":               memLimit / minGoroutineStack,
		"run_queue":                runQueue(),
		"processors":               runtime.GOMAXPROCS(0),
		"rates_mode":               "basic",
		"exchange_types":           exchangeTypes(),
		"applications":             []any{map[string]any{"name": "warren", "description": "Warren message broker", "version": broker.Version}},
		"partitions":               []any{},
		"net_ticktime":             60,
		"db_dir":                   cfg.DataDir,
		"config_files":             configFiles(cfg.ConfigFile),
		"log_files":                []string{"<stdout>"},
		"enabled_plugins":          []string{},
		"mem_calculation_strategy": "rss",
		"auth_mechanisms": []any{
			map[string]any{"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": true},
			map[string]any{"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": true},
		},
		"connection_created": churn.ConnectionCreated, "connection_closed": churn.ConnectionClosed,
		"channel_created": churn.ChannelCreated, "channel_closed": churn.ChannelClosed,
		"queue_created": churn.QueueCreated, "queue_declared": churn.QueueDeclared, "queue_deleted": churn.QueueDeleted,
	}
}

func configFiles(f string) []string {
	if f == "" {
		return []string{}
	}
	return []string{f}
}

// exchangeTypes lists the exchange types the node routes, as RabbitMQ's
// overview and node objects do.
func exchangeTypes() []any {
	return []any{
		map[string]any{"name": "direct", "description": "AMQP direct exchange, as per the AMQP specification", "enabled": true},
		map[string]any{"name": "fanout", "description": "AMQP fanout exchange, as per the AMQP specification", "enabled": true},
		map[string]any{"name": "headers", "description": "AMQP headers exchange, as per the AMQP specification", "enabled": true},
		map[string]any{"name": "topic", "description": "AMQP topic exchange, as per the AMQP specification", "enabled": true},
	}
}

// churnRates renders RabbitMQ's churn_rates: counts since the node
// started, with the rate over the last sampling interval.
func (s *Server) churnRates() map[string]any {
	now := s.b.Churn()
	var prev, last broker.Churn
	var ms int64
	if snap := s.rates.snapshot(); len(snap) > 1 {
		prev, last = snap[len(snap)-2].Churn, snap[len(snap)-1].Churn
		ms = snap[len(snap)-1].At - snap[len(snap)-2].At
	}
	out := map[string]any{}
	add := func(name string, v, a, b uint64) {
		out[name] = v
		out[name+"_details"] = map[string]float64{"rate": rate(a, b, ms)}
	}
	add("connection_created", now.ConnectionCreated, prev.ConnectionCreated, last.ConnectionCreated)
	add("connection_closed", now.ConnectionClosed, prev.ConnectionClosed, last.ConnectionClosed)
	add("channel_created", now.ChannelCreated, prev.ChannelCreated, last.ChannelCreated)
	add("channel_closed", now.ChannelClosed, prev.ChannelClosed, last.ChannelClosed)
	add("queue_created", now.QueueCreated, prev.QueueCreated, last.QueueCreated)
	add("queue_declared", now.QueueDeclared, prev.QueueDeclared, last.QueueDeclared)
	add("queue_deleted", now.QueueDeleted, prev.QueueDeleted, last.QueueDeleted)
	return out
}

// RabbitMQVersion is what the API reports as rabbitmq_version (overview)
// and rabbit_version (definitions): the RabbitMQ release series Warren's
// API and protocol follow, with Warren's own version as semver build
// metadata. Tools that parse it as a version (semver, PEP 440) read
// 3.10.0 and gate features as for 3.10; people read that it is Warren,
// not a RabbitMQ release. product_name/product_version say "Warren" and
// Warren's version.
const RabbitMQVersion = "3.10.0+warren." + broker.Version

// AddListener records an HTTP listener the node opened (protocol "http"
// for the management API, "http/prometheus" for metrics), so the
// overview and warrenctl status list every port the node listens on.
func (s *Server) AddListener(protocol string, a net.Addr) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.httpListeners = append(s.httpListeners, listener{protocol, a})
}

type listener struct {
	protocol string
	addr     net.Addr
}

// listeners renders RabbitMQ's listener objects: AMQP first, then the
// HTTP ones; an address bound to all interfaces is shown as "::", as
// RabbitMQ shows it.
func (s *Server) listeners() []any {
	cfg := s.b.Config()
	var ls []listener
	for _, a := range s.b.Addrs() {
		ls = append(ls, listener{"amqp", a})
	}
	s.lmu.Lock()
	ls = append(ls, s.httpListeners...)
	s.lmu.Unlock()
	if a := s.b.DistAddr(); a != nil {
		ls = append(ls, listener{"clustering", a})
	}
	out := []any{}
	for _, l := range ls {
		host, port := splitHostPort(l.addr.String())
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "::"
		}
		out = append(out, map[string]any{"node": cfg.NodeName, "protocol": l.protocol, "ip_address": host, "port": port})
	}
	return out
}

// statusExtras adds what warrenctl status shows beyond the node object,
// in rabbitmqctl status's sections: runtime, log files, alarms, totals.
func (s *Server) statusExtras(n map[string]any) {
	cfg := s.b.Config()
	qs, _, _, _, _, _ := s.totals()
	alarms := s.b.Alarms()
	if alarms == nil {
		alarms = []string{}
	}
	sort.Strings(alarms)
	n["os"] = map[string]string{"linux": "Linux", "darwin": "macOS", "windows": "Windows"}[runtime.GOOS]
	if n["os"] == "" {
		n["os"] = runtime.GOOS
	}
	n["rabbitmq_version"] = RabbitMQVersion
	n["go_version"] = runtime.Version()
	n["log_files"] = []string{"<stdout>"}
	n["alarms"] = alarms
	n["connection_count"] = len(s.b.Connections())
	n["queue_count"] = qs
	n["virtual_host_count"] = len(s.b.VHostNames())
	n["vm_memory_high_watermark_absolute"] = cfg.VMMemoryHighWatermarkAbsolute
	if cfg.ConfigFile == "" {
		n["config_files"] = []string{}
	}
}

// otherNodes lists the other nodes of the cluster (only the one named
// name, unless it is ""), with whether this node is connected to them:
// their figures are not gathered across nodes yet.
func (s *Server) otherNodes(name string) []any {
	var out []any
	for _, m := range s.b.ClusterStatus() {
		if m.Self || (name != "" && m.Name != name) {
			continue
		}
		out = append(out, map[string]any{"name": m.Name, "type": "disc", "running": m.Running, "being_drained": false, "cluster_links_address": m.Addr})
	}
	return out
}
