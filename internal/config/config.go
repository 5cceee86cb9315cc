// Package config reads a node's settings: defaults that work with no file,
// an optional rabbitmq.conf-style file (`key = value`, RabbitMQ's key names
// where they exist), then environment variables, then flags (applied by the
// caller).
//
//	c := config.Default()
//	err := config.ParseFile("warren.conf", &c)
//	err = config.ApplyEnv(&c, os.Getenv)
package config

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is a node's configuration.
type Config struct {
	NodeName       string
	AMQPListeners  []string
	ManagementPort int
	ManagementIP   string
	PrometheusPort int
	// PrometheusPerObject makes /metrics list per-vhost and per-queue
	// series (prometheus.return_per_object_metrics); off by default, as in
	// RabbitMQ, so the unauthenticated endpoint does not list object names.
	// /metrics/per-object serves them regardless.
	PrometheusPerObject bool
	// ControlPort and ControlIP are the control listener's (warrenctl's,
	// authenticated by the node cookie): 25673 on 127.0.0.1 by default, next
	// to the inter-node port 25672. 0 disables it; -1 picks a free port.
	ControlPort int
	ControlIP   string
	// HTTPMaxConnections bounds the open connections of each HTTP listener
	// (management, Prometheus, control; management.tcp.max_connections,
	// as ranch's max_connections, 1024 by default): more wait in the
	// kernel's backlog and never take the node's file descriptors.
	HTTPMaxConnections int
	// HTTPIdleTimeout closes keep-alive connections idle this long
	// (management.tcp.idle_timeout, milliseconds, 120000 by default).
	HTTPIdleTimeout               time.Duration
	DataDir                       string
	DefaultUser                   string
	DefaultPass                   string
	DefaultVHost                  string
	DefaultUserTags               []string
	DefaultPermissions            [3]string // configure, read, write
	LoopbackUsers                 []string
	ChannelMax                    uint16
	FrameMax                      uint32
	Heartbeat                     uint16
	MaxMessageSize                int
	VMMemoryHighWatermark         float64
	VMMemoryHighWatermarkAbsolute int64
	// VMMemoryHighWatermarkPagingRatio: above this fraction of the
	// watermark, queues page message bodies out to disk (RabbitMQ's
	// vm_memory_high_watermark_paging_ratio).
	VMMemoryHighWatermarkPagingRatio float64
	DiskFreeLimit                    int64
	// DiskFreeLimitRelative, when set, replaces DiskFreeLimit with this
	// multiple of total memory (disk_free_limit.relative).
	DiskFreeLimitRelative float64
	LogLevel              string
	ClusterName           string
	LoadDefinitions       string
	ConfigFile            string
	Warnings              []string

	// DistPort is the inter-node port (distribution.listener.port_range.min,
	// --dist-port, WARREN_DIST_PORT; 25672 by default). Used only by a
	// clustered node.
	DistPort int
	// DistTLS encrypts the inter-node port when its files are set
	// (Warren's keys, after RabbitMQ's ssl_options:
	// distribution.ssl_options.certfile, .keyfile and .cacertfile). Both
	// ends present certificates signed by the CA; a node's certificate
	// must be valid for the host part of its name.
	DistTLS TLSFiles
	// ClusterBackend is cluster_formation.peer_discovery_backend; only
	// "classic_config" forms a cluster (from ClusterNodes).
	ClusterBackend string
	// ClusterNodes are cluster_formation.classic_config.nodes.N, by N.
	ClusterNodes map[string]string
	// ClusterAddrs are Warren's cluster_formation.classic_config.addresses.N
	// (host:port of nodes.N's inter-node port; by default the node name's
	// host on DistPort). For several nodes on one host.
	ClusterAddrs map[string]string
	// ClusterWait bounds how long a clustered node waits at start for a
	// majority of the cluster (mnesia_table_loading_retry_timeout ×
	// mnesia_table_loading_retry_limit, 30 s × 10 by default, as
	// RabbitMQ's wait for its peers' tables).
	ClusterWait time.Duration
	// PartitionHandling is cluster_partition_handling: "ignore" (the
	// default) or "autoheal" change nothing (a minority refuses
	// definition changes, and never diverges, so there is nothing to
	// heal); "pause_minority" also closes a minority node's client
	// connections and stops accepting them until a majority is reachable.
	PartitionHandling string
	// NodeDownGrace is how long a node's inter-node link must stay down
	// before the node counts as down (Warren's
	// cluster_node_down_grace_period, in milliseconds; 5 s by default):
	// the metadata leader then deletes its transient and exclusive
	// queues, and pause_minority counts it unreachable.
	NodeDownGrace    time.Duration
	clusterWaitTry   time.Duration
	clusterWaitLimit int
	// Cookie is the node cookie, set by the node from the cookie file
	// (never read from warren.conf): it authenticates the inter-node port.
	Cookie string `json:"-"`
}

// ClusterMember is one node listed in cluster_formation.classic_config.
type ClusterMember struct {
	Name string // warren@host
	Addr string // its inter-node address; "" means the name's host on DistPort
}

// Clustered reports whether the configuration forms a cluster: the
// classic_config backend with at least one node listed.
func (c Config) Clustered() bool {
	return c.ClusterBackend == "classic_config" && len(c.ClusterNodes) > 0
}

// Members lists the classic_config nodes in the order of their N
// (numerically when N is a number), without duplicates.
func (c Config) Members() []ClusterMember {
	keys := make([]string, 0, len(c.ClusterNodes))
	for k := range c.ClusterNodes {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, ea := strconv.Atoi(keys[i])
		b, eb := strconv.Atoi(keys[j])
		if ea == nil && eb == nil {
			return a < b
		}
		return keys[i] < keys[j]
	})
	seen := map[string]bool{}
	var out []ClusterMember
	for _, k := range keys {
		n := c.ClusterNodes[k]
		if seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, ClusterMember{Name: n, Addr: c.ClusterAddrs[k]})
	}
	return out
}

// Default returns a fresh RabbitMQ node's settings.
func Default() Config {
	host, _ := os.Hostname()
	if i := strings.IndexByte(host, '.'); i > 0 {
		host = host[:i]
	}
	if host == "" {
		host = "localhost"
	}
	return Config{
		NodeName:                         "warren@" + host,
		AMQPListeners:                    []string{":5672"},
		ManagementPort:                   15672,
		PrometheusPort:                   15692,
		ControlPort:                      25673,
		ControlIP:                        "127.0.0.1",
		HTTPMaxConnections:               1024,
		HTTPIdleTimeout:                  120 * time.Second,
		DataDir:                          "./warren-data",
		DefaultUser:                      "guest",
		DefaultPass:                      "guest",
		DefaultVHost:                     "/",
		DefaultUserTags:                  []string{"administrator"},
		DefaultPermissions:               [3]string{".*", ".*", ".*"},
		LoopbackUsers:                    []string{"guest"},
		ChannelMax:                       2047,
		FrameMax:                         131072,
		Heartbeat:                        60,
		MaxMessageSize:                   128 << 20,
		VMMemoryHighWatermark:            0.4,
		VMMemoryHighWatermarkPagingRatio: 0.5,
		DiskFreeLimit:                    50_000_000,
		LogLevel:                         "info",
		ClusterName:                      "warren@" + host,
		DistPort:                         25672,
		ClusterWait:                      300 * time.Second,
		PartitionHandling:                "ignore",
		NodeDownGrace:                    5 * time.Second,
		clusterWaitTry:                   30 * time.Second,
		clusterWaitLimit:                 10,
	}
}

// ParseFile reads a rabbitmq.conf-style file into c.
func ParseFile(path string, c *Config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read config file: %w", err)
	}
	defer f.Close()
	c.ConfigFile = path
	return Parse(f, path, c)
}

// ignoredPrefixes are RabbitMQ keys accepted with a warning: Warren does
// not apply them (yet), but a real rabbitmq.conf must still load.
var ignoredPrefixes = []string{
	"log.file", "log.dir", "log.console", "log.exchange", "cluster_formation.", "ssl_options.", "listeners.ssl.",
	"collect_statistics_interval", "management.ssl.", "management.rates_mode", "auth_mechanisms.",
	"auth_backends.", "cluster_partition_handling", "queue_master_locator", "mnesia_table_loading_",
	"vm_memory_calculation_strategy", "total_memory_available_override_value", "tcp_listen_options.",
	"num_acceptors.", "handshake_timeout", "reverse_dns_lookups", "proxy_protocol", "cluster_keepalive_interval",
	"management.http_log_dir", "management.cors.", "management.csp.", "background_gc_enabled",
}

// Parse reads `key = value` lines; name is used in error messages.
func Parse(r io.Reader, name string, c *Config) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		k, v, ok := strings.Cut(text, "=")
		if !ok {
			return fmt.Errorf("%s:%d: expected `key = value`, got %q", name, line, text)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if i := strings.Index(v, " #"); i >= 0 {
			v = strings.TrimSpace(v[:i])
		}
		if err := set(c, k, v); err != nil {
			return fmt.Errorf("%s:%d: %s: %w", name, line, k, err)
		}
	}
	return sc.Err()
}

func set(c *Config, k, v string) error {
	switch {
	case k == "listeners.tcp.default" || strings.HasPrefix(k, "listeners.tcp."):
		if v == "none" {
			c.AMQPListeners = nil
			return nil
		}
		if k == "listeners.tcp.default" {
			c.AMQPListeners = []string{listenAddr(v)}
		} else {
			c.AMQPListeners = appendUnique(c.AMQPListeners, listenAddr(v))
		}
		return nil
	case k == "management.tcp.port":
		return setInt(&c.ManagementPort, v, 0, 65535)
	case k == "management.tcp.ip":
		c.ManagementIP = v
	case k == "prometheus.tcp.port":
		return setInt(&c.PrometheusPort, v, 0, 65535)
	case k == "prometheus.return_per_object_metrics":
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		c.PrometheusPerObject = b
	case k == "management.tcp.max_connections":
		return setInt(&c.HTTPMaxConnections, v, 1, 1<<20)
	case k == "management.tcp.idle_timeout":
		var ms int
		if err := setInt(&ms, v, 1, 24*3600*1000); err != nil {
			return err
		}
		c.HTTPIdleTimeout = time.Duration(ms) * time.Millisecond
	case k == "control.tcp.port":
		return setInt(&c.ControlPort, v, 0, 65535)
	case k == "control.tcp.ip":
		c.ControlIP = v
	case k == "default_user":
		c.DefaultUser = v
	case k == "default_pass":
		c.DefaultPass = v
	case k == "default_vhost":
		c.DefaultVHost = v
	case strings.HasPrefix(k, "default_user_tags."):
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		tag := strings.TrimPrefix(k, "default_user_tags.")
		if b {
			c.DefaultUserTags = appendUnique(c.DefaultUserTags, tag)
		} else {
			c.DefaultUserTags = remove(c.DefaultUserTags, tag)
		}
	case k == "default_permissions.configure":
		c.DefaultPermissions[0] = v
	case k == "default_permissions.read":
		c.DefaultPermissions[1] = v
	case k == "default_permissions.write":
		c.DefaultPermissions[2] = v
	case k == "loopback_users":
		if v != "none" {
			return fmt.Errorf("expected `none` or loopback_users.NAME = true|false")
		}
		c.LoopbackUsers = nil
	case strings.HasPrefix(k, "loopback_users."):
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		u := strings.TrimPrefix(k, "loopback_users.")
		if b {
			c.LoopbackUsers = appendUnique(c.LoopbackUsers, u)
		} else {
			c.LoopbackUsers = remove(c.LoopbackUsers, u)
		}
	case k == "channel_max":
		var n int
		if err := setInt(&n, v, 0, 65535); err != nil {
			return err
		}
		c.ChannelMax = uint16(n)
	case k == "frame_max":
		var n int
		if err := setInt(&n, v, 4096, 1<<31-1); err != nil {
			return err
		}
		c.FrameMax = uint32(n)
	case k == "heartbeat":
		var n int
		if err := setInt(&n, v, 0, 65535); err != nil {
			return err
		}
		c.Heartbeat = uint16(n)
	case k == "max_message_size":
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		if n <= 0 || n > 512<<20 {
			return fmt.Errorf("must be between 1 and 536870912 bytes")
		}
		c.MaxMessageSize = int(n)
	case k == "vm_memory_high_watermark.relative":
		f, err := parseFloat(v)
		if err != nil || f < 0 || f > 1 {
			return fmt.Errorf("expected a fraction between 0 and 1, got %q", v)
		}
		c.VMMemoryHighWatermark = f
	case k == "vm_memory_high_watermark_paging_ratio":
		f, err := parseFloat(v)
		if err != nil || f <= 0 || f > 1 {
			return fmt.Errorf("expected a fraction above 0 and at most 1, got %q", v)
		}
		c.VMMemoryHighWatermarkPagingRatio = f
	case k == "vm_memory_high_watermark.absolute":
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		c.VMMemoryHighWatermarkAbsolute = n
	case k == "disk_free_limit.absolute":
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		c.DiskFreeLimit = n
	case k == "disk_free_limit.relative":
		f, err := parseFloat(v)
		if err != nil || f <= 0 || f > 1000 {
			return fmt.Errorf("expected a positive multiple of total memory (at most 1000), got %q", v)
		}
		c.DiskFreeLimitRelative = f
	case k == "log.console.level" || k == "log.level":
		switch v {
		case "debug", "info", "warning", "error", "critical", "none":
			c.LogLevel = v
		default:
			return fmt.Errorf("expected debug, info, warning or error, got %q", v)
		}
	case k == "cluster_name":
		c.ClusterName = v
	case k == "distribution.listener.port_range.min":
		return setInt(&c.DistPort, v, 1, 65535)
	case k == "distribution.ssl_options.certfile":
		c.DistTLS.CertFile = v
	case k == "distribution.ssl_options.keyfile":
		c.DistTLS.KeyFile = v
	case k == "distribution.ssl_options.cacertfile":
		c.DistTLS.CACertFile = v
	case k == "distribution.listener.port_range.max":
		// Warren listens on one port: the range's min
	case k == "cluster_formation.peer_discovery_backend":
		switch v {
		case "classic_config", "rabbit_peer_discovery_classic_config":
			c.ClusterBackend = "classic_config"
		default:
			c.Warnings = append(c.Warnings, fmt.Sprintf("peer discovery backend %q is not supported by Warren (only classic_config); the node starts standalone", v))
		}
	case strings.HasPrefix(k, "cluster_formation.classic_config.nodes."):
		n := strings.TrimPrefix(k, "cluster_formation.classic_config.nodes.")
		if n == "" || v == "" || !strings.Contains(v, "@") {
			return fmt.Errorf("expected a node name such as warren@host, got %q", v)
		}
		if c.ClusterNodes == nil {
			c.ClusterNodes = map[string]string{}
		}
		c.ClusterNodes[n] = v
	case strings.HasPrefix(k, "cluster_formation.classic_config.addresses."):
		n := strings.TrimPrefix(k, "cluster_formation.classic_config.addresses.")
		if _, _, err := net.SplitHostPort(v); n == "" || err != nil {
			return fmt.Errorf("expected host:port (the inter-node address of cluster_formation.classic_config.nodes.%s), got %q", n, v)
		}
		if c.ClusterAddrs == nil {
			c.ClusterAddrs = map[string]string{}
		}
		c.ClusterAddrs[n] = v
	case k == "mnesia_table_loading_retry_timeout":
		var ms int
		if err := setInt(&ms, v, 1, 24*3600*1000); err != nil {
			return err
		}
		c.clusterWaitTry = time.Duration(ms) * time.Millisecond
		c.ClusterWait = c.clusterWaitTry * time.Duration(max(c.clusterWaitLimit, 1))
	case k == "mnesia_table_loading_retry_limit":
		if err := setInt(&c.clusterWaitLimit, v, 1, 1000); err != nil {
			return err
		}
		c.ClusterWait = c.clusterWaitTry * time.Duration(c.clusterWaitLimit)
	case k == "cluster_partition_handling":
		switch v {
		case "ignore", "autoheal", "pause_minority":
			c.PartitionHandling = v
		case "pause_if_all_down":
			c.PartitionHandling = "ignore"
			c.Warnings = append(c.Warnings, "cluster_partition_handling = pause_if_all_down is not supported by Warren; the node behaves as with ignore (a minority refuses definition changes); use pause_minority to make a minority node stop serving clients")
		default:
			return fmt.Errorf("expected pause_minority, autoheal or ignore, got %q", v)
		}
	case k == "cluster_node_down_grace_period":
		var ms int
		if err := setInt(&ms, v, 0, 24*3600*1000); err != nil {
			return err
		}
		c.NodeDownGrace = time.Duration(ms) * time.Millisecond
	case k == "load_definitions" || k == "management.load_definitions":
		c.LoadDefinitions = v
	default:
		for _, p := range ignoredPrefixes {
			if strings.HasPrefix(k, p) {
				c.Warnings = append(c.Warnings, fmt.Sprintf("config key %q is accepted but not applied by Warren", k))
				return nil
			}
		}
		return fmt.Errorf("unknown key (see README for the supported rabbitmq.conf keys)")
	}
	return nil
}

func listenAddr(v string) string {
	if _, err := strconv.Atoi(v); err == nil {
		return ":" + v
	}
	return v
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func remove(s []string, v string) []string {
	out := s[:0]
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

func parseBool(v string) (bool, error) {
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("expected true or false, got %q", v)
}

func setInt(dst *int, v string, lo, hi int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return fmt.Errorf("expected an integer between %d and %d, got %q", lo, hi, v)
	}
	*dst = n
	return nil
}

// parseFloat is strconv.ParseFloat without NaN and infinities.
func parseFloat(v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return 0, fmt.Errorf("not a finite number: %q", v)
	}
	return f, err
}

// ParseSize reads RabbitMQ's information units: 1000000, 50MB, 1GB, 512MiB,
// 2GiB, 100kB.
func ParseSize(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}}
	for _, u := range units {
		if strings.HasSuffix(v, u.suffix) {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("expected a size like 50MB or 1GiB, got %q", v)
			}
			if n > math.MaxInt64/u.mult {
				return 0, fmt.Errorf("size %q is too large (at most %d bytes)", v, int64(math.MaxInt64))
			}
			return n * u.mult, nil
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("expected a size like 50000000, 50MB or 1GiB, got %q", v)
	}
	return n, nil
}

// ApplyEnv applies WARREN_* environment variables.
func ApplyEnv(c *Config, getenv func(string) string) error {
	if v := getenv("WARREN_NODE_PORT"); v != "" {
		var p int
		if err := setInt(&p, v, 0, 65535); err != nil {
			return fmt.Errorf("WARREN_NODE_PORT: %w", err)
		}
		c.AMQPListeners = []string{":" + v}
	}
	if v := getenv("WARREN_MANAGEMENT_PORT"); v != "" {
		if err := setInt(&c.ManagementPort, v, 0, 65535); err != nil {
			return fmt.Errorf("WARREN_MANAGEMENT_PORT: %w", err)
		}
	}
	if v := getenv("WARREN_CONTROL_PORT"); v != "" {
		if err := setInt(&c.ControlPort, v, 0, 65535); err != nil {
			return fmt.Errorf("WARREN_CONTROL_PORT: %w", err)
		}
	}
	if v := getenv("WARREN_DATA_DIR"); v != "" {
		c.DataDir = v
	}
	if v := getenv("WARREN_NODENAME"); v != "" {
		c.NodeName = v
	}
	if v := getenv("WARREN_DIST_PORT"); v != "" {
		if err := setInt(&c.DistPort, v, 1, 65535); err != nil {
			return fmt.Errorf("WARREN_DIST_PORT: %w", err)
		}
	}
	return nil
}

// TLSFiles are a certificate, its key and the CA that signs its peers'.
type TLSFiles struct {
	CertFile, KeyFile, CACertFile string
}

// Set reports whether any file is given.
func (f TLSFiles) Set() bool { return f.CertFile != "" || f.KeyFile != "" || f.CACertFile != "" }
