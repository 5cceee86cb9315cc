package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/lb"
	"github.com/warrenmq/warren/internal/testenv"
	"github.com/warrenmq/warren/internal/vrrp"
	"github.com/warrenmq/warren/test/halab"
)

// unit is a parsed systemd unit file: section -> key -> values, in order.
type unit map[string]map[string][]string

func parseUnit(r io.Reader) (unit, error) {
	u := unit{}
	sec := ""
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			sec = line[1 : len(line)-1]
			if u[sec] == nil {
				u[sec] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || sec == "" || strings.HasSuffix(line, "\\") {
				return nil, fmt.Errorf("line %d: %q is not 'Key=value' inside a section", n, line)
			}
			u[sec][strings.TrimSpace(k)] = append(u[sec][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u, sc.Err()
}

func (u unit) get(sec, key string) string {
	v := u[sec][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func units(t *testing.T, root string) map[string]unit {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "deploy", "systemd", "*.service"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no unit files under deploy/systemd (%v)", err)
	}
	out := map[string]unit{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		u, err := parseUnit(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".service")] = u
	}
	return out
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// built builds every command of cmd/ once into a temporary directory.
func built(t *testing.T, root string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "warren-deploy-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/...")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/...: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// checkArg is how each binary checks its arguments without running:
// warren-proxy -c checks the file as haproxy -c, warren-vrrp -t as
// keepalived -t; warren-server has no check mode, so --help after the
// unit's flags: the flag set parses them first and refuses an unknown one.
var checkArg = map[string]string{"warren-server": "--help", "warren-proxy": "-c", "warren-vrrp": "-t"}

// exampleFor maps a configuration path of a unit (/etc/warren/NAME) to
// deploy/examples/NAME, which must exist.
func exampleFor(t *testing.T, root, unitName, arg string) string {
	t.Helper()
	if !strings.HasPrefix(arg, "/etc/warren/") {
		return arg
	}
	p := filepath.Join(root, "deploy", "examples", strings.TrimPrefix(arg, "/etc/warren/"))
	if _, err := os.Stat(p); err != nil {
		t.Errorf("%s: %s has no example under deploy/examples (%v)", unitName, arg, err)
	}
	return p
}

// runChecked runs bin with args (check mode appended unless present) and
// returns its exit code and output.
func runChecked(bin string, args []string) (int, string) {
	name := filepath.Base(bin)
	has := false
	for _, a := range args {
		has = has || a == checkArg[name]
	}
	if !has {
		args = append(args, checkArg[name])
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+os.TempDir())
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return code, string(out)
}

// Every Exec line of every unit starts a binary of cmd/ with flags it
// accepts (its check mode passes with the example configuration), or sends
// a signal the unit's binary handles.
func TestUnitsStartRealBinariesWithRealFlags(t *testing.T) {
	root := testenv.RepoRoot(t)
	bins := built(t, root)
	for name, u := range units(t, root) {
		start := u.get("Service", "ExecStart")
		if start == "" {
			t.Errorf("%s: no ExecStart", name)
			continue
		}
		main := filepath.Base(strings.Fields(start)[0])
		if _, err := os.Stat(filepath.Join(root, "cmd", main)); err != nil {
			t.Errorf("%s: ExecStart runs %s, which is not a command under cmd/", name, main)
			continue
		}
		for _, key := range []string{"ExecStartPre", "ExecStart", "ExecReload", "ExecStop", "ExecStartPost"} {
			for _, line := range u["Service"][key] {
				argv := strings.Fields(strings.TrimLeft(line, "-@+!:"))
				bin := filepath.Base(argv[0])
				if bin == "kill" {
					// /bin/kill -SIG $MAINPID: the binary must handle SIG
					if len(argv) != 3 || argv[2] != "$MAINPID" || !strings.HasPrefix(argv[1], "-") {
						t.Errorf("%s: %s=%s: expected '/bin/kill -SIGNAL $MAINPID'", name, key, line)
						continue
					}
					sig := "SIG" + strings.TrimPrefix(strings.TrimPrefix(argv[1], "-"), "SIG")
					src, err := os.ReadFile(filepath.Join(root, "cmd", main, "main.go"))
					if err != nil || !regexp.MustCompile(`signal\.Notify\([^)]*syscall\.`+sig+`\b`).Match(src) {
						t.Errorf("%s: %s sends %s, which cmd/%s does not handle (signal.Notify)", name, key, sig, main)
					}
					continue
				}
				if bin != main {
					t.Errorf("%s: %s runs %s; the unit's binary is %s", name, key, bin, main)
					continue
				}
				if _, ok := checkArg[bin]; !ok {
					t.Errorf("%s: no check mode known for %s", name, bin)
					continue
				}
				args := make([]string, 0, len(argv)-1)
				for _, a := range argv[1:] {
					args = append(args, exampleFor(t, root, name, a))
				}
				code, out := runChecked(filepath.Join(bins, bin), args)
				if code != 0 {
					t.Errorf("%s: %s=%s: %s %v exits %d:\n%s", name, key, line, bin, args, code, out)
				}
				if bin == "warren-server" {
					for i, a := range args {
						if a == "--config" && i+1 < len(args) {
							c := config.Default()
							if err := config.ParseFile(args[i+1], &c); err != nil {
								t.Errorf("%s: --config %s: %v", name, argv[i+2], err)
							}
						}
					}
				}
			}
		}
	}
}

// The check modes refuse what they should: the test above would notice a
// flag a binary does not have.
func TestCheckModesRefuseUnknownFlags(t *testing.T) {
	root := testenv.RepoRoot(t)
	bins := built(t, root)
	for bin := range checkArg {
		if code, out := runChecked(filepath.Join(bins, bin), []string{"--no-such-flag"}); code == 0 {
			t.Errorf("%s --no-such-flag %s exits 0:\n%s", bin, checkArg[bin], out)
		}
	}
	if code, _ := runChecked(filepath.Join(bins, "warren-proxy"), []string{"-f", filepath.Join(root, "deploy", "examples", "keepalived.conf")}); code == 0 {
		t.Errorf("warren-proxy -c accepts keepalived.conf as a haproxy.cfg")
	}
}

// What the units must have: a restart policy, a descriptor limit, and the
// capabilities each daemon needs and no more.
func TestUnitsHardening(t *testing.T) {
	root := testenv.RepoRoot(t)
	us := units(t, root)
	for _, name := range []string{"warren-server", "warren-proxy", "warren-vrrp"} {
		u, ok := us[name]
		if !ok {
			t.Errorf("deploy/systemd/%s.service is missing", name)
			continue
		}
		for _, k := range []string{"Restart", "LimitNOFILE", "User", "NoNewPrivileges", "ProtectSystem", "CapabilityBoundingSet", "RestrictAddressFamilies"} {
			if _, ok := u["Service"][k]; !ok {
				t.Errorf("%s: no %s=", name, k)
			}
		}
		if u.get("Install", "WantedBy") != "multi-user.target" {
			t.Errorf("%s: WantedBy=%q", name, u.get("Install", "WantedBy"))
		}
	}
	caps := func(name string) string {
		return us[name].get("Service", "AmbientCapabilities") + "|" + us[name].get("Service", "CapabilityBoundingSet")
	}
	if c := caps("warren-vrrp"); c != "CAP_NET_ADMIN CAP_NET_RAW|CAP_NET_ADMIN CAP_NET_RAW" {
		t.Errorf("warren-vrrp capabilities %q: it needs CAP_NET_ADMIN and CAP_NET_RAW, nothing else", c)
	}
	if c := caps("warren-proxy"); c != "CAP_NET_BIND_SERVICE|CAP_NET_BIND_SERVICE" {
		t.Errorf("warren-proxy capabilities %q", c)
	}
	if c := caps("warren-server"); c != "|" {
		t.Errorf("warren-server capabilities %q: it needs none", c)
	}
	fams := us["warren-vrrp"].get("Service", "RestrictAddressFamilies")
	for _, f := range []string{"AF_NETLINK", "AF_PACKET", "AF_INET"} {
		if !strings.Contains(fams, f) {
			t.Errorf("warren-vrrp RestrictAddressFamilies=%s lacks %s", fams, f)
		}
	}
	// the proxy's pid file and stats socket live in its RuntimeDirectory
	cfg, err := lb.ParseFiles([]string{filepath.Join(root, "deploy", "examples", "haproxy.cfg")})
	if err != nil {
		t.Fatal(err)
	}
	rd := "/run/" + us["warren-proxy"].get("Service", "RuntimeDirectory") + "/"
	if !strings.HasPrefix(cfg.Global.PidFile, rd) || cfg.Global.StatsSocket == nil || !strings.HasPrefix(cfg.Global.StatsSocket.Addr, rd) || cfg.Global.StatsSocket.Level != "admin" {
		t.Errorf("haproxy.cfg's pidfile %q and stats socket must be under warren-proxy's RuntimeDirectory %s", cfg.Global.PidFile, rd)
	}
	if testenv.RequireAll() || hasCommand("systemd-analyze") {
		sa := testenv.NeedCommand(t, "systemd-analyze", "apt-get install systemd")
		files, _ := filepath.Glob(filepath.Join(root, "deploy", "systemd", "*.service"))
		out, _ := exec.Command(sa, append([]string{"verify", "--man=no"}, files...)...).CombinedOutput()
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			// the binaries are not installed where the units expect them here
			if l != "" && !strings.Contains(l, "is not executable") {
				t.Errorf("systemd-analyze verify: %s", l)
			}
		}
	}
}

func hasCommand(name string) bool { _, err := exec.LookPath(name); return err == nil }

// The example set parses with the real parsers, without warnings, and its
// parts agree: the proxy's servers are the cluster's nodes, the tracking
// script checks the proxy's pid file, the VIP is the clients' address.
func TestExamplesParse(t *testing.T) {
	root := testenv.RepoRoot(t)
	ex := func(n string) string { return filepath.Join(root, "deploy", "examples", n) }

	c := config.Default()
	if err := config.ParseFile(ex("warren.conf"), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warren.conf warnings: %v", c.Warnings)
	}
	var nodes []string
	for _, m := range c.Members() {
		nodes = append(nodes, strings.TrimPrefix(m.Name, "warren@"))
	}
	if !c.Clustered() || strings.Join(nodes, ",") != "A,B,C" {
		t.Errorf("warren.conf: clustered %v, nodes %v; want classic_config with warren@A, B, C", c.Clustered(), nodes)
	}

	p, err := lb.ParseFiles([]string{ex("haproxy.cfg")})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 0 {
		t.Errorf("haproxy.cfg warnings: %v", p.Warnings)
	}
	var servers []string
	for _, px := range p.Proxies {
		if px.Name == "rabbitmq_cluster" {
			for _, s := range px.Servers {
				servers = append(servers, s.Name)
			}
		}
	}
	if strings.Join(servers, ",") != strings.Join(nodes, ",") {
		t.Errorf("haproxy.cfg servers %v, cluster nodes %v", servers, nodes)
	}

	v, err := vrrp.Parse(ex("keepalived.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Warnings) != 0 {
		t.Errorf("keepalived.conf warnings: %v", v.Warnings)
	}
	s := v.Scripts["chk_haproxy"]
	if s == nil || s.Command != "/etc/warren/warren-proxy-check.sh" || s.Weight != -20 || s.Interval != 2*time.Second {
		t.Errorf("keepalived.conf: tracking script %+v", s)
	}
	if len(v.Instances) != 1 || len(v.Instances[0].VIPs) != 1 {
		t.Fatalf("keepalived.conf: want one instance with one VIP")
	}
	xml, err := os.ReadFile(filepath.Join(root, "examples", "guide", "client-connection.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if ip := v.Instances[0].VIPs[0].Addr.String(); !strings.Contains(string(xml), `host="`+ip+`"`) {
		t.Errorf("keepalived.conf's VIP %s is not the guide's client host (client-connection.xml)", ip)
	}
	script, err := os.ReadFile(ex("warren-proxy-check.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), p.Global.PidFile) {
		t.Errorf("warren-proxy-check.sh does not read haproxy.cfg's pidfile %s", p.Global.PidFile)
	}
}

// The tracking script says "up" for a live process named warren-proxy
// whose pid is in the pid file, "down" otherwise.
func TestCheckScript(t *testing.T) {
	root := testenv.RepoRoot(t)
	script := filepath.Join(root, "deploy", "examples", "warren-proxy-check.sh")
	dir := t.TempDir()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		testenv.Skip(t, "no sleep command")
	}
	// a process whose name is warren-proxy: a copy of sleep
	fake := filepath.Join(dir, "warren-proxy")
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, data, 0o755); err != nil {
		t.Fatal(err)
	}
	proxy := exec.Command(fake, "60")
	other := exec.Command(sleep, "60")
	for _, c := range []*exec.Cmd{proxy, other} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func(c *exec.Cmd) { c.Process.Kill(); c.Wait() }(c)
	}
	pidfile := filepath.Join(dir, "proxy.pid")
	run := func(content *string) int {
		os.Remove(pidfile)
		if content != nil {
			os.WriteFile(pidfile, []byte(*content), 0o644)
		}
		cmd := exec.Command("/bin/sh", script)
		cmd.Env = append(os.Environ(), "WARREN_PROXY_PIDFILE="+pidfile)
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return ee.ExitCode()
			}
			t.Fatal(err)
		}
		return 0
	}
	str := func(s string) *string { return &s }
	dead := exec.Command(sleep, "0")
	dead.Run()
	for _, c := range []struct {
		name    string
		content *string
		want    int
	}{
		{"live warren-proxy", str(fmt.Sprintln(proxy.Process.Pid)), 0},
		{"live process of another name", str(fmt.Sprintln(other.Process.Pid)), 1},
		{"dead pid", str(fmt.Sprintln(dead.Process.Pid)), 1},
		{"no pid file", nil, 1},
		{"empty pid file", str(""), 1},
		{"garbage", str("../1\n"), 1},
	} {
		if got := run(c.content); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
}

// The example warren.conf forms the guide's three-node cluster, and the
// guide's setup commands (test/halab runs the same list) made on A are
// seen on B and C. The three nodes share this host, so the test adds
// Warren's cluster_formation.classic_config.addresses.N (each node's
// inter-node port on 127.0.0.1) and gives each node its ports by flag;
// every other line is the example's.
func TestExampleWarrenConfFormsTheCluster(t *testing.T) {
	root := testenv.RepoRoot(t)
	bins := built(t, root)
	example, err := os.ReadFile(filepath.Join(root, "deploy", "examples", "warren.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	names := []string{"A", "B", "C"}
	var amqp, ctl, dist []int
	for range names {
		amqp, ctl, dist = append(amqp, freePort(t)), append(ctl, freePort(t)), append(dist, freePort(t))
	}
	conf := string(example) + "\n# test: three nodes on one host\n"
	for i := range names {
		conf += fmt.Sprintf("cluster_formation.classic_config.addresses.%d = 127.0.0.1:%d\n", i+1, dist[i])
	}
	confPath := filepath.Join(dir, "warren.conf")
	cookie := filepath.Join(dir, "cookie")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cookie, []byte("DEPLOYTESTCOOKIEABCD"), 0o400); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "WARREN_COOKIE_FILE="+cookie, "HOME="+dir)
	for i, n := range names {
		logf, err := os.Create(filepath.Join(dir, n+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(bins, "warren-server"), "--config", confPath, "--data-dir", filepath.Join(dir, n),
			"--nodename", "warren@"+n, "--port", fmt.Sprint(amqp[i]), "--management-port", "0", "--prometheus-port", "0",
			"--control-port", fmt.Sprint(ctl[i]), "--dist-port", fmt.Sprint(dist[i]))
		cmd.Env, cmd.Stdout, cmd.Stderr = env, logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		logf.Close()
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	logs := func() string {
		var b strings.Builder
		for _, n := range names {
			data, _ := os.ReadFile(filepath.Join(dir, n+".log"))
			fmt.Fprintf(&b, "--- %s\n%s\n", n, data)
		}
		return b.String()
	}
	warrenctl := func(i int, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(bins, "warrenctl"), append([]string{"-n", "warren@" + names[i], "--host", "127.0.0.1",
			"--port", fmt.Sprint(ctl[i]), "--timeout", "20s"}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// every node sees three running nodes (bounded: a node waits for a majority)
	deadline := time.Now().Add(90 * time.Second)
	for i := range names {
		for {
			out, err := warrenctl(i, "cluster_status", "--formatter", "json")
			var st struct {
				Running []string `json:"running_nodes"`
			}
			if err == nil && json.Unmarshal([]byte(out), &st) == nil {
				sort.Strings(st.Running)
				if strings.Join(st.Running, ",") == "warren@A,warren@B,warren@C" {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s does not see three running nodes: %v\n%s\n%s", names[i], err, out, logs())
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	for _, args := range halab.GuideCommands {
		if out, err := warrenctl(0, args...); err != nil {
			t.Fatalf("warrenctl %v on A: %v\n%s\n%s", args, err, out, logs())
		}
	}
	for i := 1; i < len(names); i++ {
		deadline := time.Now().Add(30 * time.Second)
		for {
			users, err1 := warrenctl(i, "list_users", "-q")
			perms, err2 := warrenctl(i, "list_permissions", "-p", "/edu", "-q")
			pols, err3 := warrenctl(i, "list_policies", "-p", "/edu", "-q")
			if err1 == nil && err2 == nil && err3 == nil && strings.Contains(users, "prim\t[administrator]") &&
				strings.Contains(perms, "prim\t.*\t.*\t.*") && strings.Contains(pols, `"ha-mode":"all"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s lacks the definitions made on A:\n%s\n%s\n%s\n%s", names[i], users, perms, pols, logs())
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
