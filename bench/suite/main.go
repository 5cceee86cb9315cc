// Command suite runs Warren and RabbitMQ 3.10 side by side on this machine
// (A B A B ... rounds, medians) over the benchmark scenarios and prints one
// table with the Warren/RabbitMQ ratio per scenario; the results also go
// to bench/results/<date>.json. Run it with `make bench` (bench/run.sh).
//
// Flags: -rounds N, -duration D, -quick (1 round, short runs, smaller
// scales), -only 1,3,... to pick scenarios, -warren-bin, -skip-rabbit.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/perf"
)

type broker struct {
	name string
	url  string
	pid  func() int
	stop func()
	// start starts the broker again (after stop) on the same data; it
	// returns once the AMQP port accepts connections.
	start func() error
}

type scenario struct {
	id     int
	name   string
	metric string // what the number means
	higher bool   // higher is better
	run    func(b *broker) (float64, error)
}

var (
	rounds   = flag.Int("rounds", 3, "rounds (A B per round)")
	duration = flag.Duration("duration", 8*time.Second, "duration of each throughput run")
	quick    = flag.Bool("quick", false, "1 round, 3s runs, smaller scales")
	only     = flag.String("only", "", "comma-separated scenario numbers")
	warren   = flag.String("warren-bin", "", "warren-server binary (built if empty)")
	skipRMQ  = flag.Bool("skip-rabbit", false, "run Warren only")
	outDir   = flag.String("out", "bench/results", "directory for the JSON results")

	backlogN      = flag.Int("backlog", 5_000_000, "messages in the backlog scenarios (12-14)")
	restartN      = flag.Int("restart-messages", 1_000_000, "messages in the restart scenario (15)")
	restartQueues = flag.Int("restart-queues", 1000, "queues in the restart scenario (15)")
)

func main() {
	flag.Parse()
	if *quick {
		*rounds, *duration = 1, 3*time.Second
		*backlogN, *restartN = min(*backlogN, 200_000), min(*restartN, 100_000)
	}
	raiseNoFile()
	tmp, _ := os.MkdirTemp("", "warren-bench-")
	defer os.RemoveAll(tmp)
	var brokers []*broker
	w, err := startWarren(tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: Warren side skipped:", err)
	} else {
		defer w.stop()
		brokers = append(brokers, w)
	}
	if !*skipRMQ {
		r, err := startRabbit(tmp)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: RabbitMQ side skipped:", err)
		} else {
			defer r.stop()
			brokers = append(brokers, r)
		}
	}
	if len(brokers) == 0 {
		fmt.Fprintln(os.Stderr, "bench: no broker to measure")
		os.Exit(1)
	}
	// stop both brokers if interrupted
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "bench: interrupted; stopping the brokers")
		for _, b := range brokers {
			b.stop()
		}
		os.RemoveAll(tmp)
		os.Exit(130)
	}()
	scen := scenarios()
	results := map[string]map[int][]float64{}
	for _, b := range brokers {
		results[b.name] = map[int][]float64{}
	}
	for round := 1; round <= *rounds; round++ {
		for _, s := range scen {
			if !selected(s.id) {
				continue
			}
			for _, b := range brokers {
				fmt.Fprintf(os.Stderr, "round %d/%d scenario %d (%s) on %s ...\n", round, *rounds, s.id, s.name, b.name)
				current = s.id
				v, err := s.run(b)
				if err != nil {
					fmt.Fprintf(os.Stderr, "  error: %v\n", err)
					continue
				}
				fmt.Fprintf(os.Stderr, "  %.1f %s\n", v, s.metric)
				results[b.name][s.id] = append(results[b.name][s.id], v)
			}
		}
	}
	printTable(scen, results)
	saveJSON(scen, results)
}

func selected(id int) bool {
	if *only == "" {
		return true
	}
	for _, s := range strings.Split(*only, ",") {
		if strings.TrimSpace(s) == strconv.Itoa(id) {
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

func startWarren(tmp string) (*broker, error) {
	bin := *warren
	if bin == "" {
		bin = filepath.Join(tmp, "warren-server")
		out, err := exec.Command("go", "build", "-o", bin, "./cmd/warren-server").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("build: %v: %s", err, out)
		}
	}
	port := freePort()
	logf, _ := os.Create(filepath.Join(tmp, "warren.log"))
	var cmd *exec.Cmd
	start := func() error {
		cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--management-port", "0", "--prometheus-port", "0", "--control-port", "0", "--data-dir", filepath.Join(tmp, "warren-data"), "--log-level", "warning")
		cmd.Env = append(os.Environ(), "WARREN_COOKIE_FILE="+filepath.Join(tmp, "cookie"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return err
		}
		if err := waitPort(port, 10*time.Minute); err != nil {
			cmd.Process.Kill()
			return err
		}
		return nil
	}
	if err := start(); err != nil {
		return nil, err
	}
	stop := func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	return &broker{name: "Warren", url: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port),
		pid:   func() int { return cmd.Process.Pid },
		stop:  stop,
		start: start}, nil
}

func startRabbit(tmp string) (*broker, error) {
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		return nil, fmt.Errorf("rabbitmq-server not installed (apt-get install rabbitmq-server)")
	}
	port, dist := freePort(), freePort()
	dir := filepath.Join(tmp, "rabbit")
	os.MkdirAll(filepath.Join(dir, "mnesia"), 0o755)
	os.MkdirAll(filepath.Join(dir, "log"), 0o755)
	exec.Command("chown", "-R", "rabbitmq:rabbitmq", dir).Run()
	exec.Command("chmod", "755", tmp).Run()
	node := fmt.Sprintf("bench%d@localhost", port)
	env := append(os.Environ(), "RABBITMQ_NODE_PORT="+strconv.Itoa(port), "RABBITMQ_DIST_PORT="+strconv.Itoa(dist),
		"RABBITMQ_NODENAME="+node, "RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"), "RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_FEATURE_FLAGS_FILE="+filepath.Join(dir, "ff"), "RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "plugins"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"))
	logf, _ := os.Create(filepath.Join(tmp, "rabbit.out"))
	var cmd *exec.Cmd
	// Debian's /usr/sbin/rabbitmq-server switches to the rabbitmq user
	// with su, whose PAM limits cut open files to 1024 (RabbitMQ then
	// refuses connections past ~830 and crawls when recovering 1,000
	// queues). Start the real script as that user directly instead, so it
	// inherits this process's raised limit, as a systemd unit with
	// LimitNOFILE would give it.
	cred := rabbitCredential()
	start := func() error {
		if cred != nil {
			cmd = exec.Command("/usr/lib/rabbitmq/bin/rabbitmq-server")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
			cmd.Dir = "/var/lib/rabbitmq"
			cmd.Env = append(env, "HOME=/var/lib/rabbitmq")
		} else {
			cmd = exec.Command("rabbitmq-server")
			cmd.Env = env
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return err
		}
		if err := waitPort(port, 10*time.Minute); err != nil {
			cmd.Process.Kill()
			b, _ := os.ReadFile(filepath.Join(tmp, "rabbit.out"))
			return fmt.Errorf("%v: %s", err, b)
		}
		return nil
	}
	if err := start(); err != nil {
		return nil, err
	}
	beam := func() int {
		// rabbitmq-server writes the Erlang VM's pid to RABBITMQ_PID_FILE
		b, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil {
			return 0
		}
		p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return p
	}
	stop := func() {
		c := exec.Command("rabbitmqctl", "-n", node, "stop")
		c.Env = env
		if c.Run() != nil {
			if p := beam(); p > 0 {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
		cmd.Wait()
	}
	return &broker{name: "RabbitMQ", url: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port), pid: beam, stop: stop,
		start: start}, nil
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

// current is the scenario being run; cpuPerMillion collects, per broker
// and scenario, the broker's CPU seconds per million messages delivered:
// the load generator shares the machine, so throughput alone can hide how
// much CPU each broker spends.
var (
	current       int
	cpuPerMillion = map[string]map[int][]float64{}
)

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

func perfRun(b *broker, c perf.Config) (perf.Result, error) {
	c.URIs = []string{b.url}
	if c.Duration == 0 {
		c.Duration = *duration
	}
	pid := b.pid()
	before, start := cpuSeconds(pid), time.Now()
	r, err := perf.Run(context.Background(), c, io.Discard)
	used := cpuSeconds(pid) - before
	if delivered := float64(r.Received); err == nil && delivered > 0 && used > 0 {
		per := used / delivered * 1e6
		fmt.Fprintf(os.Stderr, "  broker CPU %.2f s over %.1f s for %.0f deliveries (%.2f s per million)\n", used, time.Since(start).Seconds(), delivered, per)
		if cpuPerMillion[b.name] == nil {
			cpuPerMillion[b.name] = map[int][]float64{}
		}
		cpuPerMillion[b.name][current] = append(cpuPerMillion[b.name][current], per)
	}
	return r, err
}

func throughput(c perf.Config) func(b *broker) (float64, error) {
	return func(b *broker) (float64, error) {
		r, err := perfRun(b, c)
		if err != nil {
			return 0, err
		}
		if len(r.Errors) > 0 {
			return 0, fmt.Errorf("%s", r.Errors[0])
		}
		return r.ReceiveRate, nil
	}
}

func scenarios() []scenario {
	conns, queues := 10000, 100000
	if *quick {
		conns, queues = 2000, 10000
	}
	return []scenario{
		{1, "1P/1C transient 16B auto-ack", "msg/s", true, throughput(perf.Config{Producers: 1, Consumers: 1, Size: 16, AutoAck: true, QueuePattern: "b1-%d"})},
		{2, "1P/1C transient 1KiB auto-ack", "msg/s", true, throughput(perf.Config{Producers: 1, Consumers: 1, Size: 1024, AutoAck: true, QueuePattern: "b2-%d"})},
		{3, "durable persistent 1KiB, confirms 1000, prefetch 1000", "msg/s", true, throughput(perf.Config{Producers: 1, Consumers: 1, Size: 1024, Persistent: true, Durable: true, ConfirmWindow: 1000, Prefetch: 1000, MultiAckEvery: 100, QueuePattern: "b3-%d"})},
		{4, "4P/4C over 4 queues, 1KiB, confirms", "msg/s", true, throughput(perf.Config{Producers: 4, Consumers: 4, Queues: 4, Size: 1024, ConfirmWindow: 1000, Prefetch: 1000, MultiAckEvery: 100, QueuePattern: "b4-%d"})},
		{5, "fanout to 10 queues, 16B auto-ack", "msg/s (all consumers)", true, fanout},
		{6, "topic, 1000 bindings, 10% matching", "msg/s (all consumers)", true, topic},
		{7, "connection churn, 4 goroutines", "conn/s", true, churn},
		{8, fmt.Sprintf("%d idle connections", conns), "KiB RSS per connection", false, func(b *broker) (float64, error) { return idle(b, conns) }},
		{9, fmt.Sprintf("%d queues declared", queues), "bytes RSS per queue", false, func(b *broker) (float64, error) { return manyQueues(b, queues) }},
		{10, "latency at 10,000 msg/s (p99)", "ms p99", false, func(b *broker) (float64, error) {
			r, err := perfRun(b, perf.Config{Producers: 1, Consumers: 1, Size: 16, AutoAck: true, Rate: 10000, QueuePattern: "b10-%d"})
			return float64(r.LatencyP99.Microseconds()) / 1000, err
		}},
		{11, "4P/4C over 4 durable queues, persistent 1KiB, confirms 1000, prefetch 1000", "msg/s", true, throughput(perf.Config{Producers: 4, Consumers: 4, Queues: 4, Size: 1024, Persistent: true, Durable: true, ConfirmWindow: 1000, Prefetch: 1000, MultiAckEvery: 100, QueuePattern: "b11-%d"})},
		{12, fmt.Sprintf("backlog of %d persistent 1KiB: publish", *backlogN), "msg/s", true, func(b *broker) (float64, error) {
			r, err := backlog(b, *backlogN)
			return r.publish, err
		}},
		{13, fmt.Sprintf("backlog of %d persistent 1KiB: drain", *backlogN), "msg/s", true, func(b *broker) (float64, error) {
			r, ok := backlogs[b.name]
			if !ok {
				return 0, fmt.Errorf("needs scenario 12 in the same run")
			}
			return r.drain, nil
		}},
		{14, fmt.Sprintf("backlog of %d persistent 1KiB: peak RSS", *backlogN), "MiB", false, func(b *broker) (float64, error) {
			r, ok := backlogs[b.name]
			if !ok {
				return 0, fmt.Errorf("needs scenario 12 in the same run")
			}
			return float64(r.peak) / (1 << 20), nil
		}},
		{15, fmt.Sprintf("restart with %d messages in %d queues", *restartN, *restartQueues), "s until all queues ready", false, func(b *broker) (float64, error) {
			return restartTime(b, *restartN, *restartQueues)
		}},
	}
}

func declareBound(b *broker, ex, kind string, bind func(ch *amqp.Channel, i int) error, n int, prefix string) error {
	c, err := amqp.Dial(b.url)
	if err != nil {
		return err
	}
	defer c.Close()
	ch, _ := c.Channel()
	if err := ch.ExchangeDeclare(ex, kind, false, true, false, false, nil); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		q := fmt.Sprintf("%s-%d", prefix, i)
		if _, err := ch.QueueDeclare(q, false, true, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueuePurge(q, false); err != nil {
			return err
		}
		if err := bind(ch, i); err != nil {
			return err
		}
	}
	return nil
}

func fanout(b *broker) (float64, error) {
	if err := declareBound(b, "bench.fanout", "fanout", func(ch *amqp.Channel, i int) error {
		return ch.QueueBind(fmt.Sprintf("b5-%d", i), "", "bench.fanout", false, nil)
	}, 10, "b5"); err != nil {
		return 0, err
	}
	r, err := perfRun(b, perf.Config{Producers: 1, Consumers: 10, Queues: 10, Size: 16, AutoAck: true, Exchange: "bench.fanout", RoutingKey: "x", QueuePattern: "b5-%d", Predeclared: true})
	return r.ReceiveRate, err
}

func topic(b *broker) (float64, error) {
	// 1000 bindings over 10 queues; the routing key matches 100 of them (10%),
	// which lead to all 10 queues.
	if err := declareBound(b, "bench.topic", "topic", func(ch *amqp.Channel, i int) error {
		for j := 0; j < 100; j++ {
			key := fmt.Sprintf("other.%d.%d", i, j)
			if j < 10 {
				key = fmt.Sprintf("match.%d.*", j)
			}
			if err := ch.QueueBind(fmt.Sprintf("b6-%d", i), key, "bench.topic", false, nil); err != nil {
				return err
			}
		}
		return nil
	}, 10, "b6"); err != nil {
		return 0, err
	}
	r, err := perfRun(b, perf.Config{Producers: 1, Consumers: 10, Queues: 10, Size: 16, AutoAck: true, Exchange: "bench.topic", RoutingKey: "match.3.x", QueuePattern: "b6-%d", Predeclared: true})
	return r.ReceiveRate, err
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

func printTable(scen []scenario, res map[string]map[int][]float64) {
	host, _ := os.Hostname()
	fmt.Printf("\nWarren vs RabbitMQ 3.10 on %s (%d CPUs), %s, %d round(s), medians\n\n", host, runtime.NumCPU(), time.Now().Format("2006-01-02"), *rounds)
	fmt.Printf("| # | scenario | metric | Warren | RabbitMQ | ratio (better >1) |\n|---|---|---|---|---|---|\n")
	for _, s := range scen {
		if !selected(s.id) {
			continue
		}
		w, r := perf.Median(res["Warren"][s.id]), perf.Median(res["RabbitMQ"][s.id])
		ratio := "n/a"
		if w > 0 && r > 0 {
			if s.higher {
				ratio = fmt.Sprintf("%.2fx", w/r)
			} else {
				ratio = fmt.Sprintf("%.2fx", r/w)
			}
		}
		fmt.Printf("| %d | %s | %s | %.1f | %.1f | %s |\n", s.id, s.name, s.metric, w, r, ratio)
	}
	if len(cpuPerMillion) == 0 {
		return
	}
	fmt.Printf("\nBroker CPU seconds per million messages delivered (medians; lower is better)\n\n| # | Warren | RabbitMQ | ratio |\n|---|---|---|---|\n")
	for _, s := range scen {
		w, r := perf.Median(cpuPerMillion["Warren"][s.id]), perf.Median(cpuPerMillion["RabbitMQ"][s.id])
		if w == 0 && r == 0 {
			continue
		}
		ratio := "n/a"
		if w > 0 && r > 0 {
			ratio = fmt.Sprintf("%.2fx", r/w)
		}
		fmt.Printf("| %d | %.2f | %.2f | %s |\n", s.id, w, r, ratio)
	}
}

func saveJSON(scen []scenario, res map[string]map[int][]float64) {
	type row struct {
		ID       int       `json:"id"`
		Name     string    `json:"name"`
		Metric   string    `json:"metric"`
		Warren   []float64 `json:"warren"`
		RabbitMQ []float64 `json:"rabbitmq"`
	}
	var rows []row
	for _, s := range scen {
		if selected(s.id) {
			rows = append(rows, row{s.id, s.name, s.metric, res["Warren"][s.id], res["RabbitMQ"][s.id]})
		}
	}
	os.MkdirAll(*outDir, 0o755)
	b, _ := json.MarshalIndent(map[string]any{"date": time.Now().Format(time.RFC3339), "cpus": runtime.NumCPU(), "rounds": *rounds, "results": rows}, "", "  ")
	p := filepath.Join(*outDir, time.Now().Format("2006-01-02T150405")+".json")
	if err := os.WriteFile(p, b, 0o644); err == nil {
		fmt.Fprintf(os.Stderr, "results written to %s\n", p)
	}
}
