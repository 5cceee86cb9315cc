package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/perf"
)

// The cluster scenarios (21-23): a 3-node Warren cluster and a 3-node
// RabbitMQ cluster (one per -rabbit-configs configuration) on this
// machine, in the same run, with the same settings. Every node is a
// process of its own with its own ports and files under the suite's
// temporary directory (nodes.go); the RabbitMQ nodes share a cookie of
// this run's own, never the shared RabbitMQ's.

// cluster is three nodes of one broker. Its name is the column its
// figures go to ("Warren", "RabbitMQ", "RabbitMQ tuned"), as the single
// nodes' do.
type cluster struct {
	name, kind string
	nodes      []*broker // A, B, C
	info       map[string]string
	// join makes a cluster of nodes just started on empty data
	// (RabbitMQ: rabbitmqctl join_cluster; nil for Warren, whose nodes
	// form the cluster from warren.conf's classic_config as they start).
	join     func() error
	formed   bool   // formed (and not wiped since)
	running  bool   // its nodes run (start succeeded, no stop since)
	firstRun func() // once formed the first time (RabbitMQ: note the node's settings)
}

func (c *cluster) pids() []int {
	var out []int
	for _, n := range c.nodes {
		if p := n.pid(); p > 0 {
			out = append(out, p)
		}
	}
	return out
}

func (c *cluster) urls() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.url)
	}
	return out
}

// stop stops the nodes one after another, the last first (C, B, A), each
// cleanly, keeping their data.
func (c *cluster) stop() {
	for i := len(c.nodes) - 1; i >= 0; i-- {
		c.nodes[i].stop()
	}
	c.running = false
}

// start starts every node at once (on its data) and returns when each
// accepts connections on its AMQP port.
func (c *cluster) start() error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.start(); err != nil {
				errs[i] = fmt.Errorf("node %s: %w", n.url, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	c.running = true
	return nil
}

// wipe removes the nodes' data (the cluster must be stopped).
func (c *cluster) wipe() error {
	for _, n := range c.nodes {
		d := filepath.Join(n.dir, "data")
		if c.kind == "RabbitMQ" {
			d = filepath.Join(n.dir, "mnesia")
		}
		if err := os.RemoveAll(d); err != nil {
			return err
		}
		if c.kind == "RabbitMQ" {
			os.MkdirAll(d, 0o755)
			exec.Command("chown", "rabbitmq:rabbitmq", d).Run()
		}
	}
	return nil
}

// form stops the cluster if it runs, wipes its data, starts three fresh
// nodes, makes them one cluster and returns the time from starting the
// nodes until every node serves clients and sees a queue declared
// through another.
func (c *cluster) form() (time.Duration, error) {
	c.stop()
	c.formed = false
	if err := c.wipe(); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := c.start(); err != nil {
		return 0, err
	}
	if c.join != nil {
		if err := c.join(); err != nil {
			return 0, err
		}
	}
	if err := c.ready(5 * time.Minute); err != nil {
		return 0, err
	}
	el := time.Since(t0)
	c.formed = true
	if c.firstRun != nil {
		c.firstRun()
		c.firstRun = nil
	}
	return el, nil
}

// ensure forms the cluster unless it is formed, and starts it again
// (on its data, untimed) if it was stopped while another was measured.
func (c *cluster) ensure() error {
	if c.formed && c.running {
		return nil
	}
	if c.formed {
		fmt.Fprintf(os.Stderr, "  starting the %s cluster again (its data kept)\n", c.name)
		t0 := time.Now()
		if err := c.start(); err != nil {
			return fmt.Errorf("starting the %s cluster: %w", c.name, err)
		}
		if err := c.ready(5 * time.Minute); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "  serving again after %.1f s\n", time.Since(t0).Seconds())
		return nil
	}
	fmt.Fprintf(os.Stderr, "  forming the %s cluster (%d nodes)\n", c.name, len(c.nodes))
	el, err := c.form()
	if err != nil {
		return fmt.Errorf("forming the %s cluster: %w", c.name, err)
	}
	fmt.Fprintf(os.Stderr, "  formed in %.1f s\n", el.Seconds())
	return nil
}

// ready waits until every node accepts an AMQP connection and sees a
// queue declared through node A (passive declare), then deletes it.
func (c *cluster) ready(d time.Duration) error {
	probe := fmt.Sprintf("bench-probe-%d", time.Now().UnixNano())
	deadline := time.Now().Add(d)
	var last error
	try := func() error {
		conn, ch, err := openChannel(c.nodes[0].url)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := ch.QueueDeclare(probe, false, false, false, false, nil); err != nil {
			return err
		}
		for _, n := range c.nodes[1:] {
			nc, nch, err := openChannel(n.url)
			if err != nil {
				return err
			}
			_, err = nch.QueueDeclarePassive(probe, false, false, false, false, nil)
			nc.Close()
			if err != nil {
				return fmt.Errorf("node %s does not see queue %s declared through %s: %w", n.url, probe, c.nodes[0].url, err)
			}
		}
		_, err = ch.QueueDelete(probe, false, false, false)
		return err
	}
	for time.Now().Before(deadline) {
		if last = try(); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the cluster did not serve clients on every node within %v: %w", d, last)
}

// clusterConfigs is the settings every cluster shares, for the results.
func clusterInfo(extra map[string]string) map[string]string {
	m := map[string]string{"nodes": "3 on this machine (127.0.0.1), each with its own AMQP and inter-node ports and data",
		"queues":  "classic, non-mirrored (no ha-mode policy; Warren's queues are classic normal-mode): a queue lives on one node, the others forward",
		"restart": "stop: each node cleanly, C then B then A; start: all three at once"}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// newWarrenCluster is three warren-server nodes n1@localhost..n3@localhost
// clustered by warren.conf (classic_config, with Warren's addresses.N for
// several nodes on one host) and one cookie file; not started.
func newWarrenCluster(tmp string) (*cluster, error) {
	bin, err := warrenBinary(tmp)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(tmp, "warren-cluster")
	os.MkdirAll(dir, 0o755)
	var conf strings.Builder
	conf.WriteString("cluster_formation.peer_discovery_backend = classic_config\n")
	type nd struct {
		name       string
		port, dist int
	}
	var nds []nd
	for i := 1; i <= 3; i++ {
		n := nd{fmt.Sprintf("n%d@localhost", i), freePortExcept(), freePortExcept()}
		nds = append(nds, n)
		fmt.Fprintf(&conf, "cluster_formation.classic_config.nodes.%d = %s\ncluster_formation.classic_config.addresses.%d = 127.0.0.1:%d\n", i, n.name, i, n.dist)
	}
	cf := filepath.Join(dir, "warren.conf")
	if err := os.WriteFile(cf, []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	cookie := filepath.Join(dir, "cookie")
	c := &cluster{name: "Warren", kind: "Warren"}
	for i, n := range nds {
		c.nodes = append(c.nodes, warrenNode("Warren", bin, filepath.Join(dir, fmt.Sprintf("n%d", i+1)), n.port, cookie,
			"--config", cf, "--nodename", n.name, "--dist-port", strconv.Itoa(n.dist)))
	}
	c.info = clusterInfo(map[string]string{"warren.conf": conf.String(), "formation": "classic_config in warren.conf: the nodes form the cluster as they start"})
	for k, v := range c.nodes[0].info {
		c.info[k] = v
	}
	return c, nil
}

// newRabbitCluster is three RabbitMQ nodes (default or tuned settings)
// named warrenbench{A,B,C}<port>@localhost; B and C join A with
// rabbitmqctl stop_app, join_cluster, start_app. Not started.
func newRabbitCluster(tmp string, tuned bool) (*cluster, error) {
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		return nil, fmt.Errorf("rabbitmq-server not installed (apt-get install rabbitmq-server)")
	}
	name, tag := "RabbitMQ", "default"
	if tuned {
		name, tag = "RabbitMQ tuned", "tuned"
	}
	dir := filepath.Join(tmp, "rabbit-cluster-"+tag)
	c := &cluster{name: name, kind: "RabbitMQ"}
	for _, l := range []string{"A", "B", "C"} {
		port := freePortExcept()
		c.nodes = append(c.nodes, rabbitNode(tmp, name, filepath.Join(dir, l), fmt.Sprintf("warrenbench%s%d@localhost", l, port), port, tuned))
	}
	c.join = func() error {
		for _, n := range c.nodes[1:] {
			for _, args := range [][]string{{"stop_app"}, {"join_cluster", c.nodes[0].node}, {"start_app"}} {
				if _, err := n.ctl(args...); err != nil {
					return err
				}
			}
		}
		return nil
	}
	c.info = clusterInfo(map[string]string{"formation": "nodes B and C: rabbitmqctl stop_app; join_cluster <A>; start_app (disc nodes)",
		"cookie": "a cookie of this run's own in the nodes' HOME (not the shared RabbitMQ's)"})
	for k, v := range c.nodes[0].info {
		if k != "node" {
			c.info[k] = v
		}
	}
	c.firstRun = func() {
		for _, n := range c.nodes {
			rabbitInfo(n)
		}
		for k, v := range c.nodes[0].info {
			if k != "node" {
				c.info[k] = v
			}
		}
		if out, err := c.nodes[0].ctl("cluster_status"); err == nil {
			c.info["cluster_status"] = strings.TrimSpace(out)
		}
	}
	return c, nil
}

// rabbitHomes counts a RabbitMQ cluster's queues whose name starts with
// prefix per node (the node their master process runs on).
func rabbitHomes(c *cluster, prefix string) (map[string]int, error) {
	out, err := c.nodes[0].ctl("list_queues", "-q", "--no-table-headers", "name", "pid")
	if err != nil {
		return nil, err
	}
	m := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || !strings.HasPrefix(f[0], prefix) {
			continue
		}
		// a pid prints as <node.N.M.K>
		p := strings.TrimPrefix(f[1], "<")
		if i := strings.Index(p, "."); i > 0 {
			p = p[:i]
		}
		m[p]++
	}
	return m, nil
}

func fmtHomes(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// clusterForward (21): publish on node A to a durable queue declared
// through node B (its home), consume on node C; 1 KiB persistent,
// confirms (window 1000), manual acks (prefetch 1000). The perf tracker
// checks that every confirmed message arrived once.
func clusterForward(c *cluster, m mode) ([]value, error) {
	const q = "b21-%d"
	r, err := perfRunOn(c.name, c.pids(), m, "21", perf.Config{URIs: []string{c.nodes[1].url}, ProducerURIs: []string{c.nodes[0].url}, ConsumerURIs: []string{c.nodes[2].url},
		Producers: 1, Consumers: 1, Size: 1024, Persistent: true, Durable: true, ConfirmWindow: 1000, Prefetch: 1000, MultiAckEvery: 100, QueuePattern: q})
	if err != nil {
		return nil, err
	}
	if c.kind == "RabbitMQ" {
		// the queue's master must be B, or the row measures something else
		homes, err := rabbitHomes(c, "b21-")
		if err != nil {
			return nil, err
		}
		if homes[c.nodes[1].node] != 1 || len(homes) != 1 {
			return nil, fmt.Errorf("queue b21-0 is not on node B (%s): %s", c.nodes[1].node, fmtHomes(homes))
		}
		fmt.Fprintf(os.Stderr, "  queue b21-0 on %s\n", c.nodes[1].node)
	}
	return one("21", "cluster: publish on A, queue on B, consume on C; persistent 1KiB, confirms 1000, prefetch 1000", "msg/s", true, r.ReceiveRate), nil
}

// clusterDeclares (22): n durable queues declared through node A with
// x-queue-master-locator min-masters (each lands on the node with the
// fewest queues), then n bindings (each queue to a direct exchange by its
// name), all through A on one channel, one at a time; the seconds of
// each. It then checks through node C that every queue exists and that a
// sample of the bindings route, and deletes them (timed too).
func clusterDeclares(c *cluster, n int) ([]value, error) {
	prefix := fmt.Sprintf("b22-%d-", time.Now().UnixNano())
	ex := prefix + "x"
	conn, ch, err := openChannel(c.nodes[0].url)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := ch.ExchangeDeclare(ex, "direct", true, false, false, false, nil); err != nil {
		return nil, err
	}
	args := amqp.Table{"x-queue-master-locator": "min-masters"}
	name := func(i int) string { return prefix + strconv.Itoa(i) }
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if _, err := ch.QueueDeclare(name(i), true, false, false, false, args); err != nil {
			return nil, fmt.Errorf("declaring queue %d: %w", i, err)
		}
	}
	declare := time.Since(t0)
	t0 = time.Now()
	for i := 0; i < n; i++ {
		if err := ch.QueueBind(name(i), name(i), ex, false, nil); err != nil {
			return nil, fmt.Errorf("binding queue %d: %w", i, err)
		}
	}
	bind := time.Since(t0)
	fmt.Fprintf(os.Stderr, "  %d queues declared in %.2f s (%.0f/s), %d bindings in %.2f s (%.0f/s)\n", n, declare.Seconds(), float64(n)/declare.Seconds(), n, bind.Seconds(), float64(n)/bind.Seconds())
	if c.kind == "RabbitMQ" {
		if homes, err := rabbitHomes(c, prefix); err == nil {
			fmt.Fprintf(os.Stderr, "  queues per node: %s\n", fmtHomes(homes))
		}
	}
	if err := checkDeclared(c.nodes[2].url, ex, name, n); err != nil {
		return nil, err
	}
	t0 = time.Now()
	for i := 0; i < n; i++ {
		if _, err := ch.QueueDelete(name(i), false, false, false); err != nil {
			return nil, fmt.Errorf("deleting queue %d: %w", i, err)
		}
	}
	del := time.Since(t0)
	ch.ExchangeDelete(ex, false, false)
	label := fmt.Sprintf("cluster: %d durable queues (min-masters) and %d bindings through node A", n, n)
	return []value{
		{key: "22 queues", name: label + ": declaring the queues", metric: "s", v: declare.Seconds()},
		{key: "22 bindings", name: label + ": binding them", metric: "s", v: bind.Seconds()},
		{key: "22 delete", name: label + ": deleting the queues", metric: "s", v: del.Seconds()},
	}, nil
}

// checkDeclared checks through url (another node) that every queue
// exists, and that ten of the bindings, spread over them, route a
// message published through url to their queue.
func checkDeclared(url, ex string, name func(int) string, n int) error {
	conn, ch, err := openChannel(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	for i := 0; i < n; i++ {
		if _, err := ch.QueueDeclarePassive(name(i), true, false, false, false, nil); err != nil {
			return fmt.Errorf("%w: queue %s, declared through node A, not seen through node C: %v", perf.ErrCheckFailed, name(i), err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	for k := 0; k < 10; k++ {
		i := k * n / 10
		dc, err := ch.PublishWithDeferredConfirm(ex, name(i), true, false, amqp.Publishing{Body: []byte("probe")})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ok, err := dc.WaitContext(ctx)
		cancel()
		if err != nil || !ok {
			return fmt.Errorf("probe to %s not confirmed (%v)", name(i), err)
		}
		var got bool
		for try := 0; try < 50 && !got; try++ {
			_, got, err = ch.Get(name(i), true)
			if err != nil {
				return err
			}
			if !got {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if !got {
			return fmt.Errorf("%w: binding %s -> %s did not route a message published through node C", perf.ErrCheckFailed, ex, name(i))
		}
	}
	fmt.Fprintf(os.Stderr, "  checked through node C: all %d queues exist, 10 bindings route\n", n)
	return nil
}

// clusterRestart (23): formation (fresh nodes until every node serves
// clients), then queues durable queues spread over the nodes (queue i
// declared through, so living on, node i mod 3) holding n persistent
// 1 KiB messages in all, a full stop (C, B, A) and a start of all three
// at once, timed until every queue is back with all its messages; then
// every message is drained and checked by id.
func clusterRestart(c *cluster, n, queues int) ([]value, error) {
	form, err := c.form()
	if err != nil {
		return nil, fmt.Errorf("formation: %w", err)
	}
	fmt.Fprintf(os.Stderr, "  formed in %.1f s\n", form.Seconds())
	out := []value{{key: "23 formation", name: "cluster: formation, 3 fresh nodes until every node serves clients", metric: "s", v: form.Seconds()}}
	el, err := restartTimeOn(restartTarget{urls: c.urls(), stop: c.stop, start: c.start, prefix: "b23"}, n, queues)
	if err != nil {
		return out, fmt.Errorf("full-cluster restart: %w", err)
	}
	return append(out, value{key: "23 restart", name: fmt.Sprintf("cluster: full restart with %d messages in %d durable queues, until all are back", n, queues), metric: "s", v: el}), nil
}
