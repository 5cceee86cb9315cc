package ctl_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

var record = flag.Bool("record", false, "run testdata/compare.script against RabbitMQ 3.10 (rabbitmqctl, management API on 127.0.0.1:15672) and rewrite its golden file")

// TestCompareWithRabbitmqctl runs the same script with warrenctl against
// Warren and with rabbitmqctl against RabbitMQ 3.10, side by side:
// Warren's transcript must equal its golden file (refreshed with
// -update), and each command's output must have the same lines as
// RabbitMQ's recorded transcript (compare.rabbitmq-3.10.golden, refreshed
// with -record on a machine running RabbitMQ 3.10). Lines are compared
// as sets per command because RabbitMQ lists objects in hash order.
func TestCompareWithRabbitmqctl(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("testdata", "compare.script"))
	if err != nil {
		t.Fatal(err)
	}
	rabbitGolden := filepath.Join("testdata", "compare.rabbitmq-3.10.golden")
	if *record {
		out := runScript(t, string(script), rabbitmqTarget(t))
		if err := os.WriteFile(rabbitGolden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port, mport := startNodeOn(t, "127.0.0.1:0", 0)
	got := runScript(t, string(script), warrenTarget(t, port, mport))
	warrenGolden := filepath.Join("testdata", "compare.warren.golden")
	if *update {
		os.WriteFile(warrenGolden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(warrenGolden)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if got != string(want) {
		t.Errorf("warrenctl output differs from %s (rerun with -update if intended):\n%s", warrenGolden, got)
	}
	ref, err := os.ReadFile(rabbitGolden)
	if err != nil {
		t.Fatal(err)
	}
	gb, rb := blocks(got), blocks(string(ref))
	if len(gb) != len(rb) {
		t.Fatalf("%d commands in Warren's transcript, %d in RabbitMQ's", len(gb), len(rb))
	}
	for i := range gb {
		if gb[i].cmd != rb[i].cmd {
			t.Fatalf("command %d: %q vs %q", i, gb[i].cmd, rb[i].cmd)
		}
		// the tool names itself ("See 'warrenctl help set_permissions'")
		if g, r := normalize(strings.ReplaceAll(gb[i].out, "warrenctl", "rabbitmqctl")), normalize(rb[i].out); g != r {
			t.Errorf("%s\n--- warrenctl:\n%s--- rabbitmqctl 3.10:\n%s", gb[i].cmd, gb[i].out, rb[i].out)
		}
	}
}

type target struct {
	ctl  func(args []string) (string, int)
	http func(method, path, body string)
	wait bool
}

// warrenTarget runs warrenctl against the control port and HTTP calls
// against the management port.
func warrenTarget(t *testing.T, port, mgmtPort string) target {
	return target{
		ctl: func(args []string) (string, int) {
			out, _, code := run(t, port, args...)
			return out, code
		},
		http: func(method, path, body string) { httpCall(t, "http://127.0.0.1:"+mgmtPort, method, path, body) },
	}
}

func rabbitmqTarget(t *testing.T) target {
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Fatal("-record needs rabbitmqctl and a running RabbitMQ 3.10")
	}
	return target{
		ctl: func(args []string) (string, int) {
			cmd := exec.Command("rabbitmqctl", args...)
			var out bytes.Buffer
			cmd.Stdout = &out
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			return out.String(), code
		},
		http: func(method, path, body string) { httpCall(t, "http://127.0.0.1:15672", method, path, body) },
		wait: true,
	}
}

func httpCall(t *testing.T, base, method, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode >= 300 {
		t.Fatalf("%s %s: %s", method, path, r.Status)
	}
}

func runScript(t *testing.T, script string, tg target) string {
	var all strings.Builder
	for _, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch f[0] {
		case "sleep":
			if tg.wait {
				time.Sleep(time.Second)
			}
		case "http":
			tg.http(f[1], f[2], strings.Join(f[3:], " "))
		case "ctl":
			out, code := tg.ctl(f[1:])
			all.WriteString("$ " + strings.Join(f[1:], " ") + "\n" + out)
			if code != 0 {
				all.WriteString("[exit " + string(rune('0'+code/10)) + string(rune('0'+code%10)) + "]\n")
			}
		default:
			t.Fatalf("bad script line %q", line)
		}
	}
	return all.String()
}

type block struct{ cmd, out string }

func blocks(transcript string) []block {
	var bs []block
	for _, l := range strings.SplitAfter(transcript, "\n") {
		if strings.HasPrefix(l, "$ ") {
			bs = append(bs, block{cmd: strings.TrimSpace(l)})
		} else if len(bs) > 0 {
			bs[len(bs)-1].out += l
		}
	}
	return bs
}

// normalize sorts a command's output lines, with JSON rows compared as
// values (rabbitmqctl starts all rows but the first with ",").
func normalize(out string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		l = strings.TrimPrefix(l, ",")
		if strings.HasPrefix(l, "{") {
			var v any
			if json.Unmarshal([]byte(l), &v) == nil {
				b, _ := json.Marshal(v)
				l = string(b)
			}
		}
		lines = append(lines, l)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestStatusSectionsAsRabbitmqctl: status prints rabbitmqctl 3.10.8's
// sections in its order (all but Plugins, which Warren does not have),
// every listener including HTTP and Prometheus, an address bound to all
// interfaces as [::], and real figures for file descriptors, disk space
// and totals.
func TestStatusSectionsAsRabbitmqctl(t *testing.T) {
	port, mport := startNodeOn(t, ":0", -1)
	out, e, code := run(t, port, "status")
	if code != 0 {
		t.Fatal(e)
	}
	lines := strings.Split(out, "\n")
	var headings []string
	for i := 1; i+1 < len(lines); i++ {
		if lines[i] != "" && lines[i+1] == "" && (i == 1 || lines[i-1] == "") && !strings.Contains(lines[i], ":") && !strings.HasPrefix(lines[i], " * ") && lines[i] != "(none)" {
			headings = append(headings, lines[i])
		}
	}
	want := "Runtime|Data directory|Config files|Log file(s)|Alarms|Memory|File Descriptors|Free Disk Space|Totals|Listeners"
	if strings.Join(headings, "|") != want {
		t.Errorf("sections %q, want %q\n%s", strings.Join(headings, "|"), want, out)
	}
	for _, re := range []string{
		`(?m)^Status of node warren@127.0.0.1 \.\.\.$`,
		`(?m)^Interface: \[::\], port: [1-9][0-9]*, protocol: amqp, purpose: AMQP 0-9-1$`,
		`(?m)^Interface: 127\.0\.0\.1, port: ` + mport + `, protocol: http, purpose: HTTP API$`,
		`(?m)^Interface: 127\.0\.0\.1, port: [1-9][0-9]*, protocol: http/prometheus, purpose: Prometheus exporter API over HTTP$`,
		`(?m)^Total: [1-9][0-9]*, limit: [1-9][0-9]*$`,
		`(?m)^Sockets: 0, limit: [1-9][0-9]*$`,
		`(?m)^Free disk space: [0-9.]+ gb$`,
		`(?m)^Low free disk space watermark: 0.05 gb$`,
		`(?m)^Connection count: 0$`,
		`(?m)^Queue count: 0$`,
		`(?m)^Virtual host count: 1$`,
		`(?m)^Memory high watermark setting: 0.4 of available memory, computed to: [0-9.]+ gb$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status lacks %s:\n%s", re, out)
		}
	}
	// -s prints no "Status of node" line
	out, _, _ = run(t, port, "-s", "status")
	if strings.Contains(out, "Status of node") || !strings.HasPrefix(out, "Runtime") {
		t.Errorf("-s status:\n%s", out)
	}
}

// TestErrorsAsRabbitmqctl: messages and exit codes for missing or
// existing objects, as rabbitmqctl 3.10.8 gives them (recorded by hand:
// `rabbitmqctl <args>; echo $?`, stderr after "Error:" unless bare).
func TestErrorsAsRabbitmqctl(t *testing.T) {
	port := startNode(t)
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"delete_queue", "nosuch"}, 64, "Error:\nQueue not found\n"},
		{[]string{"delete_user", "nosuch"}, 67, "Error:\nUser \"nosuch\" does not exist\n"},
		{[]string{"set_user_tags", "nosuch", "x"}, 67, "Error:\nUser \"nosuch\" does not exist\n"},
		{[]string{"change_password", "nosuch", "x"}, 67, "Error:\nUser \"nosuch\" does not exist\n"},
		{[]string{"add_user", "guest", "x"}, 70, "Error:\nUser \"guest\" already exists\n"},
		{[]string{"delete_vhost", "nosuch"}, 65, "Virtual host 'nosuch' does not exist\n"},
		{[]string{"list_permissions", "-p", "nosuch"}, 65, "Virtual host 'nosuch' does not exist\n"},
		{[]string{"clear_policy", "nosuch"}, 69, "Error:\nParameter does not exist\n"},
		{[]string{"purge_queue", "nosuch"}, 69, "Error:\nnot_found\n"},
		{[]string{"set_permissions", "-p", "nosuch", "guest", ".*", ".*", ".*"}, 69, "Error:\nVirtual host nosuch does not exist\n"},
		{[]string{"authenticate_user", "guest", "wrong"}, 65, "Error:\nError: failed to authenticate user \"guest\"\nuser 'guest' - invalid credentials\n"},
	} {
		_, errOut, code := run(t, port, tc.args...)
		if code != tc.code || errOut != tc.err {
			t.Errorf("%v: exit %d, stderr %q; rabbitmqctl: exit %d, %q", tc.args, code, errOut, tc.code, tc.err)
		}
	}
	// listing a vhost that does not exist lists nothing, successfully
	if out, e, code := run(t, port, "list_queues", "-p", "nosuch"); code != 0 || e != "" || out != "Timeout: 60.0 seconds ...\nListing queues for vhost nosuch ...\n" {
		t.Errorf("list_queues -p nosuch: %d %q %q", code, out, e)
	}
}
