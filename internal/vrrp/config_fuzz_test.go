package vrrp

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestParseConfigBounds: durations, numbers and nesting are bounded; a
// deeply nested or huge file is refused, not a stack overflow.
func TestParseConfigBounds(t *testing.T) {
	inst := func(body string) string {
		return "vrrp_instance V {\n interface eth0\n virtual_router_id 5\n virtual_ipaddress {\n 10.0.0.1/24\n }\n" + body + "}\n"
	}
	for _, tc := range []struct{ in, want string }{
		{inst("advert_int 9223372036854775807\n"), "out of range"},
		{inst("advert_int NaN\n"), "expected a number of seconds"},
		{inst("advert_int Inf\n"), "expected a number of seconds"},
		{inst("advert_int 0\n"), "advert_int 0s must be between 1 and 255 seconds"},
		{inst("advert_int 256\n"), "between 1 and 255 seconds"},
		{inst("version 3\nadvert_int 41\n"), "between 0.01 and 40.95 seconds"},
		{inst("preempt_delay 1e300\n"), "out of range"},
		{inst("garp_master_delay 99999999999\n"), "out of range"},
		{"global_defs {\n vrrp_garp_master_repeat 99999999999\n}\n", "expected an integer between 0 and 2147483647"},
		{"global_defs {\n vrrp_garp_master_delay 1e19\n}\n", "out of range"},
		{"vrrp_script s {\n script true\n interval 0\n}\n", "interval must be above 0"},
		{"vrrp_script s {\n script true\n interval 1e12\n}\n", "out of range"},
		{"vrrp_script s {\n script true\n rise 0\n}\n", "'rise' must be between 1"},
		{"vrrp_script s {\n script true\n fall 9999999999\n}\n", "'fall' must be between 1"},
		{"vrrp_script s {\n script true\n}\n" + inst("track_script {\n s weight 99999\n}\n"), "weight must be an integer between -253 and 253"},
		{"virtual_server 1.2.3.4 80 {\n" + strings.Repeat("a {\n", 100) + strings.Repeat("}\n", 101), "blocks nested deeper than 32 levels"},
	} {
		_, err := ParseReader(strings.NewReader(tc.in), "k.conf")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.want)
		}
	}
	// 32 levels are fine
	ok := "virtual_server 1.2.3.4 80 {\n" + strings.Repeat("a {\n", 30) + strings.Repeat("}\n", 31)
	if _, err := ParseReader(strings.NewReader(ok), "k.conf"); err != nil {
		t.Errorf("30 nested blocks: %v", err)
	}
}

// TestParseHugeNestedFileRefused: the 15 MB file of nested blocks that
// overflowed the stack is refused with an error, in bounded memory.
func TestParseHugeNestedFileRefused(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("virtual_server 1.2.3.4 80 {\n")
	for b.Len() < 15<<20 {
		b.WriteString("x {\n")
	}
	_, err := ParseReader(&b, "huge.conf")
	if err == nil || !(strings.Contains(err.Error(), "too large") || strings.Contains(err.Error(), "nested deeper")) {
		t.Fatalf("15 MB of nested blocks: %v", err)
	}
}

func TestFuzzSeedsParse(t *testing.T) {
	seeds, _ := filepath.Glob("testdata/conf/*.conf")
	if len(seeds) == 0 {
		t.Fatal("no seed corpus in testdata/conf/")
	}
	for _, p := range seeds {
		if _, err := Parse(p); err != nil {
			t.Errorf("seed %s: %v", p, err)
		}
	}
}

// FuzzParseConfig: the keepalived.conf parser never panics or overflows
// its stack, and what it accepts has bounded, positive timers.
func FuzzParseConfig(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/conf/*.conf")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("virtual_server a {\n b {\n c {\n}\n}\n}\n")
	f.Add("vrrp_instance V {\n interface eth0\n virtual_router_id 5\n advert_int 9223372036854775807\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n")
	f.Fuzz(func(t *testing.T, in string) {
		// includes are resolved relative to a directory with nothing in it
		cfg, err := ParseReader(strings.NewReader(in), filepath.Join(t.TempDir(), "fuzz.conf"))
		if err != nil {
			return
		}
		for _, in := range cfg.Instances {
			if in.AdvertInt <= 0 || in.AdvertInt > 255*time.Second {
				t.Fatalf("instance %s: advert_int %v", in.Name, in.AdvertInt)
			}
			for _, d := range []time.Duration{in.PreemptDelay, in.GarpDelay} {
				if d < 0 || d > MaxDelay {
					t.Fatalf("instance %s: delay %v", in.Name, d)
				}
			}
		}
		for _, s := range cfg.Scripts {
			if s.Interval <= 0 || s.Interval > MaxDelay || s.Timeout < 0 || s.Timeout > MaxDelay {
				t.Fatalf("script %s: interval %v timeout %v", s.Name, s.Interval, s.Timeout)
			}
		}
	})
}
