// Command suite runs Warren and RabbitMQ 3.10 side by side on this machine
// (A B A B ... rounds, medians) over the benchmark scenarios and prints
// tables with the Warren/RabbitMQ ratio per scenario; everything printed
// also goes to bench/results/<date>.json, with the machine and the
// settings. Run it with `make bench` (bench/run.sh); the options are
// described in bench/README.md.
//
// Every scenario that moves messages numbers them and checks, per queue,
// that every confirmed (or, without confirms, sent) message arrived once;
// a run that lost or duplicated a message fails loudly, its row prints
// FAILED instead of a ratio and the suite exits with status 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/perf"
)

type broker struct {
	name string // column: "Warren", "RabbitMQ", "RabbitMQ tuned"
	kind string // "Warren" or "RabbitMQ"
	url  string
	pid  func() int
	stop func()
	// start starts the broker again (after stop) on the same data; it
	// returns once the AMQP port accepts connections.
	start func() error
	// info: version, flags, configuration, for the results file
	info map[string]string
	dir  string // its files under the suite's temporary directory
	// RabbitMQ only: its node name, and rabbitmqctl -n node args...
	node string
	ctl  func(args ...string) (string, error)
}

// mode is how a throughput scenario is driven: which publisher and
// whether broker and load generator are pinned to separate cores.
type mode struct {
	name   string
	raw    bool
	pinned bool
	label  string
}

var allModes = []mode{
	{"plain", false, false, "client amqp091-go (one socket write per publish), broker and client share all cores"},
	{"pinned", false, true, "client amqp091-go; broker pinned to CPU 0, load generator to CPU 1 (taskset)"},
	{"raw", true, false, "raw-frame publisher (warren-perf --raw, 64 publishes per write), consumers amqp091-go; all cores shared"},
	{"raw-pinned", true, true, "raw-frame publisher; broker pinned to CPU 0, load generator to CPU 1 (taskset)"},
}

// value is one figure a scenario produces; key names its row.
type value struct {
	key    string
	name   string
	metric string
	higher bool   // higher is better
	base   string // for a RabbitMQ-only variant row: the row whose Warren figure it is compared with
	v      float64
}

type scenario struct {
	id    int
	name  string
	modes bool // runs in each -modes mode; otherwise plain only
	only  string
	run   func(b *broker, m mode) ([]value, error)
	// cluster: a cluster scenario (21-23), run on each broker's 3-node
	// cluster instead of its single node
	cluster func(c *cluster, m mode) ([]value, error)
	fresh   bool // the cluster scenario forms its cluster itself (23)
}

var (
	rounds   = flag.Int("rounds", 3, "rounds (A B per round)")
	duration = flag.Duration("duration", 8*time.Second, "duration of each throughput run")
	quick    = flag.Bool("quick", false, "1 round, 3s runs, smaller scales")
	only     = flag.String("only", "", "comma-separated scenario numbers")
	warren   = flag.String("warren-bin", "", "warren-server binary (built if empty)")
	skipRMQ  = flag.Bool("skip-rabbit", false, "run Warren only")
	outDir   = flag.String("out", "bench/results", "directory for the JSON results")
	logLevel = flag.String("log-level", "warning", "log level of both brokers (Warren --log-level, RabbitMQ log.console.level and log.file.level): debug, info, warning or error")
	modesArg = flag.String("modes", "plain,pinned,raw", "modes for the throughput scenarios: plain, pinned, raw, raw-pinned")
	rmqConfs = flag.String("rabbit-configs", "default,tuned", "RabbitMQ configurations: default (as installed) and tuned (its documented throughput settings)")

	backlogN      = flag.Int("backlog", 5_000_000, "messages in the backlog scenarios (12-14)")
	restartN      = flag.Int("restart-messages", 1_000_000, "messages in the restart scenario (15)")
	restartQueues = flag.Int("restart-queues", 1000, "queues in the restart scenario (15)")
	manyConns     = flag.Int("many-connections", 1000, "connections in scenario 18 (each 1 channel, 1 queue)")
	manyRate      = flag.Int("many-rate", 10, "msg/s each connection publishes in scenario 18")

	clusterOn       = flag.Bool("cluster", true, "run the cluster scenarios (21-23: a 3-node cluster per broker); -cluster=false leaves them out")
	clusterDeclareN = flag.Int("cluster-declares", 10_000, "queues and bindings declared in scenario 22")
	clusterRestartN = flag.Int("cluster-restart-messages", 1_000_000, "messages in the full-cluster restart of scenario 23")
	clusterRestartQ = flag.Int("cluster-restart-queues", 1000, "durable queues in the full-cluster restart of scenario 23")
)

// rabbitTuned are the settings RabbitMQ's documentation recommends for
// throughput: scheduler busy-waiting off (runtime guide, for shared or
// virtualised hosts; RabbitMQ 3.10's own defaults already pass these
// flags, as the Erlang command line in the results file shows, so they
// are repeated here only to be explicit), statistics emitted less often
// (management guide, collect_statistics_interval), TCP buffers of 192 KiB
// (networking guide, "tuning for throughput"), and the open-files limit
// raised (networking and production-checklist guides; the bench raises it
// for every broker it starts).
const (
	rabbitTunedErlArgs = "+sbwt none +sbwtdcpu none +sbwtdio none"
	rabbitTunedConf    = "collect_statistics_interval = 60000\ntcp_listen_options.sndbuf = 196608\ntcp_listen_options.recbuf = 196608\n"
)

func main() {
	perf.MaybeServeNullSink()
	flag.Parse()
	if *quick {
		*rounds, *duration = 1, 3*time.Second
		*backlogN, *restartN = min(*backlogN, 200_000), min(*restartN, 100_000)
		*clusterDeclareN, *clusterRestartN, *clusterRestartQ = min(*clusterDeclareN, 1000), min(*clusterRestartN, 20_000), min(*clusterRestartQ, 100)
	}
	modes, err := parseModes(*modesArg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	raiseNoFile()
	tmp, _ := os.MkdirTemp("", "warren-bench-")
	defer os.RemoveAll(tmp)
	var brokers []*broker
	var clusters []*cluster
	stopAll := func() {
		for _, b := range brokers {
			b.stop()
		}
		for _, c := range clusters {
			c.stop()
		}
	}
	// stop the brokers this run started if interrupted
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "bench: interrupted; stopping the brokers it started")
		stopAll()
		os.RemoveAll(tmp)
		os.Exit(130)
	}()
	single, clustered := false, false
	for _, s := range scenarios() {
		if selected(s) {
			single, clustered = single || s.cluster == nil, clustered || s.cluster != nil
		}
	}
	var rabbitConfs []string
	for _, conf := range strings.Split(*rmqConfs, ",") {
		conf = strings.TrimSpace(conf)
		if conf != "default" && conf != "tuned" {
			fmt.Fprintf(os.Stderr, "bench: -rabbit-configs: %q is neither default nor tuned\n", conf)
			os.Exit(2)
		}
		if !*skipRMQ {
			rabbitConfs = append(rabbitConfs, conf)
		}
	}
	if single {
		w, err := startWarren(tmp)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: Warren side skipped:", err)
		} else {
			brokers = append(brokers, w)
		}
		for _, conf := range rabbitConfs {
			r, err := startRabbit(tmp, conf == "tuned")
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: RabbitMQ (%s) side skipped: %v\n", conf, err)
				continue
			}
			brokers = append(brokers, r)
		}
	}
	if clustered {
		// formed when a cluster scenario first needs them
		w, err := newWarrenCluster(tmp)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: Warren cluster skipped:", err)
		} else {
			clusters = append(clusters, w)
		}
		for _, conf := range rabbitConfs {
			r, err := newRabbitCluster(tmp, conf == "tuned")
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: RabbitMQ (%s) cluster skipped: %v\n", conf, err)
				continue
			}
			clusters = append(clusters, r)
		}
	}
	defer stopAll()
	// the tables' columns: one per broker, its single node and its
	// cluster alike
	columns := append([]*broker(nil), brokers...)
	for _, c := range clusters {
		has := false
		for _, b := range brokers {
			has = has || b.name == c.name
		}
		if !has {
			columns = append(columns, &broker{name: c.name, kind: c.kind, info: c.info})
		}
	}
	if len(columns) == 0 {
		fmt.Fprintln(os.Stderr, "bench: no broker to measure")
		os.Exit(1)
	}
	if runtime.NumCPU() < 2 {
		var kept []mode
		for _, m := range modes {
			if !m.pinned {
				kept = append(kept, m)
			}
		}
		if len(kept) < len(modes) {
			fmt.Fprintln(os.Stderr, "bench: one CPU: the pinned modes are skipped")
		}
		modes = kept
	}
	machine := machineInfo(columns)
	res := newResults(columns)
	res.clusters = clusters
	res.clientCeiling(modes)
	for round := 1; round <= *rounds; round++ {
		for _, s := range scenarios() {
			if !selected(s) {
				continue
			}
			ms := []mode{allModes[0]}
			if s.modes {
				ms = modes
			}
			for _, m := range ms {
				for _, t := range targets(s, m, brokers, clusters) {
					fmt.Fprintf(os.Stderr, "round %d/%d scenario %d (%s) [%s] on %s ...\n", round, *rounds, s.id, s.name, m.name, t.name)
					vs, err := t.run(m)
					if err != nil {
						fmt.Fprintf(os.Stderr, "  error: %v\n", err)
						res.fail(t.name, s, m.name, err)
						continue
					}
					for _, v := range vs {
						fmt.Fprintf(os.Stderr, "  %s: %.2f %s\n", v.name, v.v, v.metric)
						res.add(t.name, s.id, m, v)
					}
				}
			}
		}
	}
	if machine["erlang_system_version"] == "" {
		for _, c := range clusters {
			if v := c.info["erlang_system_version"]; v != "" {
				machine["erlang_system_version"] = v
			}
		}
	}
	res.print(machine, modes)
	res.save(machine, modes)
	if res.failed() {
		fmt.Fprintln(os.Stderr, "bench: FAILED: some runs lost or duplicated messages or hit errors (see FAILED above); their rows have no ratio")
		stopAll()
		os.RemoveAll(tmp)
		os.Exit(1)
	}
}

// target is one broker a scenario runs on: its single node or, for a
// cluster scenario, its cluster (formed first if need be), pinned in the
// pinned modes.
type target struct {
	name string
	run  func(m mode) ([]value, error)
}

func targets(s scenario, m mode, brokers []*broker, clusters []*cluster) []target {
	pinned := func(pids func() []int, f func() ([]value, error)) ([]value, error) {
		if m.pinned {
			unpin, err := pin(pids)
			if err != nil {
				return nil, err
			}
			defer unpin()
		}
		return f()
	}
	var out []target
	if s.cluster == nil {
		for _, b := range brokers {
			out = append(out, target{b.name, func(m mode) ([]value, error) {
				return pinned(func() []int { return []int{b.pid()} }, func() ([]value, error) { return s.run(b, m) })
			}})
		}
		return out
	}
	for _, c := range clusters {
		out = append(out, target{c.name, func(m mode) ([]value, error) {
			// only the cluster measured runs: nine nodes would share the
			// cores otherwise
			for _, o := range clusters {
				if o != c {
					o.stop()
				}
			}
			if !s.fresh {
				if err := c.ensure(); err != nil {
					return nil, err
				}
			}
			return pinned(c.pids, func() ([]value, error) { return s.cluster(c, m) })
		}})
	}
	return out
}

func parseModes(s string) ([]mode, error) {
	var out []mode
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		found := false
		for _, m := range allModes {
			if m.name == n {
				out, found = append(out, m), true
			}
		}
		if !found {
			return nil, fmt.Errorf("-modes: unknown mode %q (plain, pinned, raw, raw-pinned)", n)
		}
	}
	if len(out) == 0 || out[0].name != "plain" {
		return nil, errors.New("-modes: the list must start with plain (the other modes are reported beside it)")
	}
	return out, nil
}

func selected(s scenario) bool {
	if s.cluster != nil && !*clusterOn {
		return false
	}
	if *only == "" {
		return true
	}
	for _, f := range strings.Split(*only, ",") {
		f = strings.TrimSpace(f)
		if f == strconv.Itoa(s.id) || (s.only != "" && strings.Contains(","+s.only+",", ","+f+",")) {
			return true
		}
	}
	return false
}

func raiseNoFile() {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil && r.Cur < r.Max {
		r.Cur = r.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}

func freePort() int {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freePortExcept is a free port that is none of the shared reference
// RabbitMQ's (5672 AMQP, 15672 management, 25672 distribution, 4369
// epmd, 15692 Prometheus).
func freePortExcept() int {
	for {
		p := freePort()
		switch p {
		case 5672, 15672, 25672, 4369, 15692:
			continue
		}
		return p
	}
}

func waitPort(port int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("port %d not open after %v", port, d)
}

// rabbitCredential returns the rabbitmq user's ids when the Debian layout
// is there (nil: fall back to the rabbitmq-server wrapper).
func rabbitCredential() *syscall.Credential {
	u, err := user.Lookup("rabbitmq")
	if err != nil {
		return nil
	}
	if _, err := os.Stat("/usr/lib/rabbitmq/bin/rabbitmq-server"); err != nil {
		return nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// pin puts every thread of the broker (every node of a cluster) on CPU 0
// and every thread of this process (the load generator) on CPU 1; the
// returned func undoes it. Both brokers are pinned the same way, while
// running: Warren keeps its GOMAXPROCS and RabbitMQ its schedulers as
// started (see the results file), both on one core.
func pin(pids func() []int) (func(), error) {
	all := fmt.Sprintf("0-%d", runtime.NumCPU()-1)
	set := func(cpus string, pid int) error {
		out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("taskset -a -p -c %s %d: %v: %s (install util-linux, or leave pinned out of -modes)", cpus, pid, err, out)
		}
		return nil
	}
	undo := func() {
		set(all, os.Getpid())
		for _, p := range pids() {
			set(all, p)
		}
	}
	for _, p := range pids() {
		if err := set("0", p); err != nil {
			undo()
			return nil, err
		}
	}
	if err := set("1", os.Getpid()); err != nil {
		undo()
		return nil, err
	}
	return undo, nil
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n * 1024
		}
	}
	return 0
}

// cpuSeconds returns a process's user+system CPU time.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// fields after the command name (which may hold spaces) in parentheses
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// perfRun runs a perf load test against b in mode m and checks it: a run
// that lost or duplicated a message, had a nack or a client error is an
// error. It notes the broker's CPU seconds per million messages delivered
// and the client's CPU per message under key.
func perfRun(b *broker, m mode, key string, c perf.Config) (perf.Result, error) {
	c.URIs = []string{b.url}
	return perfRunOn(b.name, []int{b.pid()}, m, key, c)
}

// perfRunOn is perfRun on the broker named name whose processes are pids
// (the nodes of a cluster: their CPU is summed), with c's URIs set.
func perfRunOn(name string, pids []int, m mode, key string, c perf.Config) (perf.Result, error) {
	if c.Duration == 0 && c.MessageCount == 0 {
		c.Duration = *duration
	}
	c.Raw = m.raw
	cpu := func() float64 {
		s := 0.0
		for _, p := range pids {
			s += cpuSeconds(p)
		}
		return s
	}
	before, start := cpu(), time.Now()
	r, err := perf.Run(context.Background(), c, io.Discard)
	used := cpu() - before
	if err != nil {
		return r, err
	}
	if err := r.Verify(); err != nil {
		return r, fmt.Errorf("%w (sent %d, confirmed %d, received %d)", err, r.Sent, r.Confirmed, r.Received)
	}
	fmt.Fprintf(os.Stderr, "  %s: sent %d received %d, %.0f msg/s received over %.1f s, checked: none lost, no duplicates; client CPU %.2f µs per message\n",
		key, r.Sent, r.Received, r.ReceiveRate, r.ReceiveWindow.Seconds(), float64(r.ClientCPUPerMessage.Nanoseconds())/1000)
	if delivered := float64(r.Received); delivered > 0 && used > 0 {
		per := used / delivered * 1e6
		fmt.Fprintf(os.Stderr, "  broker CPU %.2f s over %.1f s for %.0f deliveries (%.2f s per million)\n", used, time.Since(start).Seconds(), delivered, per)
		results.cpu(name, rowKey(key, m), per, float64(r.ClientCPUPerMessage.Nanoseconds())/1000)
	}
	return r, nil
}

func one(key, name, metric string, higher bool, v float64) []value {
	return []value{{key: key, name: name, metric: metric, higher: higher, v: v}}
}

func throughput(id int, name string, c perf.Config) scenario {
	key := strconv.Itoa(id)
	return scenario{id: id, name: name, modes: true, run: func(b *broker, m mode) ([]value, error) {
		r, err := perfRun(b, m, key, c)
		if err != nil {
			return nil, err
		}
		return one(key, name, "msg/s", true, r.ReceiveRate), nil
	}}
}

func scenarios() []scenario {
	conns, queues := 10000, 100000
	if *quick {
		conns, queues = 2000, 10000
	}
	return []scenario{
		throughput(1, "1P/1C transient 16B auto-ack", perf.Config{Producers: 1, Consumers: 1, Size: 16, AutoAck: true, QueuePattern: "b1-%d"}),
		throughput(2, "1P/1C transient 1KiB auto-ack", perf.Config{Producers: 1, Consumers: 1, Size: 1024, AutoAck: true, QueuePattern: "b2-%d"}),
		throughput(3, "durable persistent 1KiB, confirms 1000, prefetch 1000", perf.Config{Producers: 1, Consumers: 1, Size: 1024, Persistent: true, Durable: true, ConfirmWindow: 1000, Prefetch: 1000, MultiAckEvery: 100, QueuePattern: "b3-%d"}),
		throughput(4, "4P/4C over 4 queues, 1KiB, confirms", perf.Config{Producers: 4, Consumers: 4, Queues: 4, Size: 1024, ConfirmWindow: 1000, Prefetch: 1000, MultiAckEvery: 100, QueuePattern: "b4-%d"}),
		{id: 5, name: "fanout to 10 queues, 16B auto-ack", modes: true, run: fanout},
		{id: 6, name: "topic, 1000 bindings, 1% matching (10 bindings, one per queue)", modes: true, run: func(b *broker, m mode) ([]value, error) { return topic(b, m, 6, 1) }},
		{id: 7, name: "connection churn, 4 goroutines", run: func(b *broker, _ mode) ([]value, error) {
			v, err := churn(b)
			return one("7", "connection churn, 4 goroutines", "conn/s", true, v), err
		}},
		{id: 8, name: fmt.Sprintf("%d idle connections", conns), run: func(b *broker, _ mode) ([]value, error) {
			v, err := idle(b, conns)
			return one("8", fmt.Sprintf("%d idle connections", conns), "KiB RSS per connection", false, v), err
		}},
		{id: 9, name: fmt.Sprintf("%d queues declared", queues), run: func(b *broker, _ mode) ([]value, error) {
			v, err := manyQueues(b, queues)
			return one("9", fmt.Sprintf("%d queues declared", queues), "bytes RSS per queue", false, v), err
		}},
		{id: 10, name: "latency at 10,000 msg/s (p99)", modes: true, run: func(b *broker, m mode) ([]value, error) {
			r, err := perfRun(b, m, "10", perf.Config{Producers: 1, Consumers: 1, Size: 16, AutoAck: true, Rate: 10000, QueuePattern: "b10-%d"})
			return one("10", "latency at 10,000 msg/s (p99)", "ms p99", false, ms(r.LatencyP99)), err
		}},
		throughput(11, "4P/4C over 4 durable queues, persistent 1KiB, confirms 1000, prefetch 1000", perf.Config{Producers: 4, Consumers: 4, Queues: 4, Size: 1024, Persistent: true, Durable: true, ConfirmWindow: 1000, Prefetch: 1000, MultiAckEvery: 100, QueuePattern: "b11-%d"}),
		{id: 12, only: "13,14", name: fmt.Sprintf("backlog of %d persistent 1KiB (publish, drain, peak RSS)", *backlogN), run: func(b *broker, _ mode) ([]value, error) {
			return backlogScenario(b, *backlogN)
		}},
		{id: 15, name: fmt.Sprintf("restart with %d messages in %d queues", *restartN, *restartQueues), run: func(b *broker, _ mode) ([]value, error) {
			v, err := restartTime(b, *restartN, *restartQueues)
			return one("15", fmt.Sprintf("restart with %d messages in %d queues", *restartN, *restartQueues), "s until all queues ready", false, v), err
		}},
		{id: 16, name: "topic, 1000 bindings, 10% matching (100 bindings, ten per queue)", modes: true, run: func(b *broker, m mode) ([]value, error) { return topic(b, m, 16, 10) }},
		{id: 17, name: "latency at 25/50/75% of each broker's own maximum, persistent, confirms", run: latencyUnderLoad},
		{id: 18, name: fmt.Sprintf("%d connections x 1 channel x 1 queue, %d msg/s each", *manyConns, *manyRate), run: func(b *broker, _ mode) ([]value, error) {
			return manyConnections(b, *manyConns, *manyRate)
		}},
		{id: 19, name: "large messages: 1 MiB persistent, confirms", modes: true, run: func(b *broker, m mode) ([]value, error) { return large(b, m, 19, 1<<20, 16) }},
		{id: 20, name: "large messages: 16 MiB persistent, confirms", modes: true, run: func(b *broker, m mode) ([]value, error) { return large(b, m, 20, 16<<20, 4) }},
		{id: 21, name: "cluster: publish on A, queue on B, consume on C, persistent 1KiB, confirms", modes: true, cluster: clusterForward},
		{id: 22, name: fmt.Sprintf("cluster: %d queues and %d bindings declared through one node", *clusterDeclareN, *clusterDeclareN), cluster: func(c *cluster, _ mode) ([]value, error) {
			return clusterDeclares(c, *clusterDeclareN)
		}},
		{id: 23, name: fmt.Sprintf("cluster: formation, and full restart with %d messages in %d queues", *clusterRestartN, *clusterRestartQ), fresh: true, cluster: func(c *cluster, _ mode) ([]value, error) {
			return clusterRestart(c, *clusterRestartN, *clusterRestartQ)
		}},
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func declareBound(b *broker, ex, kind string, bind func(ch *amqp.Channel, i int) error, n int, prefix string) error {
	c, err := amqp.Dial(b.url)
	if err != nil {
		return err
	}
	defer c.Close()
	// fresh exchange and queues: bindings of an earlier round must not
	// add matches. Each delete on a channel of its own: RabbitMQ answers
	// Delete-Ok for an exchange or queue that does not exist, Warren 404,
	// which closes the channel.
	quiet := func(f func(ch *amqp.Channel) error) {
		if ch, err := c.Channel(); err == nil {
			if f(ch) == nil {
				ch.Close()
			}
		}
	}
	quiet(func(ch *amqp.Channel) error { return ch.ExchangeDelete(ex, false, false) })
	for i := 0; i < n; i++ {
		q := fmt.Sprintf("%s-%d", prefix, i)
		quiet(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
	}
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	if err := ch.ExchangeDeclare(ex, kind, false, true, false, false, nil); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		q := fmt.Sprintf("%s-%d", prefix, i)
		if _, err := ch.QueueDeclare(q, false, true, false, false, nil); err != nil {
			return err
		}
		if err := bind(ch, i); err != nil {
			return err
		}
	}
	return nil
}

// fanout: one producer, 10 queues each bound to a fanout exchange, one
// consumer each; every message must arrive once in each queue.
func fanout(b *broker, m mode) ([]value, error) {
	if err := declareBound(b, "bench.fanout", "fanout", func(ch *amqp.Channel, i int) error {
		return ch.QueueBind(fmt.Sprintf("b5-%d", i), "", "bench.fanout", false, nil)
	}, 10, "b5"); err != nil {
		return nil, err
	}
	r, err := perfRun(b, m, "5", perf.Config{Producers: 1, Consumers: 10, Queues: 10, Size: 16, AutoAck: true, Exchange: "bench.fanout", RoutingKey: "x", QueuePattern: "b5-%d", Predeclared: true, EveryQueue: true})
	if err != nil {
		return nil, err
	}
	return one("5", "fanout to 10 queues, 16B auto-ack", "msg/s (all consumers)", true, r.ReceiveRate), nil
}

// topicPatterns are ten distinct binding keys that all match the routing
// key "hit.x".
var topicPatterns = []string{"hit.x", "hit.*", "*.x", "*.*", "#", "hit.#", "#.x", "hit.x.#", "#.hit.x", "hit.#.x"}

// topic: 1,000 bindings over 10 queues (100 each); the routing key
// "hit.x" matches pct% of them, spread evenly, so every queue receives
// each message exactly once however many of its bindings match.
func topic(b *broker, m mode, id, pct int) ([]value, error) {
	perQueue := pct // of each queue's 100 bindings
	prefix := fmt.Sprintf("b%d", id)
	ex := fmt.Sprintf("bench.topic%d", id)
	if err := declareBound(b, ex, "topic", func(ch *amqp.Channel, i int) error {
		for j := 0; j < 100; j++ {
			key := fmt.Sprintf("other.%d.%d", i, j)
			if j < perQueue {
				key = topicPatterns[j]
			}
			if err := ch.QueueBind(fmt.Sprintf("%s-%d", prefix, i), key, ex, false, nil); err != nil {
				return err
			}
		}
		return nil
	}, 10, prefix); err != nil {
		return nil, err
	}
	key := strconv.Itoa(id)
	r, err := perfRun(b, m, key, perf.Config{Producers: 1, Consumers: 10, Queues: 10, Size: 16, AutoAck: true, Exchange: ex, RoutingKey: "hit.x", QueuePattern: prefix + "-%d", Predeclared: true, EveryQueue: true})
	if err != nil {
		return nil, err
	}
	return one(key, fmt.Sprintf("topic, 1000 bindings, %d%% matching", pct), "msg/s (all consumers)", true, r.ReceiveRate), nil
}

// latencyUnderLoad finds each broker's own maximum rate (1 producer, 1
// consumer, persistent, confirms 1000, manual acks) for 16 B and 1 KiB
// and measures latency at 25, 50 and 75% of it.
func latencyUnderLoad(b *broker, m mode) ([]value, error) {
	var out []value
	for _, size := range []int{16, 1024} {
		sz := map[int]string{16: "16 B", 1024: "1 KiB"}[size]
		cfg := perf.Config{Producers: 1, Consumers: 1, Size: size, Persistent: true, Durable: true, ConfirmWindow: 1000, Prefetch: 1000, MultiAckEvery: 100, QueuePattern: fmt.Sprintf("b17-%d-%%d", size)}
		r, err := perfRun(b, m, "17 "+sz+" max", cfg)
		if err != nil {
			return nil, fmt.Errorf("maximum rate, %s: %w", sz, err)
		}
		max := r.ReceiveRate
		out = append(out, value{key: "17 " + sz + " max", name: "latency: maximum rate, " + sz + " persistent, confirms", metric: "msg/s", higher: true, v: max})
		for _, pct := range []int{25, 50, 75} {
			c := cfg
			c.Rate = int(max * float64(pct) / 100)
			if c.Rate < 1 {
				return nil, fmt.Errorf("maximum rate %.0f msg/s is too low to take %d%% of", max, pct)
			}
			r, err := perfRun(b, m, fmt.Sprintf("17 %s %d%%", sz, pct), c)
			if err != nil {
				return nil, fmt.Errorf("%d%% of maximum, %s: %w", pct, sz, err)
			}
			fmt.Fprintf(os.Stderr, "  %s at %d%% of %.0f: asked %d msg/s, got %.0f\n", sz, pct, max, c.Rate, r.ReceiveRate)
			for _, q := range []struct {
				n string
				d time.Duration
			}{{"p50", r.LatencyP50}, {"p99", r.LatencyP99}, {"p99.9", r.LatencyP999}} {
				out = append(out, value{key: fmt.Sprintf("17 %s %d%% %s", sz, pct, q.n), name: fmt.Sprintf("latency %s at %d%% of own max, %s", q.n, pct, sz), metric: "ms", v: ms(q.d)})
			}
		}
	}
	return out, nil
}

// large: persistent messages of size bytes with confirms (window) and
// manual acks (prefetch window).
func large(b *broker, m mode, id, size, window int) ([]value, error) {
	key := strconv.Itoa(id)
	// at least 10 s: a few 16 MiB messages a second make short runs noise
	r, err := perfRun(b, m, key, perf.Config{Producers: 1, Consumers: 1, Size: size, Persistent: true, Durable: true, ConfirmWindow: window, Prefetch: window, MultiAckEvery: 1,
		QueuePattern: fmt.Sprintf("b%d-%%d", id), Duration: max(*duration, 10*time.Second)})
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("%d MiB persistent, confirms %d, prefetch %d", size>>20, window, window)
	return []value{{key: key, name: name, metric: "msg/s", higher: true, v: r.ReceiveRate},
		{key: key + " MiB/s", name: name, metric: "MiB/s delivered", higher: true, v: r.ReceiveRate * float64(size) / (1 << 20)}}, nil
}

func churn(b *broker) (float64, error) {
	deadline := time.Now().Add(*duration)
	done := make(chan int)
	for g := 0; g < 4; g++ {
		go func() {
			n := 0
			for time.Now().Before(deadline) {
				c, err := amqp.Dial(b.url)
				if err != nil {
					continue
				}
				if ch, err := c.Channel(); err == nil {
					ch.Close()
				}
				c.Close()
				n++
			}
			done <- n
		}()
	}
	total := 0
	for g := 0; g < 4; g++ {
		total += <-done
	}
	return float64(total) / duration.Seconds(), nil
}

// idle opens n connections that stay idle and reports the broker's RSS
// growth per connection.
func idle(b *broker, n int) (float64, error) {
	runtime.GC()
	time.Sleep(500 * time.Millisecond)
	before := rss(b.pid())
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	addr := strings.TrimSuffix(strings.TrimPrefix(b.url, "amqp://guest:guest@"), "/")
	for i := 0; i < n; i++ {
		// a full AMQP handshake per connection through the client library
		c, err := amqp.DialConfig(b.url, amqp.Config{Heartbeat: 0, Dial: func(network, a string) (net.Conn, error) {
			nc, err := net.DialTimeout(network, addr, 5*time.Second)
			if err == nil {
				nc.SetDeadline(time.Now().Add(5 * time.Second)) // cleared once AMQP is open
				conns = append(conns, nc)
			}
			return nc, err
		}})
		if err != nil {
			if i < 100 {
				return 0, fmt.Errorf("connection %d: %w", i, err)
			}
			fmt.Fprintf(os.Stderr, "  stopped at %d connections: %v\n", i, err)
			n = i
			break
		}
		_ = c
	}
	time.Sleep(2 * time.Second)
	after := rss(b.pid())
	return float64(after-before) / float64(n) / 1024, nil
}

func manyQueues(b *broker, n int) (float64, error) {
	// a fresh process: heap left free by earlier scenarios would absorb
	// the queues and hide their cost
	b.stop()
	if err := b.start(); err != nil {
		return 0, err
	}
	time.Sleep(2 * time.Second)
	before := rss(b.pid())
	c, err := amqp.Dial(b.url)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ch, _ := c.Channel()
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := ch.QueueDeclare(fmt.Sprintf("b9-%d-%d", start.UnixNano(), i), false, false, false, false, nil); err != nil {
			return 0, err
		}
	}
	rate := float64(n) / time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "  declare rate %.0f queues/s\n", rate)
	time.Sleep(time.Second)
	after := rss(b.pid())
	// clean up so later rounds start alike
	for i := 0; i < n; i++ {
		ch.QueueDelete(fmt.Sprintf("b9-%d-%d", start.UnixNano(), i), false, false, true)
	}
	return float64(after-before) / float64(n), nil
}
