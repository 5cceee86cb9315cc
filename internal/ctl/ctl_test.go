package ctl_test

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/ctl"
	"github.com/warrenmq/warren/internal/node"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func startNode(t *testing.T) (port string) {
	port, _ = startNodeOn(t, "127.0.0.1:0", 0)
	return port
}

// startNodeOn starts a node with AMQP on amqpAddr and the Prometheus
// endpoint on prometheusPort (-1: a free port, 0: none), and returns its
// control port (warrenctl's) and its management port (the HTTP API's).
func startNodeOn(t *testing.T, amqpAddr string, prometheusPort int) (port, mgmtPort string) {
	t.Helper()
	cfg := config.Default()
	cfg.NodeName = "warren@localhost"
	cfg.ClusterName = "warren@localhost"
	cfg.AMQPListeners = []string{amqpAddr}
	cfg.ManagementPort, cfg.PrometheusPort, cfg.ControlPort = -1, prometheusPort, -1
	cfg.DataDir = t.TempDir()
	t.Setenv("WARREN_COOKIE_FILE", filepath.Join(cfg.DataDir, "cookie"))
	n, err := node.Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Stop(ctx)
	})
	portOf := func(name string) string {
		a := n.Addr(name).String()
		return a[strings.LastIndex(a, ":")+1:]
	}
	return portOf("control"), portOf("management")
}

func run(t *testing.T, port string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := ctl.Main(append([]string{"-n", "warren@127.0.0.1", "--port", port}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// TestGuideCommandsGolden runs the classic guide's operator commands as
// written and compares the output with golden files.
func TestGuideCommandsGolden(t *testing.T) {
	port := startNode(t)
	steps := [][]string{
		{"add_user", "prim", "123456"},
		{"set_user_tags", "prim", "administrator"},
		{"set_permissions", "-p", "/", "prim", ".*", ".*", ".*"},
		{"list_users"},
		{"set_policy", "xall", "^", `{"ha-mode":"all"}`},
		{"list_policies"},
		{"add_vhost", "edu"},
		{"list_vhosts"},
		{"list_permissions", "-p", "/"},
		{"list_user_permissions", "prim"},
		{"list_queues", "name", "messages", "consumers"},
		{"list_exchanges", "-q", "name", "type"},
		{"cluster_status"},
		{"authenticate_user", "prim", "123456"},
		{"clear_policy", "xall"},
		{"delete_user", "prim"},
	}
	var all bytes.Buffer
	for _, s := range steps {
		out, errOut, code := run(t, port, s...)
		all.WriteString("$ warrenctl " + strings.Join(s, " ") + "\n" + out)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", s, code, errOut)
		}
	}
	golden := filepath.Join("testdata", "guide.golden")
	// what changes from run to run: ephemeral ports, the Go release
	stable := regexp.MustCompile(`port: [0-9]+`).ReplaceAllString(all.String(), "port: PORT")
	stable = regexp.MustCompile(`on Go go[0-9.]+\S*`).ReplaceAllString(stable, "on Go GOVERSION")
	all.Reset()
	all.WriteString(stable)
	if *update {
		os.WriteFile(golden, all.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if all.String() != string(want) {
		t.Fatalf("output differs from %s:\n%s", golden, all.String())
	}
}

func TestExitCodesAndErrors(t *testing.T) {
	port := startNode(t)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"delete_user", "ghost"}, ctl.ExitNoUser, `User "ghost" does not exist`},
		{[]string{"set_policy", "p", "^", `{"ha-mode":"exactly"}`}, ctl.ExitDataErr, `ha-mode="exactly" takes an integer, none given`},
		{[]string{"set_policy", "p", "^", `not json`}, ctl.ExitDataErr, "could not parse"},
		{[]string{"list_queues", "bogus"}, ctl.ExitUsage, "Invalid column"},
		{[]string{"add_user", "onlyname"}, ctl.ExitUsage, "accepts 2 arg"},
		{[]string{"no_such_verb"}, ctl.ExitUsage, "unknown command"},
	} {
		_, errOut, code := run(t, port, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", tc.args, code, tc.code, errOut, tc.msg)
		}
	}
	// wrong cookie: the cookies differ
	bad := filepath.Join(t.TempDir(), "cookie")
	os.WriteFile(bad, []byte("WRONGWRONGWRONGWRONG"), 0o400)
	_, errOut, code := run(t, port, "--cookie-file", bad, "list_users")
	if code != ctl.ExitUnavailable || !strings.Contains(errOut, "cookies differ") {
		t.Errorf("wrong cookie: exit %d, %q", code, errOut)
	}
	// a cookie file readable by others: refused with Erlang's message
	loose := filepath.Join(t.TempDir(), "cookie")
	os.WriteFile(loose, []byte("WRONGWRONGWRONGWRONG"), 0o644)
	_, errOut, code = run(t, port, "--cookie-file", loose, "list_users")
	if code != ctl.ExitUnavailable || !strings.Contains(errOut, "Cookie file "+loose+" must be accessible by owner only") {
		t.Errorf("cookie file 0644: exit %d, %q", code, errOut)
	}
	// node down
	_, errOut, code = run(t, "1", "ping")
	if code != ctl.ExitUnavailable || !strings.Contains(errOut, "not reachable") {
		t.Errorf("unreachable: exit %d, %q", code, errOut)
	}
}

func TestStopStartApp(t *testing.T) {
	port := startNode(t)
	if _, e, code := run(t, port, "stop_app"); code != 0 {
		t.Fatal(e)
	}
	out, _, _ := run(t, port, "--formatter", "json", "status")
	if !strings.Contains(out, `"running_applications":[]`) {
		t.Fatalf("after stop_app: %s", out)
	}
	if _, e, code := run(t, port, "start_app"); code != 0 {
		t.Fatal(e)
	}
	if _, e, code := run(t, port, "-t", "5s", "await_startup"); code != 0 {
		t.Fatal(e)
	}
	out, _, _ = run(t, port, "--formatter", "json", "list_users")
	if out != "[\n{\"user\":\"guest\",\"tags\":[\"administrator\"]}\n]\n" {
		t.Fatalf("json formatter: %s", out)
	}
	_ = strconv.Itoa
}

// TestSetDiskFreeLimitRaisesTheAlarm sets a limit above any disk's free
// space: the node reports the disk alarm; setting it back clears it.
func TestSetDiskFreeLimitRaisesTheAlarm(t *testing.T) {
	port := startNode(t)
	alarms := func() string {
		out, e, code := run(t, port, "--formatter", "json", "status")
		if code != 0 {
			t.Fatal(e)
		}
		return out
	}
	if _, e, code := run(t, port, "set_disk_free_limit", "1000000TB"); code != 0 {
		t.Fatal(e)
	}
	out := alarms()
	if !strings.Contains(out, `"disk_free_limit":1000000000000000000`) || !strings.Contains(out, `"disk_free_alarm":true`) {
		t.Fatalf("status after raising the limit: %s", out)
	}
	if _, e, code := run(t, port, "set_disk_free_limit", "50MB"); code != 0 {
		t.Fatal(e)
	}
	if out := alarms(); !strings.Contains(out, `"disk_free_alarm":false`) || !strings.Contains(out, `"disk_free_limit":50000000`) {
		t.Fatalf("status after lowering the limit: %s", out)
	}
	if _, e, code := run(t, port, "set_disk_free_limit", "mem_relative", "0.5"); code != 0 {
		t.Fatal(e)
	}
	if _, e, code := run(t, port, "set_disk_free_limit", "lots"); code != 64 || !strings.Contains(e, "cannot read") {
		t.Fatalf("bad size: exit %d, %q", code, e)
	}
}
