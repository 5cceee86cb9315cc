package ctl

import (
	"encoding/json"
	"fmt"
	"net"
	"runtime"
	"sort"
	"strings"
	"time"
)

// writeClusterStatusJSON prints cluster_status --formatter json with
// rabbitmqctl 3.10's keys (feature_flags left out: Warren has none).
func writeClusterStatusJSON(o *opts, clusterName string, nodes []map[string]any, running []string, ov map[string]any) error {
	disk := []string{}
	alarms := []map[string]any{}
	maint := map[string]string{}
	versions := map[string]map[string]string{}
	for _, n := range nodes {
		name := str(n["name"])
		disk = append(disk, name)
		maint[name] = "not under maintenance"
		if d, _ := n["being_drained"].(bool); d {
			maint[name] = "marked for maintenance"
		}
		for k, typ := range map[string]string{"mem_alarm": "memory", "disk_free_alarm": "free_disk_space"} {
			if n[k] == true {
				alarms = append(alarms, map[string]any{"node": name, "type": "resource_alarm", "resource": typ})
			}
		}
	}
	sort.Strings(disk)
	goVersion := strings.TrimPrefix(runtime.Version(), "go")
	if v := str(ov["erlang_version"]); v != "" {
		goVersion = v
	}
	for _, n := range running {
		versions[n] = map[string]string{"rabbitmq_name": str(ov["product_name"]), "rabbitmq_version": str(ov["product_version"]), "erlang_version": goVersion}
	}
	listeners := map[string][]map[string]any{}
	for _, l := range clusterListeners(nodes, ov) {
		node := str(l["node"])
		proto := str(l["protocol"])
		listeners[node] = append(listeners[node], map[string]any{"node": node, "interface": iface(str(l["ip_address"])), "port": l["port"], "protocol": proto, "purpose": listenerPurpose(proto)})
	}
	if running == nil {
		running = []string{}
	}
	b, err := json.Marshal(map[string]any{
		"cluster_name":       clusterName,
		"disk_nodes":         disk,
		"ram_nodes":          []string{},
		"running_nodes":      running,
		"versions":           versions,
		"maintenance_status": maint,
		"alarms":             alarms,
		"partitions":         map[string]any{},
		"listeners":          listeners,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(o.out, string(b))
	return nil
}

// clusterListeners is the answering node's listeners and the other
// members' inter-node ports (their other listeners are not gathered
// across nodes yet), grouped by node in the members' order.
func clusterListeners(nodes []map[string]any, ov map[string]any) []map[string]any {
	ls, _ := ov["listeners"].([]any)
	self := str(ov["node"])
	byNode := map[string][]map[string]any{}
	for _, l := range sortedListeners(ls) {
		byNode[str(l["node"])] = append(byNode[str(l["node"])], l)
	}
	order := []string{self}
	for _, n := range nodes {
		name := str(n["name"])
		if name == self {
			continue
		}
		order = append(order, name)
		if a := str(n["cluster_links_address"]); a != "" {
			host, port, err := net.SplitHostPort(a)
			if err == nil {
				byNode[name] = append(byNode[name], map[string]any{"node": name, "protocol": "clustering", "ip_address": host, "port": port})
			}
		}
	}
	sort.Strings(order[1:])
	var out []map[string]any
	for _, n := range order {
		out = append(out, byNode[n]...)
	}
	return out
}

// awaitRunning waits for a node that restarts (after join_cluster or
// reset) to run its application again.
func awaitRunning(c *client, timeout time.Duration) error {
	if timeout < 2*time.Minute {
		timeout = 2 * time.Minute // a member waits for a majority at start
	}
	deadline := time.Now().Add(timeout)
	for {
		var st map[string]any
		err := c.call("GET", []string{"warren", "status"}, nil, &st)
		if err == nil {
			if apps, _ := st["running_applications"].([]any); len(apps) > 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = &ExitError{Code: ExitTempFail, Msg: "the node did not come back within the timeout after its restart: check its log"}
			}
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}
