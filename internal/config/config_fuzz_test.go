package config

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSeedFileAndNewKeys(t *testing.T) {
	c := Default()
	if c.ControlPort != 25673 || c.ControlIP != "127.0.0.1" || c.PrometheusPerObject || c.HTTPMaxConnections != 1024 {
		t.Fatalf("defaults: control %s:%d, per-object %v, max connections %d", c.ControlIP, c.ControlPort, c.PrometheusPerObject, c.HTTPMaxConnections)
	}
	if err := ParseFile("testdata/rabbitmq.conf", &c); err != nil {
		t.Fatal(err)
	}
	if c.ControlPort != 25674 || !c.PrometheusPerObject || c.HTTPMaxConnections != 512 || c.HTTPIdleTimeout != time.Minute || c.PrometheusPort != 15693 {
		t.Fatalf("%+v", c)
	}
	env := map[string]string{"WARREN_CONTROL_PORT": "25999"}
	if err := ApplyEnv(&c, func(k string) string { return env[k] }); err != nil || c.ControlPort != 25999 {
		t.Fatalf("WARREN_CONTROL_PORT: %v %d", err, c.ControlPort)
	}
}

// TestNumbersBounded: sizes and numbers that would overflow are refused.
func TestNumbersBounded(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"disk_free_limit.absolute = 9223372036854775807GB\n", "too large"},
		{"vm_memory_high_watermark.absolute = 99999999999TiB\n", "too large"},
		{"disk_free_limit.absolute = 99999999999999999999\n", "expected a size"},
		{"max_message_size = 9223372036854775807KiB\n", "too large"},
		{"heartbeat = 99999999999999999999\n", "expected an integer between 0 and 65535"},
		{"control.tcp.port = 65536\n", "expected an integer between 0 and 65535"},
		{"management.tcp.max_connections = 0\n", "expected an integer between 1"},
		{"management.tcp.idle_timeout = 9223372036854775807\n", "expected an integer between 1"},
		{"prometheus.return_per_object_metrics = yes\n", "expected true or false"},
		{"vm_memory_high_watermark.relative = NaN\n", "expected a fraction"},
		{"vm_memory_high_watermark_paging_ratio = NaN\n", "expected a fraction"},
		{"disk_free_limit.relative = Inf\n", "expected a positive multiple"},
		{"disk_free_limit.relative = 1e300\n", "expected a positive multiple"},
	} {
		c := Default()
		err := Parse(strings.NewReader(tc.in), "x.conf", &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.want)
		}
	}
	if n, err := ParseSize("8388607TiB"); err != nil || n != 8388607<<40 {
		t.Errorf("ParseSize(8388607TiB) = %d, %v", n, err)
	}
}

// FuzzParse: the warren.conf parser never panics and what it accepts is
// in range.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.conf")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("disk_free_limit.absolute = 9223372036854775807GB\n")
	f.Fuzz(func(t *testing.T, in string) {
		c := Default()
		if err := Parse(strings.NewReader(in), "fuzz.conf", &c); err != nil {
			return
		}
		if c.DiskFreeLimit < 0 || c.VMMemoryHighWatermarkAbsolute < 0 || c.MaxMessageSize <= 0 || c.MaxMessageSize > 512<<20 {
			t.Fatalf("out of range: %+v", c)
		}
		if c.VMMemoryHighWatermark < 0 || c.VMMemoryHighWatermark > 1 || math.IsNaN(c.VMMemoryHighWatermark) || math.IsNaN(c.DiskFreeLimitRelative) || math.IsInf(c.DiskFreeLimitRelative, 0) {
			t.Fatalf("fraction out of range: %+v", c)
		}
		for _, p := range []int{c.ManagementPort, c.PrometheusPort, c.ControlPort} {
			if p < 0 || p > 65535 {
				t.Fatalf("port %d", p)
			}
		}
		if c.HTTPMaxConnections < 1 || c.HTTPIdleTimeout <= 0 {
			t.Fatalf("HTTP limits %d %v", c.HTTPMaxConnections, c.HTTPIdleTimeout)
		}
	})
}
