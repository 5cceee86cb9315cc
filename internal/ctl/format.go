package ctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Output as rabbitmqctl 3.10 writes it.
//
// Table cells: booleans true/false, numbers as integers where whole,
// tags [a, b], arguments [{"x-max-length",3},{"x-queue-mode","lazy"}]
// (an Erlang list of pairs; [] when empty), policy definitions as JSON,
// nothing for null.
//
// --formatter json: "[\n{...}\n,{...}\n]\n", each object's keys in the
// order of the columns asked for, numbers and booleans as JSON numbers
// and booleans, tags as a list, arguments as [[key, type, value], ...]
// with the AMQP field type, definitions as a string holding JSON, and ""
// for null.

// cell renders one table cell of column col.
func cell(col string, v any) string {
	switch col {
	case "arguments":
		return argsCell(v)
	case "definition":
		return compactJSON(v)
	}
	return str(v)
}

func argsCell(v any) string {
	m, _ := v.(map[string]any)
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, "{"+erlString(k)+","+erlTerm(m[k])+"}")
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func erlString(s string) string { return strconv.Quote(s) }

func erlTerm(v any) string {
	switch x := v.(type) {
	case string:
		return erlString(x)
	case map[string]any:
		return argsCell(x)
	case []any:
		var p []string
		for _, e := range x {
			p = append(p, erlTerm(e))
		}
		return "[" + strings.Join(p, ",") + "]"
	}
	return str(v)
}

// compactJSON is v as JSON without HTML escaping; a string is taken as
// JSON already (a definition is stored as a JSON string or object).
func compactJSON(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return jsonText(v)
}

func jsonText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSpace(b.String())
}

// jsonCell renders column col's value for --formatter json.
func jsonCell(col string, v any) any {
	switch col {
	case "arguments":
		m, _ := v.(map[string]any)
		out := []any{}
		for _, k := range sortedKeys(m) {
			out = append(out, []any{k, amqpType(m[k]), m[k]})
		}
		return out
	case "definition":
		return compactJSON(v)
	case "tags":
		switch t := v.(type) {
		case []any:
			return t
		case string:
			if t == "" {
				return []any{}
			}
			return strings.Split(t, ",")
		}
	}
	if v == nil {
		return ""
	}
	if f, ok := v.(float64); ok && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int64(f)
	}
	return v
}

// amqpType names the AMQP field type of a JSON value as rabbitmqctl does.
func amqpType(v any) string {
	switch x := v.(type) {
	case string:
		return "longstr"
	case bool:
		return "bool"
	case float64:
		if x == math.Trunc(x) {
			return "long"
		}
		return "double"
	case map[string]any:
		return "table"
	case []any:
		return "array"
	case nil:
		return "void"
	}
	return "longstr"
}

// writeJSONRows writes rows as rabbitmqctl's JSON formatter does.
func writeJSONRows(w *bytes.Buffer, cols []string, rows []map[string]any) {
	w.WriteString("[\n")
	for i, r := range rows {
		if i > 0 {
			w.WriteString(",")
		}
		w.WriteString("{")
		for j, c := range cols {
			if j > 0 {
				w.WriteString(",")
			}
			k, _ := json.Marshal(c)
			w.Write(k)
			w.WriteString(":")
			w.WriteString(jsonText(jsonCell(c, r[c])))
		}
		w.WriteString("}\n")
	}
	w.WriteString("]\n")
}

// gb formats bytes as rabbitmqctl's status does ("0.1478 gb").
func gb(bytes float64) string {
	return strconv.FormatFloat(math.Round(bytes/1e9*1e4)/1e4, 'f', -1, 64) + " gb"
}

// iface shows a listener's address as rabbitmqctl does: [::] for all
// interfaces, IPv6 addresses in brackets.
func iface(ip string) string {
	if ip == "" || ip == "0.0.0.0" {
		ip = "::"
	}
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
}

// listenerPurpose is rabbitmqctl's purpose text for a protocol.
func listenerPurpose(proto string) string {
	switch proto {
	case "amqp":
		return "AMQP 0-9-1"
	case "http":
		return "HTTP API"
	case "http/prometheus":
		return "Prometheus exporter API over HTTP"
	case "clustering":
		return "inter-node and CLI tool communication"
	}
	return proto
}

func sortedListeners(ls []any) []map[string]any {
	var out []map[string]any
	for _, l := range ls {
		if m, ok := l.(map[string]any); ok {
			out = append(out, m)
		}
	}
	// rabbitmqctl 3.10 lists http, clustering, then amqp: by protocol,
	// descending, then by port
	sort.SliceStable(out, func(i, j int) bool {
		pi, pj := str(out[i]["protocol"]), str(out[j]["protocol"])
		if pi != pj {
			return pi > pj
		}
		return fmt.Sprint(out[i]["port"]) < fmt.Sprint(out[j]["port"])
	})
	return out
}

// writeStatus prints status in rabbitmqctl 3.10's sections. Where Warren
// has no counterpart (Erlang, plugins, feature flags) the line or section
// is Warren's own or left out.
func writeStatus(o *opts, st map[string]any) {
	w := o.out
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	list := func(v any) {
		xs, _ := v.([]any)
		for _, x := range xs {
			p(" * %s", str(x))
		}
	}
	p("Runtime\n")
	p("OS PID: %s", str(st["os_pid"]))
	p("OS: %s", str(st["os"]))
	p("Uptime (seconds): %d", int64(num(st["uptime"]))/1000)
	p("Is under maintenance?: false")
	p("Product name: Warren")
	p("Product version: %s", str(st["version"]))
	p("RabbitMQ version: %s", str(st["rabbitmq_version"]))
	p("Node name: %s", str(st["name"]))
	p("Go runtime: %s", str(st["go_version"]))
	p("Goroutines: %s used, %s limit", str(st["proc_used"]), str(st["proc_total"]))
	p("Scheduler run queue: %s", str(st["run_queue"]))
	p("Running applications: %s", str(st["running_applications"]))
	p("\nData directory\n")
	p("Node data directory: %s", str(st["data_directory"]))
	p("\nConfig files\n")
	list(st["config_files"])
	p("\nLog file(s)\n")
	list(st["log_files"])
	p("\nAlarms\n")
	alarms, _ := st["alarms"].([]any)
	if len(alarms) == 0 {
		p("(none)")
	}
	for _, a := range alarms {
		switch str(a) {
		case "disk":
			p("Free disk space alarm on node %s", str(st["name"]))
		case "memory":
			p("Memory alarm on node %s", str(st["name"]))
		default:
			p("%s alarm on node %s", str(a), str(st["name"]))
		}
	}
	p("\nMemory\n")
	p("Total memory used: %s", gb(num(st["mem_used"])))
	p("Calculation strategy: rss")
	if abs := num(st["vm_memory_high_watermark_absolute"]); abs > 0 {
		p("Memory high watermark setting: %s, computed to: %s", gb(abs), gb(num(st["mem_limit"])))
	} else {
		p("Memory high watermark setting: %s of available memory, computed to: %s", str(st["vm_memory_high_watermark"]), gb(num(st["mem_limit"])))
	}
	p("\nFile Descriptors\n")
	p("Total: %s, limit: %s", str(st["fd_used"]), str(st["fd_total"]))
	p("Sockets: %s, limit: %s", str(st["sockets_used"]), str(st["sockets_total"]))
	p("\nFree Disk Space\n")
	p("Low free disk space watermark: %s", gb(num(st["disk_free_limit"])))
	p("Free disk space: %s", gb(num(st["disk_free"])))
	p("\nTotals\n")
	p("Connection count: %s", str(st["connection_count"]))
	p("Queue count: %s", str(st["queue_count"]))
	p("Virtual host count: %s", str(st["virtual_host_count"]))
	p("\nListeners\n")
	ls, _ := st["listeners"].([]any)
	for _, l := range sortedListeners(ls) {
		proto := str(l["protocol"])
		p("Interface: %s, port: %s, protocol: %s, purpose: %s", iface(str(l["ip_address"])), str(l["port"]), proto, listenerPurpose(proto))
	}
}
