package lb

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ask sends one line to the runtime API and returns the whole answer.
func ask(t *testing.T, network, addr, line string) string {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial the stats socket: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", line, err)
	}
	return string(b)
}

func TestRuntimeAPIDrainMaintWeight(t *testing.T) {
	a, b := newEcho(t, "A"), newEcho(t, "B")
	text := "global\n  stats socket ipv4@127.0.0.1:0 level admin\n" +
		cfgText("  balance roundrobin\n", "A "+a.addr()+" check inter 1h", "B "+b.addr()+" check inter 1h")
	rt, addr := startLB(t, text)
	sock := rt.StatsSocketAddr().String()
	q := func(line string) string { return ask(t, "tcp", sock, line) }
	spread := func(n int) map[string]int {
		got := map[string]int{}
		for i := 0; i < n; i++ {
			name, c := hello(t, addr)
			got[name]++
			if c != nil {
				c.Close()
			}
		}
		return got
	}

	// drain: no new sessions for A, checks and the UP state stay
	if got := q("set server test/A state drain"); got != "\n" {
		t.Fatalf("set server ... state drain answered %q", got)
	}
	if got := spread(6); got["B"] != 6 {
		t.Fatalf("A draining, new sessions went %v", got)
	}
	if st := statusOf(rt, "A"); st != "DRAIN" {
		t.Fatalf("A's status %q, want DRAIN", st)
	}
	// maint: MAINT in the stats; ready brings it back
	q("set server test/A state maint")
	if st := statusOf(rt, "A"); st != "MAINT" {
		t.Fatalf("A's status %q, want MAINT", st)
	}
	state := q("show servers state test")
	if !strings.HasPrefix(state, "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ") ||
		!strings.Contains(state, "\n1 test 1 A 127.0.0.1 2 1 1 1 ") {
		t.Fatalf("show servers state:\n%s", state)
	}
	q("enable server test/A")
	if got := spread(6); got["A"] != 3 || got["B"] != 3 {
		t.Fatalf("A ready again, sessions went %v", got)
	}
	// weights: absolute and relative to the configured weight
	if got := q("set weight test/B 3; get weight test/B"); got != "\n3 (initial 1)\n\n" {
		t.Fatalf("set+get weight answered %q", got)
	}
	if got := spread(8); got["A"] != 2 || got["B"] != 6 {
		t.Fatalf("weights 1:3, sessions went %v", got)
	}
	for line, want := range map[string]string{
		"set weight test/B 300":          "Absolute weight can only be between 0 and 256 inclusive.\n\n",
		"set server test/A state bogus":  "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n",
		"disable server test/X":          "No such server.\n\n",
		"disable server nope":            "Require 'backend/server'.\n\n",
		"show servers state nope":        "Can't find backend.\n\n",
		"get weight nope/A":              "No such backend.\n\n",
		"set server test/A weight 50%":   "\n",
		"set server test/A frobnicate 1": "'set server <srv>' only supports 'state' and 'weight'.\n\n",
	} {
		if got := q(line); got != want {
			t.Errorf("%q answered %q, want %q", line, got, want)
		}
	}
	if got := q("bogus"); !strings.HasPrefix(got, "Unknown command.") {
		t.Errorf("an unknown command answered %q", got)
	}
	stat := q("show stat")
	if !strings.HasPrefix(stat, "# pxname,svname,") || !strings.Contains(stat, "\ntest,A,") {
		t.Errorf("show stat:\n%s", stat)
	}
}

func statusOf(rt *Runtime, server string) string {
	for _, r := range rt.Rows() {
		if r.SvName == server {
			return r.Status
		}
	}
	return ""
}

// The default level is HAProxy's: user, which may look but not change;
// a unix socket gets the configured mode; prompt mode keeps the
// connection for several commands.
func TestRuntimeAPIUnixSocketLevelAndPrompt(t *testing.T) {
	a := newEcho(t, "A")
	path := filepath.Join(t.TempDir(), "proxy.sock")
	rt, _ := startLB(t, "global\n  stats socket "+path+" mode 600\n"+cfgText("", "A "+a.addr()))
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket file %v %v", fi, err)
	}
	if got := ask(t, "unix", path, "disable server test/A"); got != "Permission denied\n\n" {
		t.Fatalf("level user: disable server answered %q", got)
	}
	if got := ask(t, "unix", path, "get weight test/A"); got != "1 (initial 1)\n\n" {
		t.Fatalf("level user: get weight answered %q", got)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, "prompt\nget weight test/A\nquit\n")
	b, _ := io.ReadAll(c)
	if got := string(b); got != "> 1 (initial 1)\n\n> " {
		t.Fatalf("prompt session: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rt.Close(ctx, false)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left after Close: %v", err)
	}
}

// Passive health. Warren's default: a checked server whose connections
// fail is marked DOWN by live traffic (fall failures in a row) long before
// its next check; HAProxy's behaviour (--haproxy-checks) leaves it to the
// checks unless the server says "observe layer4".
func TestObserveLayer4Modes(t *testing.T) {
	for _, tc := range []struct {
		name          string
		haproxyChecks bool
		opts          string
		wantDown      bool
	}{
		{"warren default observes", false, "", true},
		{"haproxy checks only", true, "", false},
		{"explicit observe with mark-down", true, " observe layer4 error-limit 2 on-error mark-down", true},
		{"explicit observe, limit not reached", true, " observe layer4 error-limit 50 on-error mark-down", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dead := newEcho(t, "A")
			deadAddr := dead.addr()
			dead.kill()
			live := newEcho(t, "B")
			cfg, err := Parse(strings.NewReader(cfgText("  balance roundrobin\n",
				"A "+deadAddr+" check inter 1h fall 3"+tc.opts, "B "+live.addr()+" check inter 1h")), "test.cfg")
			if err != nil {
				t.Fatal(err)
			}
			rt := New(slog.New(slog.DiscardHandler))
			rt.HAProxyChecks = tc.haproxyChecks
			if err := rt.Apply(cfg); err != nil {
				t.Fatal(err)
			}
			defer rt.Close(context.Background(), false)
			addr := rt.Addr(cfg.Proxies[0].Binds[0]).String()
			for i := 0; i < 12; i++ { // redispatch saves every client
				if name, c := hello(t, addr); name != "B" {
					t.Fatalf("client %d reached %q", i, name)
				} else {
					c.Close()
				}
			}
			// the recheck an observed error triggers also fails; give it time
			deadline := time.Now().Add(2 * time.Second)
			for statusOf(rt, "A") != "DOWN" && tc.wantDown && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := statusOf(rt, "A") == "DOWN"; got != tc.wantDown {
				t.Fatalf("A DOWN = %v, want %v (status %q)", got, tc.wantDown, statusOf(rt, "A"))
			}
		})
	}
}

// One refused connection to a healthy server does not take it out: the
// observed error counts as one failed check and triggers a check at once,
// which passes and restores full health.
func TestObservedRefusalThenHealthyStaysUp(t *testing.T) {
	a := newEcho(t, "A")
	rt, _ := startLB(t, cfgText("", "A "+a.addr()+" check inter 1h rise 2 fall 3"))
	rt.mu.Lock()
	s := rt.order[0].servers[0]
	rt.mu.Unlock()
	s.observeFailure(errors.New("connection refused (simulated transient refusal)"))
	if st := statusOf(rt, "A"); st != "UP 1/3" && st != "UP" {
		t.Fatalf("after one observed refusal A is %q", st)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		var r Row
		for _, x := range rt.Rows() {
			if x.SvName == "A" {
				r = x
			}
		}
		if r.CheckStatus == "L4OK" && r.Status == "UP" && r.Chkfail == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the check an observed refusal triggers did not restore A: %+v", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseStatsSocketAndObserve(t *testing.T) {
	cfg, err := Parse(strings.NewReader("global\n  pidfile /run/p.pid\n  stats socket /run/x.sock mode 660 level operator expose-fd listeners\n  stats timeout 30s\n"+
		cfgText("", "A 127.0.0.1:1 check observe layer4 error-limit 5 on-error sudden-death")), "t.cfg")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Global.StatsSocket
	if cfg.Global.PidFile != "/run/p.pid" || s == nil || s.Network != "unix" || s.Addr != "/run/x.sock" || s.Mode != 0o660 || s.Level != "operator" || s.Timeout != 30*time.Second {
		t.Fatalf("global: %+v socket %+v", cfg.Global, s)
	}
	sv := cfg.Proxies[0].Servers[0]
	if sv.Observe != "layer4" || sv.ErrorLimit != 5 || sv.OnError != "sudden-death" {
		t.Fatalf("server: %+v", sv)
	}
	for _, bad := range []string{
		"global\n  stats socket /x level root\n",
		"global\n  stats socket /x mode 999\n",
		"global\n  stats socket nowhere\n",
		cfgText("", "A 127.0.0.1:1 check observe layer5"),
		cfgText("", "A 127.0.0.1:1 check on-error explode"),
		cfgText("", "A 127.0.0.1:1 check error-limit 0"),
	} {
		if _, err := Parse(strings.NewReader(bad), "t.cfg"); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}
