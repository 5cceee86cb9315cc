package halab

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/netlab"
)

// Binaries are the lab's programs, built once per run.
type Binaries struct {
	Server, Ctl, Proxy, VRRP string
	Self                     string // the test binary: runs the workload (HALAB_WORKLOAD=1) inside a host
}

// BuildBinaries builds warren-server, warrenctl, warren-proxy and
// warren-vrrp into dir.
func BuildBinaries(root, dir string) (Binaries, error) {
	b := Binaries{
		Server: filepath.Join(dir, "warren-server"), Ctl: filepath.Join(dir, "warrenctl"),
		Proxy: filepath.Join(dir, "warren-proxy"), VRRP: filepath.Join(dir, "warren-vrrp"),
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/warren-server", "./cmd/warrenctl", "./cmd/warren-proxy", "./cmd/warren-vrrp")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return b, fmt.Errorf("go build: %v\n%s", err, out)
	}
	self, err := os.Executable()
	b.Self = self
	return b, err
}

// Options shape one lab.
type Options struct {
	Stack     string // "warren" (default) or "rabbitmq": RabbitMQ 3.10 + HAProxy + keepalived
	Brokers   int    // broker nodes running (1, or 3 for the round-robin case)
	CheckAMQP bool   // proxies check with check-amqp instead of the guide's plain TCP check
	// HAProxyChecks runs warren-proxy with --haproxy-checks: server health
	// from checks only, as HAProxy (no marking down from live traffic)
	HAProxyChecks bool
	// Cluster starts the Warren nodes clustered from warren.conf's
	// classic_config (HALAB_CLUSTER=1); off, its cluster_formation lines are
	// commented out and each node is standalone. RabbitMQ nodes are always
	// clustered (join_cluster).
	Cluster bool
}

// Lab is one running topology: hosts b1..b3, lb1, lb2, c1.
type Lab struct {
	t    testing.TB
	Net  *netlab.Lab
	Bin  Binaries
	Dir  string
	Opts Options
	root string

	mu      sync.Mutex
	procs   map[string]*exec.Cmd // "b1", "lb1/proxy", "lb1/vrrp"
	etcDirs []string             // /etc/netns/<ns> directories the lab wrote
}

// Brokers, LBs and the client host.
var (
	BrokerHosts = []string{"b1", "b2", "b3"}
	LBHosts     = []string{"lb1", "lb2"}
)

const ClientHost = "c1"

// New builds the hosts, writes the configurations and starts every daemon.
func New(t testing.TB, bin Binaries, root string, o Options) *Lab {
	t.Helper()
	l := &Lab{t: t, Net: netlab.New(t, netlab.Options{}), Bin: bin, Dir: t.TempDir(), Opts: o, root: root, procs: map[string]*exec.Cmd{}}
	t.Cleanup(l.Teardown) // runs before netlab's own teardown (cleanups are LIFO)
	t.Cleanup(onSignal(l.Teardown))
	for i, h := range BrokerHosts {
		l.Net.AddHost(h, BrokerAddr(i)+"/24")
	}
	for i, h := range LBHosts {
		l.Net.AddHost(h, LBAddr(i)+"/24")
	}
	l.Net.AddHost(ClientHost, ClientAddr+"/24")
	l.writeHostsFiles()

	hcfg, err := ExampleFile(root, "haproxy.cfg")
	must(t, err)
	kcfg, err := ExampleFile(root, "keepalived.conf")
	must(t, err)
	scfg, err := ExampleFile(root, "warren-proxy-check.sh")
	must(t, err)
	var servers []string
	for i := 0; i < o.Brokers; i++ {
		servers = append(servers, BrokerAddr(i))
	}
	for i, h := range LBHosts {
		d := filepath.Join(l.Dir, h)
		os.MkdirAll(d, 0o755)
		pid := filepath.Join(d, "proxy.pid")
		pc, err := ProxyConfig(hcfg, ProxyOptions{Servers: servers, PidFile: pid, StatsSocket: filepath.Join(d, "admin.sock"), CheckAMQP: o.CheckAMQP})
		must(t, err)
		script := filepath.Join(d, "warren-proxy-check.sh")
		vc, err := VRRPConfig(kcfg, VRRPOptions{RouterID: h, Master: i == 0, Interface: "eth0", Script: script})
		must(t, err)
		sc, err := CheckScript(scfg, pid)
		must(t, err)
		must(t, os.WriteFile(filepath.Join(d, "haproxy.cfg"), []byte(pc), 0o644))
		must(t, os.WriteFile(filepath.Join(d, "keepalived.conf"), []byte(vc), 0o644))
		must(t, os.WriteFile(script, []byte(sc), 0o755))
	}
	for i := 0; i < o.Brokers; i++ {
		l.StartBroker(BrokerHosts[i])
	}
	for i := 0; i < o.Brokers; i++ {
		l.WaitPort(BrokerHosts[i], BrokerAddr(i)+":5672", 120*time.Second)
	}
	if o.Stack == "rabbitmq" {
		l.rabbitCluster()
	} else {
		l.warrenSetup()
	}
	for _, h := range LBHosts {
		l.StartProxy(h)
		l.WaitPort(h, LBAddr(indexOf(LBHosts, h))+":5672", 10*time.Second)
	}
	for _, h := range LBHosts {
		l.StartVRRP(h)
	}
	l.WaitVIP("lb1", 15*time.Second)
	return l
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func (l *Lab) start(key, host string, env []string, argv ...string) {
	l.t.Helper()
	logf, err := os.OpenFile(filepath.Join(l.Dir, strings.ReplaceAll(key, "/", "-")+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(l.t, err)
	cmd := l.Net.Command(host, argv...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(l.t, cmd.Start())
	logf.Close()
	l.mu.Lock()
	l.procs[key] = cmd
	l.mu.Unlock()
}

// Kill SIGKILLs one process the lab started (e.g. "lb1/proxy", "b1") and reaps it.
func (l *Lab) Kill(key string) {
	l.mu.Lock()
	cmd := l.procs[key]
	delete(l.procs, key)
	l.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		cmd.Wait()
	}
}

func (l *Lab) stopAll() {
	l.mu.Lock()
	keys := []string{}
	for k := range l.procs {
		keys = append(keys, k)
	}
	l.mu.Unlock()
	for _, k := range keys {
		l.Kill(k)
	}
}

// Teardown ends the processes the lab started, then every process left
// in its namespaces, deletes the namespaces and the lab's /etc/netns
// files. It runs at the test's cleanup and on SIGINT/SIGTERM; calling it
// again does nothing.
func (l *Lab) Teardown() {
	l.stopAll()
	l.Net.Close()
	l.mu.Lock()
	dirs := l.etcDirs
	l.etcDirs = nil
	l.mu.Unlock()
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}

func (l *Lab) brokerEnv(host string) []string {
	d := filepath.Join(l.Dir, host)
	if l.Opts.Stack == "rabbitmq" {
		// one Erlang cookie for the cluster, under a HOME of the lab's own
		return []string{"HOME=" + filepath.Join(l.Dir, "erlang-home"), "RABBITMQ_NODENAME=rabbit@" + host,
			"RABBITMQ_MNESIA_BASE=" + filepath.Join(d, "mnesia"), "RABBITMQ_LOG_BASE=" + filepath.Join(d, "log"),
			"RABBITMQ_CONFIG_FILE=" + filepath.Join(d, "rabbitmq.conf"), "RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(d, "enabled_plugins"),
			"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(d, "rabbitmq-env.conf"), "RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(d, "advanced.config"),
			"RABBITMQ_PID_FILE=" + filepath.Join(d, "rabbit.pid"), "RABBITMQ_USE_LONGNAME=false"}
	}
	return []string{"WARREN_COOKIE_FILE=" + filepath.Join(d, "cookie"), "HOME=" + d,
		"WARREN_NODENAME=warren@" + NodeNames[indexOf(BrokerHosts, host)]}
}

// warrenSetup runs the guide's user, vhost, permission and policy
// commands (docs/ha-guide.md) with warrenctl: on A alone when the nodes
// are clustered (definitions are replicated), on every node otherwise.
func (l *Lab) warrenSetup() {
	hosts := BrokerHosts[:l.Opts.Brokers]
	if l.Opts.Cluster {
		hosts = hosts[:1]
	}
	for _, h := range hosts {
		for _, args := range GuideCommands {
			if out, err := l.Ctl(h, args...); err != nil {
				l.t.Fatalf("warrenctl %v on %s: %v\n%s", args, h, err, out)
			}
		}
	}
}

// GuideCommands are the guide's setup commands as docs/ha-guide.md gives
// them (the client settings' vhost /edu, user prim), run by the lab.
var GuideCommands = [][]string{
	{"add_vhost", "/edu"},
	{"add_user", "prim", "123456"},
	{"set_user_tags", "prim", "administrator"},
	{"set_permissions", "-p", "/edu", "prim", ".*", ".*", ".*"},
	{"set_policy", "-p", "/edu", "ha-all", ".*", `{"ha-mode":"all","ha-sync-mode":"automatic"}`},
}

// rabbitBin is where Debian keeps RabbitMQ's own scripts: the ones under
// /usr/sbin switch to the rabbitmq user and drop the environment.
const rabbitBin = "/usr/lib/rabbitmq/bin/"

// writeHostsFiles makes every lab host's name resolvable inside the lab
// (node names rabbit@b1..., warren@A...): ip netns exec bind-mounts
// /etc/netns/<ns>/hosts over /etc/hosts. Removed at teardown. For Warren
// each broker host's file is the guide's: its own name on the loopback
// line too (warrenctl reaches the node's control port, on 127.0.0.1, by
// the node name's host).
func (l *Lab) writeHostsFiles() {
	for _, h := range l.Net.Hosts() {
		var hosts strings.Builder
		if i := indexOf(BrokerHosts, h); i >= 0 && l.Opts.Stack != "rabbitmq" {
			fmt.Fprintf(&hosts, "127.0.0.1 %s localhost\n", NodeNames[i])
		} else {
			hosts.WriteString("127.0.0.1 localhost\n")
		}
		for i, b := range BrokerHosts {
			fmt.Fprintf(&hosts, "%s %s %s\n", BrokerAddr(i), NodeNames[i], b)
		}
		for i, lb := range LBHosts {
			fmt.Fprintf(&hosts, "%s %s\n", LBAddr(i), lb)
		}
		fmt.Fprintf(&hosts, "%s %s\n", ClientAddr, ClientHost)
		d := filepath.Join("/etc/netns", l.Net.NS(h))
		l.mu.Lock()
		l.etcDirs = append(l.etcDirs, d)
		l.mu.Unlock()
		must(l.t, os.MkdirAll(d, 0o755))
		must(l.t, os.WriteFile(filepath.Join(d, "hosts"), []byte(hosts.String()), 0o644))
	}
	if l.Opts.Stack != "rabbitmq" {
		// the guide's step: one cookie, copied to every node (0400, as
		// the node creates it)
		cookie := []byte("HALABCOOKIE" + l.Net.ID)
		for _, b := range BrokerHosts {
			d := filepath.Join(l.Dir, b)
			must(l.t, os.MkdirAll(d, 0o755))
			must(l.t, os.WriteFile(filepath.Join(d, "cookie"), cookie, 0o400))
		}
		return
	}
	home := filepath.Join(l.Dir, "erlang-home")
	must(l.t, os.MkdirAll(home, 0o700))
	must(l.t, os.WriteFile(filepath.Join(home, ".erlang.cookie"), []byte("HALAB"+l.Net.ID+"COOKIE"), 0o400))
}

// rabbitCluster joins b2, b3 to b1 and sets the guide's mirroring policy.
func (l *Lab) rabbitCluster() {
	for i := 1; i < l.Opts.Brokers; i++ {
		h := BrokerHosts[i]
		for _, args := range [][]string{{"stop_app"}, {"join_cluster", "rabbit@b1"}, {"start_app"}} {
			if out, err := l.Ctl(h, args...); err != nil {
				l.t.Fatalf("rabbitmqctl %v on %s: %v\n%s", args, h, err, out)
			}
		}
	}
	if out, err := l.Ctl("b1", "set_policy", "-p", "/edu", "ha-all", ".*", `{"ha-mode":"all","ha-sync-mode":"automatic"}`); err != nil {
		l.t.Fatalf("rabbitmqctl set_policy: %v\n%s", err, out)
	}
}

// StartBroker starts (or restarts, with the same data) warren-server on
// host with the example warren.conf (deploy/examples) as rewritten by
// WarrenConfig; node name warren@A, B or C. The guide's client settings
// (client-connection.xml: user prim, vhost /edu) are made by warrenSetup
// with the guide's commands. RabbitMQ nodes get them as their defaults.
func (l *Lab) StartBroker(host string) {
	d := filepath.Join(l.Dir, host)
	os.MkdirAll(d, 0o755)
	if l.Opts.Stack == "rabbitmq" {
		for name, text := range map[string]string{
			"rabbitmq.conf":     "default_user = prim\ndefault_pass = 123456\ndefault_vhost = /edu\nloopback_users = none\nlisteners.tcp.default = 5672\n",
			"enabled_plugins":   "[].\n",
			"rabbitmq-env.conf": "",
			"advanced.config":   "[].\n",
		} {
			must(l.t, os.WriteFile(filepath.Join(d, name), []byte(text), 0o644))
		}
		l.start(host, host, l.brokerEnv(host), rabbitBin+"rabbitmq-server")
		return
	}
	example, err := ExampleFile(l.root, "warren.conf")
	must(l.t, err)
	text, err := WarrenConfig(example, l.Opts.Cluster)
	must(l.t, err)
	conf := filepath.Join(d, "warren.conf")
	must(l.t, os.WriteFile(conf, []byte(text), 0o644))
	l.start(host, host, l.brokerEnv(host), l.Bin.Server, "--config", conf, "--data-dir", filepath.Join(d, "data"),
		"--port", "5672", "--management-port", "0", "--prometheus-port", "0", "--control-port", "25673")
}

// KillBroker SIGKILLs every process of the broker host (warren-server; or
// RabbitMQ's beam, epmd and helpers).
func (l *Lab) KillBroker(host string) {
	l.Net.KillHost(host)
	l.Kill(host)
}

// Ctl runs warrenctl against the broker on host.
func (l *Lab) Ctl(host string, args ...string) (string, error) {
	ctl := l.Bin.Ctl
	if l.Opts.Stack == "rabbitmq" {
		ctl = rabbitBin + "rabbitmqctl"
		args = append([]string{"-n", "rabbit@" + host}, args...)
	}
	cmd := l.Net.Command(host, append([]string{ctl}, args...)...)
	cmd.Env = append(os.Environ(), l.brokerEnv(host)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// StartProxy starts warren-proxy on an LB host with its generated haproxy.cfg.
func (l *Lab) StartProxy(host string) {
	if l.Opts.Stack == "rabbitmq" {
		// HAProxy in the foreground writes no pid file: the lab writes it
		// (ip netns exec execs, so the child's pid is HAProxy's)
		l.start(host+"/proxy", host, nil, "haproxy", "-db", "-f", filepath.Join(l.Dir, host, "haproxy.cfg"))
		l.mu.Lock()
		pid := l.procs[host+"/proxy"].Process.Pid
		l.mu.Unlock()
		must(l.t, os.WriteFile(filepath.Join(l.Dir, host, "proxy.pid"), []byte(fmt.Sprintln(pid)), 0o644))
		return
	}
	args := []string{l.Bin.Proxy, "-db", "-f", filepath.Join(l.Dir, host, "haproxy.cfg")}
	if l.Opts.HAProxyChecks {
		args = append(args, "--haproxy-checks")
	}
	l.start(host+"/proxy", host, nil, args...)
}

// StartVRRP starts warren-vrrp on an LB host with its generated keepalived.conf.
func (l *Lab) StartVRRP(host string) {
	if l.Opts.Stack == "rabbitmq" {
		d := filepath.Join(l.Dir, host)
		l.start(host+"/vrrp", host, nil, "keepalived", "-n", "-l", "-P", "-f", filepath.Join(d, "keepalived.conf"),
			"-p", filepath.Join(d, "keepalived.pid"), "-r", filepath.Join(d, "vrrp.pid"))
		return
	}
	l.start(host+"/vrrp", host, nil, l.Bin.VRRP, "-f", filepath.Join(l.Dir, host, "keepalived.conf"),
		"--dump-file", filepath.Join(l.Dir, host, "vrrp.data"))
}

// WaitPort waits until addr accepts TCP connections from inside host.
func (l *Lab) WaitPort(host, addr string, limit time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		cmd := l.Net.Command(host, l.Bin.Self)
		cmd.Env = append(os.Environ(), "HALAB_DIAL="+addr)
		if cmd.Run() == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.t.Fatalf("%s: nothing listens on %s after %v; logs in %s:\n%s", host, addr, limit, l.Dir, l.Logs())
}

// VIPHolders lists the live LB hosts whose eth0 has the VIP.
func (l *Lab) VIPHolders() []string {
	var hs []string
	for _, h := range LBHosts {
		out, _ := exec.Command("ip", "-n", l.Net.NS(h), "-4", "addr", "show", "dev", "eth0").Output()
		// a dead host (link down) may keep the VIP configured, as with
		// keepalived; it answers nothing, so it does not count
		if strings.Contains(string(out), VIP+"/") && !strings.Contains(string(out), "state DOWN") {
			hs = append(hs, h)
		}
	}
	return hs
}

// WaitVIP waits until host alone holds the VIP; it returns how long it took.
func (l *Lab) WaitVIP(host string, limit time.Duration) time.Duration {
	l.t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if hs := l.VIPHolders(); len(hs) == 1 && hs[0] == host {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatalf("%s does not hold the VIP alone after %v (holders %v); logs:\n%s", host, limit, l.VIPHolders(), l.Logs())
	return 0
}

// HostDown is a dead LB host: its proxy and VRRP daemon SIGKILLed
// together, then its link down (a dead host answers nothing).
func (l *Lab) HostDown(host string) {
	l.Net.KillHost(host) // every process in it: keepalived's VRRP child outlives its parent
	l.Kill(host + "/proxy")
	l.Kill(host + "/vrrp")
	l.Net.IP(host, "link", "set", "eth0", "down")
}

// HostUp boots a dead LB host again: addresses as after a reboot (the VIP
// gone), link up, proxy then VRRP daemon.
func (l *Lab) HostUp(host string) {
	exec.Command("ip", "-n", l.Net.NS(host), "addr", "del", VIP+"/24", "dev", "eth0").Run()
	l.Net.IP(host, "link", "set", "eth0", "up")
	l.StartProxy(host)
	l.StartVRRP(host)
}

// ServerStatus is the proxy's view of broker server srv ("A") from the
// monitor page (HAProxy's CSV stats), e.g. "UP", "DOWN".
func (l *Lab) ServerStatus(lb, srv string) string {
	cmd := l.Net.Command(lb, l.Bin.Self)
	cmd.Env = append(os.Environ(), "HALAB_HTTPGET=http://"+LBAddr(indexOf(LBHosts, lb))+":8100/monitor;csv")
	out, err := cmd.Output()
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ",")
		if len(f) > 17 && f[0] == "rabbitmq_cluster" && f[1] == srv {
			return f[17]
		}
	}
	return "?"
}

// Workload is the client process running inside the client host.
type Workload struct {
	cmd *exec.Cmd
	out strings.Builder
	log string
}

// StartWorkload starts the client workload against the VIP.
func (l *Lab) StartWorkload(queue string) *Workload {
	w := &Workload{log: filepath.Join(l.Dir, "workload.log")}
	cmd := l.Net.Command(ClientHost, l.Bin.Self)
	cmd.Env = append(os.Environ(), "HALAB_WORKLOAD=1", "HALAB_QUEUE="+queue,
		"HALAB_URL=amqp://prim:123456@"+VIP+":5672/%2Fedu", "HALAB_DURATION=10m")
	logf, err := os.Create(w.log)
	must(l.t, err)
	cmd.Stdout, cmd.Stderr = &w.out, logf
	must(l.t, cmd.Start())
	w.cmd = cmd
	l.mu.Lock()
	l.procs["c1/workload"] = cmd
	l.mu.Unlock()
	return w
}

// Stop ends the workload (it drains, bounded) and returns its report.
func (l *Lab) StopWorkload(w *Workload) (Report, error) {
	w.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		w.cmd.Process.Kill()
		<-done
		err = fmt.Errorf("the workload did not finish 60 s after SIGTERM")
	}
	l.mu.Lock()
	delete(l.procs, "c1/workload")
	l.mu.Unlock()
	var rep Report
	if err == nil {
		err = json.Unmarshal([]byte(w.out.String()), &rep)
	}
	if err != nil {
		b, _ := os.ReadFile(w.log)
		return rep, fmt.Errorf("workload: %v\n%s", err, b)
	}
	return rep, nil
}

// Logs returns every daemon's log (for failure messages).
func (l *Lab) Logs() string {
	var b strings.Builder
	fs, _ := filepath.Glob(filepath.Join(l.Dir, "*.log"))
	for _, f := range fs {
		data, _ := os.ReadFile(f)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(f), data)
	}
	return b.String()
}

// Labs to tear down on SIGINT/SIGTERM: a test binary killed by a signal
// runs no t.Cleanup.
var (
	sigMu      sync.Mutex
	sigCleanup = map[int]func(){}
	sigNext    int
)

// onSignal registers f to run on SIGINT/SIGTERM and returns its removal.
func onSignal(f func()) func() {
	sigMu.Lock()
	defer sigMu.Unlock()
	sigNext++
	id := sigNext
	sigCleanup[id] = f
	return func() { sigMu.Lock(); delete(sigCleanup, id); sigMu.Unlock() }
}

// HandleSignals makes SIGINT/SIGTERM tear down every running lab and exit 2.
func HandleSignals() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "halab: %v: tearing the labs down\n", s)
		sigMu.Lock()
		fs := []func(){}
		for _, f := range sigCleanup {
			fs = append(fs, f)
		}
		sigMu.Unlock()
		for _, f := range fs {
			f()
		}
		os.Exit(2)
	}()
}

// Partition cuts broker host off from the other broker hosts (both
// directions, blackhole routes for their addresses) while the proxies
// still reach it; on=false heals it.
func (l *Lab) Partition(host string, on bool) {
	op := "add"
	if !on {
		op = "del"
	}
	i := indexOf(BrokerHosts, host)
	for j := 0; j < l.Opts.Brokers; j++ {
		if j == i {
			continue
		}
		l.Net.IP(host, "route", op, "blackhole", BrokerAddr(j)+"/32")
		l.Net.IP(BrokerHosts[j], "route", op, "blackhole", BrokerAddr(i)+"/32")
	}
}

// SignalHost sends sig to every process inside host (SIGSTOP/SIGCONT
// freeze and thaw a broker: warren-server, or RabbitMQ's beam and epmd).
func (l *Lab) SignalHost(host string, sig syscall.Signal) {
	out, _ := exec.Command("ip", "netns", "pids", l.Net.NS(host)).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			syscall.Kill(pid, sig)
		}
	}
}

// ProxyCommand sends one runtime command to lb's proxy on its stats
// socket (warren-proxy and HAProxy alike) and returns the answer.
func (l *Lab) ProxyCommand(lb, command string) (string, error) {
	c, err := net.DialTimeout("unix", filepath.Join(l.Dir, lb, "admin.sock"), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(command + "\n")); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// StopBroker stops the broker on host in order, as an operator does
// (warren-server: SIGTERM; RabbitMQ: rabbitmqctl stop), bounded, then
// reaps it.
func (l *Lab) StopBroker(host string) {
	l.mu.Lock()
	cmd := l.procs[host]
	l.mu.Unlock()
	if cmd == nil {
		return
	}
	if l.Opts.Stack == "rabbitmq" {
		l.Ctl(host, "stop")
	} else {
		cmd.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		l.t.Logf("%s: the broker did not stop within 60 s; killing it", host)
		l.Net.KillHost(host)
		cmd.Process.Kill()
		<-done
	}
	l.mu.Lock()
	delete(l.procs, host)
	l.mu.Unlock()
}

// RollingRestart restarts the brokers one after the other as an operator
// upgrading does (docs/ha-guide.md): drain the node on both proxies,
// stop it, start it, wait for its AMQP port, set it ready, wait a little.
func (l *Lab) RollingRestart() string {
	var notes []string
	for i := 0; i < l.Opts.Brokers; i++ {
		h, srv := BrokerHosts[i], string(rune('A'+i))
		for _, lb := range LBHosts {
			if out, err := l.ProxyCommand(lb, "set server rabbitmq_cluster/"+srv+" state drain"); err != nil || strings.TrimSpace(out) != "" {
				notes = append(notes, fmt.Sprintf("drain %s on %s: %v %s", srv, lb, err, strings.TrimSpace(out)))
			}
		}
		time.Sleep(time.Second)
		start := time.Now()
		l.StopBroker(h)
		l.StartBroker(h)
		l.WaitPort(h, BrokerAddr(i)+":5672", 120*time.Second)
		notes = append(notes, fmt.Sprintf("%s back in %.1fs", srv, time.Since(start).Seconds()))
		for _, lb := range LBHosts {
			if out, err := l.ProxyCommand(lb, "set server rabbitmq_cluster/"+srv+" state ready"); err != nil || strings.TrimSpace(out) != "" {
				notes = append(notes, fmt.Sprintf("ready %s on %s: %v %s", srv, lb, err, strings.TrimSpace(out)))
			}
		}
		time.Sleep(3 * time.Second)
	}
	return strings.Join(notes, "; ")
}
