package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const sample = `
# a realistic rabbitmq.conf
listeners.tcp.default = 5673
management.tcp.port = 15673
default_user = prim
default_pass = 123456
default_user_tags.administrator = true
default_permissions.configure = ^prim-.*
loopback_users.guest = false
vm_memory_high_watermark.relative = 0.6
disk_free_limit.absolute = 1GB
max_message_size = 64MiB
heartbeat = 30
log.file.level = info
cluster_formation.peer_discovery_backend = classic_config
`

func TestParseRealisticFile(t *testing.T) {
	c := Default()
	if err := Parse(strings.NewReader(sample), "rabbitmq.conf", &c); err != nil {
		t.Fatal(err)
	}
	if c.AMQPListeners[0] != ":5673" || c.ManagementPort != 15673 || c.DefaultUser != "prim" || c.DefaultPass != "123456" {
		t.Fatalf("%+v", c)
	}
	if len(c.LoopbackUsers) != 0 || c.VMMemoryHighWatermark != 0.6 || c.DiskFreeLimit != 1e9 || c.MaxMessageSize != 64<<20 || c.Heartbeat != 30 {
		t.Fatalf("%+v", c)
	}
	if c.DefaultPermissions[0] != "^prim-.*" || c.DefaultPermissions[1] != ".*" {
		t.Fatalf("permissions %v", c.DefaultPermissions)
	}
	// log.file.level only: the classic_config backend is applied (with no
	// node listed the node stays standalone)
	if len(c.Warnings) != 1 || c.ClusterBackend != "classic_config" || c.Clustered() {
		t.Fatalf("warnings %v, backend %q, clustered %v", c.Warnings, c.ClusterBackend, c.Clustered())
	}
}

func TestClassicConfigCluster(t *testing.T) {
	c := Default()
	if c.DistPort != 25672 || c.Clustered() {
		t.Fatalf("defaults: dist port %d, clustered %v", c.DistPort, c.Clustered())
	}
	in := `cluster_formation.peer_discovery_backend = rabbit_peer_discovery_classic_config
cluster_formation.classic_config.nodes.10 = warren@c
cluster_formation.classic_config.nodes.2 = warren@b
cluster_formation.classic_config.nodes.1 = warren@a
cluster_formation.classic_config.nodes.3 = warren@a
cluster_formation.classic_config.addresses.2 = 127.0.0.1:25680
distribution.listener.port_range.min = 25700
distribution.listener.port_range.max = 25710
mnesia_table_loading_retry_timeout = 1000
mnesia_table_loading_retry_limit = 3
`
	if err := Parse(strings.NewReader(in), "warren.conf", &c); err != nil {
		t.Fatal(err)
	}
	if !c.Clustered() || c.DistPort != 25700 || c.ClusterWait != 3*time.Second || len(c.Warnings) != 0 {
		t.Fatalf("clustered %v, dist port %d, wait %v, warnings %v", c.Clustered(), c.DistPort, c.ClusterWait, c.Warnings)
	}
	want := []ClusterMember{{Name: "warren@a"}, {Name: "warren@b", Addr: "127.0.0.1:25680"}, {Name: "warren@c"}}
	if got := c.Members(); !reflect.DeepEqual(got, want) {
		t.Fatalf("members %v, want %v (ordered by N, numerically, without duplicates)", got, want)
	}
	if err := ApplyEnv(&c, func(k string) string { return map[string]string{"WARREN_DIST_PORT": "25800"}[k] }); err != nil || c.DistPort != 25800 {
		t.Fatalf("WARREN_DIST_PORT: %v, %d", err, c.DistPort)
	}
	for _, bad := range []string{
		"cluster_formation.classic_config.nodes.1 = nohost",
		"cluster_formation.classic_config.addresses.1 = 127.0.0.1",
		"distribution.listener.port_range.min = 0",
	} {
		c := Default()
		if err := Parse(strings.NewReader(bad), "warren.conf", &c); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	c = Default()
	if err := Parse(strings.NewReader("cluster_formation.peer_discovery_backend = rabbit_peer_discovery_k8s\ncluster_formation.classic_config.nodes.1 = warren@a\n"), "warren.conf", &c); err != nil {
		t.Fatal(err)
	}
	if c.Clustered() || len(c.Warnings) != 1 {
		t.Fatalf("another backend: clustered %v, warnings %v", c.Clustered(), c.Warnings)
	}
}

func TestErrorsNameKeyAndLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"heartbeat = 10\nfoo.bar = 1\n", "x.conf:2: foo.bar: unknown key"},
		{"\nheartbeat = abc\n", "x.conf:2: heartbeat: expected an integer"},
		{"listeners.tcp.default\n", "x.conf:1: expected `key = value`"},
		{"disk_free_limit.absolute = lots\n", "x.conf:1: disk_free_limit.absolute: expected a size"},
		{"vm_memory_high_watermark.relative = 2\n", "x.conf:1: vm_memory_high_watermark.relative"},
		{"disk_free_limit.relative = -1\n", "x.conf:1: disk_free_limit.relative: expected a positive multiple"},
		{"vm_memory_high_watermark_paging_ratio = 1.5\n", "x.conf:1: vm_memory_high_watermark_paging_ratio"},
	} {
		c := Default()
		err := Parse(strings.NewReader(tc.in), "x.conf", &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestEnv(t *testing.T) {
	c := Default()
	env := map[string]string{"WARREN_NODE_PORT": "6000", "WARREN_DATA_DIR": "/tmp/x"}
	if err := ApplyEnv(&c, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.AMQPListeners[0] != ":6000" || c.DataDir != "/tmp/x" {
		t.Fatalf("%+v", c)
	}
	env["WARREN_NODE_PORT"] = "x"
	if err := ApplyEnv(&c, func(k string) string { return env[k] }); err == nil {
		t.Fatal("bad port accepted")
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"50000000": 50e6, "50MB": 50e6, "1GiB": 1 << 30, "512MiB": 512 << 20, "100kB": 1e5} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
}

func TestRelativeDiskLimitAndPagingRatio(t *testing.T) {
	c := Default()
	if err := Parse(strings.NewReader("disk_free_limit.relative = 1.5\nvm_memory_high_watermark_paging_ratio = 0.75\n"), "x.conf", &c); err != nil {
		t.Fatal(err)
	}
	if c.DiskFreeLimitRelative != 1.5 || c.VMMemoryHighWatermarkPagingRatio != 0.75 || len(c.Warnings) != 0 {
		t.Fatalf("got %v %v %v", c.DiskFreeLimitRelative, c.VMMemoryHighWatermarkPagingRatio, c.Warnings)
	}
}

func TestPartitionHandlingAndNodeDownGrace(t *testing.T) {
	c := Default()
	if c.PartitionHandling != "ignore" || c.NodeDownGrace != 5*time.Second {
		t.Fatalf("defaults: %q, %v", c.PartitionHandling, c.NodeDownGrace)
	}
	for _, v := range []string{"pause_minority", "autoheal", "ignore"} {
		c := Default()
		if err := Parse(strings.NewReader("cluster_partition_handling = "+v+"\ncluster_node_down_grace_period = 1500\n"), "warren.conf", &c); err != nil {
			t.Fatal(err)
		}
		if c.PartitionHandling != v || c.NodeDownGrace != 1500*time.Millisecond || len(c.Warnings) != 0 {
			t.Fatalf("%s: %q %v %v", v, c.PartitionHandling, c.NodeDownGrace, c.Warnings)
		}
	}
	c = Default()
	if err := Parse(strings.NewReader("cluster_partition_handling = pause_if_all_down\n"), "warren.conf", &c); err != nil || c.PartitionHandling != "ignore" || len(c.Warnings) != 1 {
		t.Fatalf("pause_if_all_down: %v %q %v", err, c.PartitionHandling, c.Warnings)
	}
	for _, in := range []string{"cluster_partition_handling = pause_majority", "cluster_node_down_grace_period = -1", "cluster_node_down_grace_period = 5s"} {
		c := Default()
		if err := Parse(strings.NewReader(in+"\n"), "warren.conf", &c); err == nil {
			t.Fatalf("%q accepted", in)
		}
	}
}
