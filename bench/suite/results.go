package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/warrenmq/warren/internal/perf"
)

// row is one line of the tables: a figure of one scenario in one mode.
type row struct {
	Key    string `json:"key"`
	ID     int    `json:"id"`
	Mode   string `json:"mode"`
	Name   string `json:"name"`
	Metric string `json:"metric"`
	Higher bool   `json:"higher_is_better"`
	// Base: a row measured on RabbitMQ only (a queue variant) is compared
	// with this row's Warren figure.
	Base string `json:"base,omitempty"`
}

type resultSet struct {
	brokers []*broker
	rows    []*row
	byKey   map[string]*row
	vals    map[string]map[string][]float64 // broker → row key → one value per round
	cpuRows []string
	cpuPerM map[string]map[string][]float64 // broker → run key → broker CPU s per million delivered
	client  map[string]map[string][]float64 // broker → run key → client CPU µs per message
	fails   map[string]map[string][]string  // broker → "id mode" → errors
	ceiling []ceilingRow
	// clusters: the 3-node clusters of scenarios 21-23, for the results
	clusters []*cluster
}

// ceilingRow is the load generator alone: one publisher, 16 B, into a
// null sink (a stand-in server in another process that discards).
type ceilingRow struct {
	Client          string  `json:"client"`
	ConfirmWindow   int     `json:"confirm_window"`
	Rate            float64 `json:"msg_per_s"`
	CPUMicrosPerMsg float64 `json:"client_cpu_us_per_message"`
}

// clientCeiling measures each publisher the modes use against a null
// sink, so a reader can see how much of a figure is the client.
func (rs *resultSet) clientCeiling(modes []mode) {
	uri, stop, err := perf.StartNullSinkProcess()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: null sink: %v (the client's own cost is not measured)\n", err)
		return
	}
	defer stop()
	clients := []bool{false}
	for _, m := range modes {
		if m.raw {
			clients = append(clients, true)
			break
		}
	}
	for _, raw := range clients {
		for _, window := range []int{0, 1000} {
			r, err := perf.Run(context.Background(), perf.Config{URIs: []string{uri}, Producers: 1, Size: 16, ConfirmWindow: window, Raw: raw,
				Predeclared: true, Duration: min(*duration, 5*time.Second)}, io.Discard)
			if err == nil {
				err = r.Verify()
			}
			name := map[bool]string{false: "amqp091-go", true: "raw frames, 64 per write"}[raw]
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: null sink, %s: %v\n", name, err)
				continue
			}
			c := ceilingRow{name, window, r.SendRate, float64(r.ClientCPUPerMessage.Nanoseconds()) / 1000}
			fmt.Fprintf(os.Stderr, "load generator alone (%s, confirms %d, 16 B, null sink): %.0f msg/s, %.2f µs CPU per message\n", name, window, c.Rate, c.CPUMicrosPerMsg)
			rs.ceiling = append(rs.ceiling, c)
		}
	}
}

var results *resultSet

func newResults(brokers []*broker) *resultSet {
	results = &resultSet{brokers: brokers, byKey: map[string]*row{}, vals: map[string]map[string][]float64{},
		cpuPerM: map[string]map[string][]float64{}, client: map[string]map[string][]float64{}, fails: map[string]map[string][]string{}}
	for _, b := range brokers {
		results.vals[b.name] = map[string][]float64{}
		results.cpuPerM[b.name] = map[string][]float64{}
		results.client[b.name] = map[string][]float64{}
		results.fails[b.name] = map[string][]string{}
	}
	return results
}

func rowKey(key string, m mode) string {
	if m.name == "plain" {
		return key
	}
	return key + " [" + m.name + "]"
}

func failKey(id int, m string) string { return fmt.Sprintf("%d %s", id, m) }

func (rs *resultSet) row(k string, id int, m string, name, metric string, higher bool, base string) *row {
	r := rs.byKey[k]
	if r == nil {
		r = &row{Key: k, ID: id, Mode: m, Name: name, Metric: metric, Higher: higher, Base: base}
		rs.byKey[k] = r
		rs.rows = append(rs.rows, r)
	}
	return r
}

func (rs *resultSet) add(broker string, id int, m mode, v value) {
	base := ""
	if v.base != "" {
		base = rowKey(v.base, m)
	}
	k := rowKey(v.key, m)
	rs.row(k, id, m.name, v.name, v.metric, v.higher, base)
	rs.vals[broker][k] = append(rs.vals[broker][k], v.v)
}

func (rs *resultSet) fail(broker string, s scenario, m string, err error) {
	has := false
	for _, r := range rs.rows {
		has = has || (r.ID == s.id && r.Mode == m)
	}
	if !has {
		rs.row(rowKey(strconv.Itoa(s.id), mode{name: m}), s.id, m, s.name, "", true, "")
	}
	rs.fails[broker][failKey(s.id, m)] = append(rs.fails[broker][failKey(s.id, m)], err.Error())
}

func (rs *resultSet) cpu(broker, key string, perMillion, clientMicros float64) {
	if _, ok := rs.cpuPerM[broker][key]; !ok {
		seen := false
		for _, k := range rs.cpuRows {
			seen = seen || k == key
		}
		if !seen {
			rs.cpuRows = append(rs.cpuRows, key)
		}
	}
	rs.cpuPerM[broker][key] = append(rs.cpuPerM[broker][key], perMillion)
	rs.client[broker][key] = append(rs.client[broker][key], clientMicros)
}

func (rs *resultSet) failed() bool {
	for _, f := range rs.fails {
		if len(f) > 0 {
			return true
		}
	}
	return false
}

// median is the row's median for broker; for a RabbitMQ-only variant
// row, Warren's figure is its base row's. ok is false when the broker
// failed the scenario in any round or has no figure.
func (rs *resultSet) median(r *row, broker string) (float64, bool) {
	if len(rs.fails[broker][failKey(r.ID, r.Mode)]) > 0 {
		return 0, false
	}
	k := r.Key
	if r.Base != "" && len(rs.vals[broker][k]) == 0 {
		k = r.Base
	}
	v := rs.vals[broker][k]
	if len(v) == 0 {
		return 0, false
	}
	return perf.Median(v), true
}

// ratio is Warren's advantage over other on row r (higher is better for
// Warren, also for lower-is-better metrics where it is other/Warren).
func (rs *resultSet) ratio(r *row, other string) (float64, bool) {
	w, ok1 := rs.median(r, "Warren")
	o, ok2 := rs.median(r, other)
	if !ok1 || !ok2 || w <= 0 || o <= 0 {
		return 0, false
	}
	if r.Higher {
		return w / o, true
	}
	return o / w, true
}

func (rs *resultSet) others() []string {
	var out []string
	for _, b := range rs.brokers {
		if b.kind != "Warren" {
			out = append(out, b.name)
		}
	}
	return out
}

func (rs *resultSet) cell(r *row, broker string) string {
	if len(rs.fails[broker][failKey(r.ID, r.Mode)]) > 0 {
		return "FAILED"
	}
	v, ok := rs.median(r, broker)
	if !ok {
		return "-"
	}
	return fmtNum(v)
}

func fmtNum(v float64) string {
	switch {
	case v >= 1000:
		s := strconv.FormatFloat(v, 'f', 0, 64)
		for i := len(s) - 3; i > 0; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func (rs *resultSet) print(machine map[string]string, modes []mode) {
	fmt.Printf("\nWarren vs RabbitMQ on %s: %s, %s CPUs, kernel %s, %s; Go %s, Erlang/OTP %s, RabbitMQ %s\n",
		machine["hostname"], machine["cpu_model"], machine["cpus"], machine["kernel"], machine["os"], machine["go"], machine["erlang_otp"], machine["rabbitmq_package"])
	fmt.Printf("%s, %d round(s), medians; both brokers log at %q; load average before the run: %s\n", machine["date"], *rounds, *logLevel, machine["loadavg_start"])
	for _, b := range rs.brokers {
		if b.kind == "RabbitMQ" {
			fmt.Printf("%s: Erlang args %q (schedulers online %s), config %q, no plugins, open files %s\n", b.name,
				b.info["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"], b.info["schedulers_online"], strings.TrimSpace(strings.ReplaceAll(b.info["rabbitmq.conf"], "\n", "; ")), b.info["open_files_limit"])
		}
	}
	others := rs.others()
	for _, m := range modes {
		var rows []*row
		for _, r := range rs.rows {
			if r.Mode == m.name {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Printf("\nMode %s: %s\n\n| # | scenario | metric |", m.name, m.label)
		for _, b := range rs.brokers {
			fmt.Printf(" %s |", b.name)
		}
		for _, o := range others {
			fmt.Printf(" Warren vs %s |", o)
		}
		fmt.Printf("\n|%s\n", strings.Repeat("---|", 3+len(rs.brokers)+len(others)))
		for _, r := range rows {
			fmt.Printf("| %s | %s | %s |", strings.TrimSuffix(r.Key, " ["+r.Mode+"]"), r.Name, r.Metric)
			for _, b := range rs.brokers {
				fmt.Printf(" %s |", rs.cell(r, b.name))
			}
			for _, o := range others {
				if x, ok := rs.ratio(r, o); ok {
					fmt.Printf(" %.2fx |", x)
				} else {
					fmt.Printf(" n/a |")
				}
			}
			fmt.Println()
		}
	}
	if len(rs.ceiling) > 0 {
		fmt.Printf("\nThe load generator alone: 1 publisher, 16 B, into a null sink (another process that reads and discards, confirming)\n\n| publisher | confirm window | msg/s | client CPU µs per message |\n|---|---|---|---|\n")
		for _, c := range rs.ceiling {
			fmt.Printf("| %s | %d | %s | %.2f |\n", c.Client, c.ConfirmWindow, fmtNum(c.Rate), c.CPUMicrosPerMsg)
		}
	}
	if len(rs.cpuRows) > 0 {
		fmt.Printf("\nBroker CPU seconds per million messages delivered, and the load generator's CPU µs per message sent or received (medians; lower is better)\n\n| run |")
		for _, b := range rs.brokers {
			fmt.Printf(" %s CPU s/M |", b.name)
		}
		for _, o := range others {
			fmt.Printf(" %s / Warren |", o)
		}
		for _, b := range rs.brokers {
			fmt.Printf(" client µs/msg (%s run) |", b.name)
		}
		fmt.Printf("\n|%s\n", strings.Repeat("---|", 1+2*len(rs.brokers)+len(others)))
		for _, k := range rs.cpuRows {
			fmt.Printf("| %s |", k)
			for _, b := range rs.brokers {
				fmt.Printf(" %s |", medianCell(rs.cpuPerM[b.name][k]))
			}
			for _, o := range others {
				w, r := perf.Median(rs.cpuPerM["Warren"][k]), perf.Median(rs.cpuPerM[o][k])
				if w > 0 && r > 0 {
					fmt.Printf(" %.2fx |", r/w)
				} else {
					fmt.Printf(" n/a |")
				}
			}
			for _, b := range rs.brokers {
				fmt.Printf(" %s |", medianCell(rs.client[b.name][k]))
			}
			fmt.Println()
		}
	}
	if rs.failed() {
		fmt.Printf("\nFAILED runs (no ratio is printed for them):\n")
		for _, b := range rs.brokers {
			keys := make([]string, 0, len(rs.fails[b.name]))
			for k := range rs.fails[b.name] {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				for _, e := range rs.fails[b.name][k] {
					fmt.Printf("- %s, scenario %s: %s\n", b.name, k, e)
				}
			}
		}
	}
}

func medianCell(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmtNum(perf.Median(v))
}

// save writes everything print shows, and the values of every round, to
// the results directory.
func (rs *resultSet) save(machine map[string]string, modes []mode) {
	type jsonRow struct {
		row
		Values  map[string][]float64 `json:"values"`
		Medians map[string]float64   `json:"medians"`
		Ratios  map[string]float64   `json:"warren_advantage"`
		Failed  map[string][]string  `json:"failed,omitempty"`
	}
	type jsonCPU struct {
		Run                 string               `json:"run"`
		BrokerCPUPerMillion map[string][]float64 `json:"broker_cpu_seconds_per_million_delivered"`
		BrokerCPUMedian     map[string]float64   `json:"broker_cpu_seconds_per_million_median"`
		ClientMicros        map[string][]float64 `json:"client_cpu_us_per_message"`
		ClientMicrosMedian  map[string]float64   `json:"client_cpu_us_per_message_median"`
	}
	var rows []jsonRow
	for _, r := range rs.rows {
		j := jsonRow{row: *r, Values: map[string][]float64{}, Medians: map[string]float64{}, Ratios: map[string]float64{}, Failed: map[string][]string{}}
		for _, b := range rs.brokers {
			if v := rs.vals[b.name][r.Key]; len(v) > 0 {
				j.Values[b.name] = v
			}
			if m, ok := rs.median(r, b.name); ok {
				j.Medians[b.name] = m
			}
			if f := rs.fails[b.name][failKey(r.ID, r.Mode)]; len(f) > 0 {
				j.Failed[b.name] = f
			}
		}
		for _, o := range rs.others() {
			if x, ok := rs.ratio(r, o); ok {
				j.Ratios["Warren vs "+o] = x
			}
		}
		rows = append(rows, j)
	}
	var cpus []jsonCPU
	for _, k := range rs.cpuRows {
		c := jsonCPU{Run: k, BrokerCPUPerMillion: map[string][]float64{}, BrokerCPUMedian: map[string]float64{}, ClientMicros: map[string][]float64{}, ClientMicrosMedian: map[string]float64{}}
		for _, b := range rs.brokers {
			if v := rs.cpuPerM[b.name][k]; len(v) > 0 {
				c.BrokerCPUPerMillion[b.name], c.BrokerCPUMedian[b.name] = v, perf.Median(v)
			}
			if v := rs.client[b.name][k]; len(v) > 0 {
				c.ClientMicros[b.name], c.ClientMicrosMedian[b.name] = v, perf.Median(v)
			}
		}
		cpus = append(cpus, c)
	}
	type jsonBroker struct {
		Name string            `json:"name"`
		Kind string            `json:"kind"`
		Info map[string]string `json:"settings"`
	}
	var bs []jsonBroker
	for _, b := range rs.brokers {
		bs = append(bs, jsonBroker{b.name, b.kind, b.info})
	}
	type jsonCluster struct {
		Name  string              `json:"name"`
		Kind  string              `json:"kind"`
		Info  map[string]string   `json:"settings"`
		Nodes []map[string]string `json:"nodes"`
	}
	var cs []jsonCluster
	for _, c := range rs.clusters {
		j := jsonCluster{Name: c.name, Kind: c.kind, Info: c.info}
		for _, n := range c.nodes {
			info := map[string]string{"url": n.url}
			for k, v := range n.info {
				info[k] = v
			}
			j.Nodes = append(j.Nodes, info)
		}
		cs = append(cs, j)
	}
	var ms []map[string]any
	for _, m := range modes {
		ms = append(ms, map[string]any{"name": m.name, "raw_publisher": m.raw, "pinned": m.pinned, "description": m.label})
	}
	settings := map[string]any{"rounds": *rounds, "duration": duration.String(), "quick": *quick, "only": *only, "log_level": *logLevel,
		"backlog_messages": *backlogN, "restart_messages": *restartN, "restart_queues": *restartQueues,
		"many_connections": *manyConns, "many_rate_per_connection": *manyRate, "raw_batch": 64,
		"cluster": *clusterOn, "cluster_declares": *clusterDeclareN, "cluster_restart_messages": *clusterRestartN, "cluster_restart_queues": *clusterRestartQ,
		"pinning": "taskset -a -p on the running processes: broker on CPU 0, load generator (this process) on CPU 1; GOMAXPROCS and Erlang schedulers as started",
		"command": strings.Join(os.Args, " ")}
	failures := map[string]map[string][]string{}
	for b, f := range rs.fails {
		if len(f) > 0 {
			failures[b] = f
		}
	}
	out := map[string]any{"date": time.Now().Format(time.RFC3339), "machine": machine, "settings": settings, "modes": ms,
		"brokers": bs, "clusters": cs, "client_null_sink": rs.ceiling, "results": rows, "cpu": cpus, "failures": failures, "passed": !rs.failed()}
	os.MkdirAll(*outDir, 0o755)
	b, _ := json.MarshalIndent(out, "", "  ")
	p := filepath.Join(*outDir, time.Now().Format("2006-01-02T150405")+".json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "bench: writing the results: %v\n", err)
		return
	}
	fmt.Fprintf(os.Stderr, "results written to %s\n", p)
}

// machineInfo records what a reader needs to tell a slow machine from a
// slow broker.
func machineInfo(brokers []*broker) map[string]string {
	m := map[string]string{"cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version(), "date": time.Now().UTC().Format(time.RFC3339),
		"goos_goarch": runtime.GOOS + "/" + runtime.GOARCH}
	m["hostname"], _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu_model"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m["os"] = strings.Trim(v, "\"")
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if l, _, ok := strings.Cut(string(b), "\n"); ok {
			m["memory"] = strings.Join(strings.Fields(l)[1:], " ")
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["loadavg_start"] = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if out, err := exec.Command("erl", "-noshell", "-eval", `io:format("~s", [erlang:system_info(otp_release)]), halt().`).Output(); err == nil {
		m["erlang_otp"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "rabbitmq-server").Output(); err == nil {
		m["rabbitmq_package"] = strings.TrimSpace(string(out))
	}
	for _, b := range brokers {
		if b.kind == "RabbitMQ" && b.info["erlang_system_version"] != "" {
			m["erlang_system_version"] = b.info["erlang_system_version"]
		}
	}
	if out, err := exec.Command("cat", "/sys/fs/cgroup/cpu.max").Output(); err == nil {
		m["cgroup_cpu_max"] = strings.TrimSpace(string(out))
	}
	return m
}
