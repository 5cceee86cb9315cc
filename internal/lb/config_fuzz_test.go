package lb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigBounds: every duration and number is bounded; the values that
// overflowed (and spun the health checker) are refused with the line.
func TestConfigBounds(t *testing.T) {
	srv := "listen a\n  bind :1\n  server s 1.2.3.4:5 check "
	for _, tc := range []struct{ in, want string }{
		{srv + "inter 9223372036854775807d\n", "x.cfg:3: server 's': timer overflow in argument '9223372036854775807d', maximum value is 2147483647 ms"},
		{srv + "inter 25d\n", "timer overflow in argument '25d'"},
		{srv + "inter 99999999999999999999999\n", "timer overflow"},
		{srv + "inter 0\n", "invalid value 0 for argument 'inter' of server s"},
		{srv + "fastinter 0ms\n", "invalid value 0ms for argument 'fastinter'"},
		{srv + "downinter 2147483648\n", "timer overflow"},
		{srv + "rise 2147483648\n", "at most 2147483647"},
		{srv + "maxconn 9223372036854775807\n", "at most 2147483647"},
		{"listen a\n  bind :1\n  maxconn 99999999999\n", "x.cfg:3: 'maxconn' expects a non-negative integer (at most 2147483647)"},
		{"listen a\n  bind :1\n  retries 4294967296\n", "at most 2147483647"},
		{"listen a\n  bind :1\n  timeout connect 9223372036854775807us\n", "timer overflow"},
		{"listen a\n  bind :1\n  timeout client -1\n", "invalid time value"},
		{"global\n  maxconn 2147483648\n", "at most 2147483647"},
	} {
		_, err := Parse(strings.NewReader(tc.in), "x.cfg")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.want)
		}
	}
	for in, want := range map[string]time.Duration{"2147483647": MaxTime, "24d": 24 * 24 * time.Hour, "2147483647000us": MaxTime, "1s": time.Second} {
		if d, err := ParseTime(in); err != nil || d != want {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, d, err, want)
		}
	}
}

// FuzzParse: the haproxy.cfg parser never panics, and what it accepts has
// bounded, positive check intervals.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.cfg")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("listen a\n  bind :1\n  server s 1.2.3.4:5 check inter 9223372036854775807d\n")
	f.Fuzz(func(t *testing.T, in string) {
		cfg, err := Parse(strings.NewReader(in), "fuzz.cfg")
		if err != nil {
			return
		}
		for _, px := range cfg.Proxies {
			for _, s := range px.Servers {
				for _, d := range []time.Duration{s.Inter, s.FastInter, s.DownInter} {
					if d < 0 || d > MaxTime {
						t.Fatalf("server %s: interval %v out of bounds", s.Name, d)
					}
				}
				if s.Inter <= 0 {
					t.Fatalf("server %s: inter %v", s.Name, s.Inter)
				}
			}
			for _, d := range []time.Duration{px.Timeouts.Connect, px.Timeouts.Client, px.Timeouts.Server, px.Timeouts.Check, px.Timeouts.Queue} {
				if d < 0 || d > MaxTime {
					t.Fatalf("proxy %s: timeout %v out of bounds", px.Name, d)
				}
			}
		}
	})
}

func TestFuzzSeedsParse(t *testing.T) {
	seeds, _ := filepath.Glob("testdata/*.cfg")
	if len(seeds) == 0 {
		t.Fatal("no seed corpus in testdata/")
	}
	for _, p := range seeds {
		if _, err := ParseFiles([]string{p}); err != nil {
			t.Errorf("seed %s: %v", p, err)
		}
	}
}
