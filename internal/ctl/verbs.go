package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warrenmq/warren/internal/config"
)

type verb struct {
	use   string
	short string
	args  cobra.PositionalArgs
	run   func(c *client, args []string) error
	flags func(cmd *cobra.Command)
}

func commands(o *opts) []*cobra.Command {
	var priority int
	var applyTo string
	var joinRAM, forgetOffline bool
	var joinAddr string
	var columnsVerb = func(name, kind string, defaults []string, all []string, fetch func(c *client) ([]map[string]any, error)) verb {
		return verb{use: name + " [column ...]", short: "List " + kind, args: cobra.ArbitraryArgs, run: func(c *client, args []string) error {
			cols := args
			if len(cols) == 0 {
				cols = defaults
			}
			for _, col := range cols {
				if !contains(all, col) {
					return &ExitError{Code: ExitUsage, Msg: fmt.Sprintf("Invalid column: \"%s\". Valid columns: %s", col, strings.Join(all, ", "))}
				}
			}
			items, err := fetch(c)
			if err != nil {
				return err
			}
			o.emptyLine = name == "list_policies" || name == "list_permissions"
			return o.table(cols, items)
		}}
	}
	vh := func() string { return o.vhost }
	verbs := []verb{
		{use: "status", short: "Show the node's status", args: cobra.NoArgs, run: func(c *client, _ []string) error {
			var st map[string]any
			if err := c.call("GET", []string{"warren", "status"}, nil, &st); err != nil {
				return err
			}
			if o.formatter == "json" {
				b, _ := json.Marshal(st)
				fmt.Fprintln(o.out, string(b))
				return nil
			}
			o.info("Status of node %s ...", o.node)
			writeStatus(o, st)
			return nil
		}},
		{use: "ping", short: "Check that the node is up", args: cobra.NoArgs, run: func(c *client, _ []string) error {
			o.info("Will ping %s. This only checks if the OS process is running and registered with epmd. Timeout: %d ms.", o.node, o.timeout.Milliseconds())
			if err := c.call("GET", []string{"overview"}, nil, nil); err != nil {
				return err
			}
			fmt.Fprintln(o.out, "Ping succeeded")
			return nil
		}},
		{use: "await_startup", short: "Wait for the node to start", args: cobra.NoArgs, run: func(c *client, _ []string) error {
			deadline := time.Now().Add(o.timeout)
			for {
				var st map[string]any
				err := c.call("GET", []string{"warren", "status"}, nil, &st)
				if err == nil && len(st["running_applications"].([]any)) > 0 {
					return nil
				}
				if time.Now().After(deadline) {
					if err == nil {
						err = &ExitError{Code: ExitTempFail, Msg: "the node did not start within the timeout"}
					}
					return err
				}
				time.Sleep(200 * time.Millisecond)
			}
		}},
		{use: "stop_app", short: "Stop the AMQP application; the node process stays up", args: cobra.NoArgs, run: func(c *client, _ []string) error {
			o.info("Stopping rabbit application on node %s ...", o.node)
			return c.call("POST", []string{"warren", "stop_app"}, nil, nil)
		}},
		{use: "drain", short: "Put the node in maintenance mode (rabbitmq-upgrade drain): close client connections, refuse new ones", args: cobra.NoArgs, run: func(c *client, _ []string) error {
			o.info("Will put node %s into maintenance mode. The node will no longer serve any client traffic!", o.node)
			return c.call("POST", []string{"warren", "drain"}, nil, nil)
		}},
		{use: "revive", short: "End maintenance mode (rabbitmq-upgrade revive): serve clients again", args: cobra.NoArgs, run: func(c *client, _ []string) error {
			o.info("Will put node %s back into regular operating mode", o.node)
			return c.call("POST", []string{"warren", "revive"}, nil, nil)
		}},
		{use: "start_app", short: "Start the AMQP application", args: cobra.NoArgs, run: func(c *client, _ []string) error {
			o.info("Starting node %s ...", o.node)
			var ans map[string]any
			if err := c.call("POST", []string{"warren", "start_app"}, nil, &ans); err != nil {
				return err
			}
			if ans["restarting"] == true {
				// after join_cluster or reset the node restarts from its
				// data directory (a member waits for a majority)
				return awaitRunning(c, o.timeout)
			}
			return nil
		}},
		{use: "join_cluster <node>", short: "Make this node (application stopped) a member of node's cluster", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			if joinRAM {
				o.info("Warren has one node type: every node keeps the definitions on disk, so --ram is accepted and this node joins as a disc node")
			}
			o.info("Clustering node %s with %s", o.node, a[0])
			var res map[string]any
			if err := c.call("POST", []string{"warren", "join_cluster"}, map[string]any{"node": a[0], "address": joinAddr}, &res); err != nil {
				return err
			}
			o.info("This node's own definitions were exported to %s; they come back when it leaves the cluster with reset", str(res["definitions_export"]))
			return nil
		}, flags: func(cmd *cobra.Command) {
			cmd.Flags().BoolVar(&joinRAM, "ram", false, "accepted for compatibility: Warren has one node type (disc)")
			cmd.Flags().Bool("disc", false, "the default and only node type")
			cmd.Flags().StringVar(&joinAddr, "dist-address", "", "Warren only: the inter-node address (host:port) of <node>, when it is not its host at this node's inter-node port")
		}},
		{use: "reset", short: "Leave the cluster (or, standalone, wipe the node); the application must be stopped", args: cobra.NoArgs, run: func(c *client, _ []string) error {
			o.info("Resetting node %s ...", o.node)
			var res map[string]any
			if err := c.call("POST", []string{"warren", "reset"}, map[string]any{}, &res); err != nil {
				return err
			}
			if r := str(res["restored_definitions"]); r != "" {
				o.info("The definitions this node had before it joined come back from %s on start_app", r)
			}
			return nil
		}},
		{use: "forget_cluster_node <node>", short: "Remove a stopped node from the cluster", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			o.info("Removing node %s from the cluster", a[0])
			var res map[string]any
			if err := c.call("POST", []string{"warren", "forget_cluster_node"}, map[string]any{"node": a[0], "offline": forgetOffline}, &res); err != nil {
				return err
			}
			if forgetOffline {
				o.info("Last resort: on start_app, %s restarts as the only member of a new cluster made of its definitions", o.node)
				if rj, _ := res["must_rejoin"].([]any); len(rj) > 0 {
					for _, n := range rj {
						o.info("  %s must run: warrenctl stop_app; warrenctl reset; warrenctl join_cluster %s; warrenctl start_app", str(n), o.node)
					}
				}
			}
			return nil
		}, flags: func(cmd *cobra.Command) {
			cmd.Flags().BoolVar(&forgetOffline, "offline", false, "last resort for a cluster that lost its majority: with this node's application stopped, make it the only member of a new cluster without the forgotten node (see ADR 0008)")
		}},
		{use: "cluster_status", short: "Show cluster membership", args: cobra.NoArgs, run: func(c *client, _ []string) error {
			var name map[string]string
			if err := c.call("GET", []string{"cluster-name"}, nil, &name); err != nil {
				return err
			}
			var nodes []map[string]any
			if err := c.call("GET", []string{"nodes"}, nil, &nodes); err != nil {
				return err
			}
			// nodes the answering node cannot reach are listed with
			// running false
			var ns, running []string
			for _, n := range nodes {
				ns = append(ns, str(n["name"]))
				if r, ok := n["running"].(bool); !ok || r {
					running = append(running, str(n["name"]))
				}
			}
			if o.formatter == "json" {
				var ov map[string]any
				if err := c.call("GET", []string{"overview"}, nil, &ov); err != nil {
					return err
				}
				return writeClusterStatusJSON(o, name["name"], nodes, running, ov)
			}
			o.info("Cluster status of node %s ...", o.node)
			fmt.Fprintf(o.out, "Basics\n\nCluster name: %s\n\nDisk Nodes\n\n", name["name"])
			for _, n := range nodes {
				fmt.Fprintln(o.out, str(n["name"]))
			}
			fmt.Fprintf(o.out, "\nRunning Nodes\n\n")
			for _, n := range running {
				fmt.Fprintln(o.out, n)
			}
			var ov map[string]any
			if err := c.call("GET", []string{"overview"}, nil, &ov); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "\nVersions\n\n")
			for _, n := range running {
				fmt.Fprintf(o.out, "%s: %s %s on Go %s\n", n, str(ov["product_name"]), str(ov["product_version"]), str(ov["erlang_version"]))
			}
			fmt.Fprintf(o.out, "\nMaintenance status\n\n")
			for _, n := range nodes {
				status := "not under maintenance"
				if d, _ := n["being_drained"].(bool); d {
					status = "marked for maintenance"
				}
				fmt.Fprintf(o.out, "Node: %s, status: %s\n", str(n["name"]), status)
			}
			fmt.Fprintf(o.out, "\nAlarms\n\n")
			alarms := 0
			for _, n := range nodes {
				for k, text := range map[string]string{"mem_alarm": "Memory alarm", "disk_free_alarm": "Free disk space alarm"} {
					if n[k] == true {
						fmt.Fprintf(o.out, "%s on node %s\n", text, str(n["name"]))
						alarms++
					}
				}
			}
			if alarms == 0 {
				fmt.Fprintln(o.out, "(none)")
			}
			fmt.Fprintf(o.out, "\nNetwork Partitions\n\n(none)\n\nListeners\n\n")
			for _, l := range clusterListeners(nodes, ov) {
				proto := str(l["protocol"])
				fmt.Fprintf(o.out, "Node: %s, interface: %s, port: %s, protocol: %s, purpose: %s\n", str(l["node"]), iface(str(l["ip_address"])), str(l["port"]), proto, listenerPurpose(proto))
			}
			return nil
		}},
		{use: "add_user <username> <password>", short: "Create a user", args: cobra.ExactArgs(2), run: func(c *client, a []string) error {
			o.info("Adding user \"%s\" ...", a[0])
			var existing map[string]any
			if err := c.call("GET", []string{"users", a[0]}, nil, &existing); err == nil {
				return &ExitError{Code: ExitSoftware, Msg: fmt.Sprintf("User \"%s\" already exists", a[0])}
			}
			if err := c.call("PUT", []string{"users", a[0]}, map[string]any{"password": a[1], "tags": ""}, nil); err != nil {
				return err
			}
			o.info("Done. Don't forget to grant the user permissions to some virtual hosts! See 'warrenctl help set_permissions' to learn more.")
			return nil
		}},
		{use: "delete_user <username>", short: "Delete a user", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			o.info("Deleting user \"%s\" ...", a[0])
			return noUser(c.call("DELETE", []string{"users", a[0]}, nil, nil), a[0])
		}},
		{use: "change_password <username> <password>", short: "Change a user's password", args: cobra.ExactArgs(2), run: func(c *client, a []string) error {
			o.info("Changing password for user \"%s\" ...", a[0])
			var u map[string]any
			if err := c.call("GET", []string{"users", a[0]}, nil, &u); err != nil {
				return noUser(err, a[0])
			}
			return c.call("PUT", []string{"users", a[0]}, map[string]any{"password": a[1], "tags": u["tags"]}, nil)
		}},
		{use: "authenticate_user <username> <password>", short: "Check a user's credentials", args: cobra.ExactArgs(2), run: func(c *client, a []string) error {
			o.info("Authenticating user \"%s\" ...", a[0])
			err := c.call("POST", []string{"warren", "authenticate_user"}, map[string]string{"username": a[0], "password": a[1]}, nil)
			var ee *ExitError
			if errors.As(err, &ee) && ee.Code == ExitSoftware {
				return &ExitError{Code: ExitDataErr, Msg: fmt.Sprintf("Error: failed to authenticate user \"%s\"\nuser '%s' - invalid credentials", a[0], a[0])}
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(o.out, "Success")
			return nil
		}},
		{use: "set_user_tags <username> [<tag> ...]", short: "Set a user's tags", args: cobra.MinimumNArgs(1), run: func(c *client, a []string) error {
			o.info("Setting tags for user \"%s\" to [%s] ...", a[0], strings.Join(a[1:], ", "))
			var u map[string]any
			if err := c.call("GET", []string{"users", a[0]}, nil, &u); err != nil {
				return noUser(err, a[0])
			}
			return c.call("PUT", []string{"users", a[0]}, map[string]any{"password_hash": u["password_hash"], "hashing_algorithm": u["hashing_algorithm"], "tags": strings.Join(a[1:], ",")}, nil)
		}},
		columnsVerb("list_users", "users", []string{"user", "tags"}, []string{"user", "tags"}, func(c *client) ([]map[string]any, error) {
			o.info("Listing users ...")
			var us []map[string]any
			err := c.call("GET", []string{"users"}, nil, &us)
			for _, u := range us {
				u["user"] = u["name"]
			}
			return us, err
		}),
		{use: "add_vhost <vhost>", short: "Create a virtual host", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			o.info("Adding vhost \"%s\" ...", a[0])
			return c.call("PUT", []string{"vhosts", a[0]}, nil, nil)
		}},
		{use: "delete_vhost <vhost>", short: "Delete a virtual host", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			o.info("Deleting vhost \"%s\" ...", a[0])
			return noVHost(c.call("DELETE", []string{"vhosts", a[0]}, nil, nil), a[0])
		}},
		columnsVerb("list_vhosts", "virtual hosts", []string{"name"}, []string{"name", "tracing", "description", "tags", "messages"}, func(c *client) ([]map[string]any, error) {
			o.info("Listing vhosts ...")
			var vs []map[string]any
			return vs, c.call("GET", []string{"vhosts"}, nil, &vs)
		}),
		{use: "set_permissions [-p <vhost>] <username> <conf> <write> <read>", short: "Set a user's permissions in a vhost", args: cobra.ExactArgs(4), run: func(c *client, a []string) error {
			o.info("Setting permissions for user \"%s\" in vhost \"%s\" ...", a[0], vh())
			err := c.call("PUT", []string{"permissions", vh(), a[0]}, map[string]string{"configure": a[1], "write": a[2], "read": a[3]}, nil)
			if ee, ok := err.(*ExitError); ok && strings.HasPrefix(ee.Msg, "user ") {
				return noUser(err, a[0])
			}
			return notFoundCode(err, ExitUnavailable, "Virtual host %s does not exist", vh())
		}},
		{use: "clear_permissions [-p <vhost>] <username>", short: "Revoke a user's permissions in a vhost", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			o.info("Clearing permissions for user \"%s\" in vhost \"%s\" ...", a[0], vh())
			return c.call("DELETE", []string{"permissions", vh(), a[0]}, nil, nil)
		}},
		columnsVerb("list_permissions", "permissions in a vhost", []string{"user", "configure", "write", "read"}, []string{"user", "configure", "write", "read"}, func(c *client) ([]map[string]any, error) {
			o.info("Listing permissions for vhost \"%s\" ...", vh())
			var ps []map[string]any
			return ps, noVHost(c.call("GET", []string{"vhosts", vh(), "permissions"}, nil, &ps), vh())
		}),
		{use: "list_user_permissions <username>", short: "List a user's permissions", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			o.info("Listing permissions for user \"%s\" ...", a[0])
			var ps []map[string]any
			if err := c.call("GET", []string{"users", a[0], "permissions"}, nil, &ps); err != nil {
				return err
			}
			return o.table([]string{"vhost", "configure", "write", "read"}, ps)
		}},
		{use: "set_policy [-p <vhost>] [--priority <n>] [--apply-to <all|queues|exchanges>] <name> <pattern> <definition>", short: "Set a policy", args: cobra.ExactArgs(3),
			flags: func(cmd *cobra.Command) {
				cmd.Flags().IntVar(&priority, "priority", 0, "policy priority")
				cmd.Flags().StringVar(&applyTo, "apply-to", "all", "what the policy applies to: all, queues or exchanges")
			},
			run: func(c *client, a []string) error {
				var def map[string]any
				if err := json.Unmarshal([]byte(a[2]), &def); err != nil {
					return &ExitError{Code: ExitDataErr, Msg: fmt.Sprintf("could not parse the policy definition %s as a JSON object: %v", a[2], err)}
				}
				o.info("Setting policy \"%s\" for pattern \"%s\" to \"%s\" with priority \"%s\" for vhost \"%s\" ...", a[0], a[1], a[2], strconv.Itoa(priority), vh())
				return c.call("PUT", []string{"policies", vh(), a[0]}, map[string]any{"pattern": a[1], "definition": def, "priority": priority, "apply-to": applyTo}, nil)
			}},
		{use: "clear_policy [-p <vhost>] <name>", short: "Remove a policy", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			o.info("Clearing policy \"%s\" on vhost \"%s\" ...", a[0], vh())
			return notFoundCode(c.call("DELETE", []string{"policies", vh(), a[0]}, nil, nil), ExitUnavailable, "Parameter does not exist")
		}},
		columnsVerb("list_policies", "policies", []string{"vhost", "name", "pattern", "apply-to", "definition", "priority"}, []string{"vhost", "name", "pattern", "apply-to", "definition", "priority"}, func(c *client) ([]map[string]any, error) {
			o.info("Listing policies for vhost \"%s\" ...", vh())
			var ps []map[string]any
			return ps, c.call("GET", []string{"policies", vh()}, nil, &ps)
		}),
		columnsVerb("list_queues", "queues", []string{"name", "messages"}, []string{"name", "durable", "auto_delete", "exclusive", "arguments", "policy", "messages", "messages_ready", "messages_unacknowledged", "consumers", "state", "type", "message_bytes", "memory"}, func(c *client) ([]map[string]any, error) {
			o.info("Timeout: %.1f seconds ...", o.timeout.Seconds())
			o.info("Listing queues for vhost %s ...", vh())
			var qs []map[string]any
			err := listedVHost(c.call("GET", []string{"queues", vh()}, nil, &qs))
			for _, q := range qs {
				q["message_bytes"] = q["message_bytes_ready"]
			}
			return qs, err
		}),
		columnsVerb("list_exchanges", "exchanges", []string{"name", "type"}, []string{"name", "type", "durable", "auto_delete", "internal", "arguments", "policy"}, func(c *client) ([]map[string]any, error) {
			o.info("Listing exchanges for vhost %s ...", vh())
			var xs []map[string]any
			return xs, listedVHost(c.call("GET", []string{"exchanges", vh()}, nil, &xs))
		}),
		columnsVerb("list_bindings", "bindings", []string{"source_name", "source_kind", "destination_name", "destination_kind", "routing_key", "arguments"}, []string{"source_name", "source_kind", "destination_name", "destination_kind", "routing_key", "arguments"}, func(c *client) ([]map[string]any, error) {
			o.info("Listing bindings for vhost %s...", vh())
			var bs []map[string]any
			err := listedVHost(c.call("GET", []string{"bindings", vh()}, nil, &bs))
			for _, b := range bs {
				b["source_name"], b["source_kind"], b["destination_name"], b["destination_kind"] = b["source"], "exchange", b["destination"], b["destination_type"]
			}
			return bs, err
		}),
		columnsVerb("list_connections", "connections", []string{"user", "peer_host", "peer_port", "state"}, []string{"name", "user", "vhost", "peer_host", "peer_port", "host", "port", "state", "channels", "protocol", "recv_oct", "send_oct", "timeout", "frame_max", "channel_max"}, func(c *client) ([]map[string]any, error) {
			o.info("Listing connections ...")
			var cs []map[string]any
			return cs, c.call("GET", []string{"connections"}, nil, &cs)
		}),
		columnsVerb("list_channels", "channels", []string{"pid", "user", "consumer_count", "messages_unacknowledged"}, []string{"pid", "name", "number", "user", "vhost", "consumer_count", "messages_unacknowledged", "prefetch_count", "global_prefetch_count"}, func(c *client) ([]map[string]any, error) {
			o.info("Listing channels ...")
			var cs []map[string]any
			err := c.call("GET", []string{"channels"}, nil, &cs)
			for _, ch := range cs {
				ch["pid"] = ch["name"]
			}
			return cs, err
		}),
		columnsVerb("list_consumers", "consumers", []string{"queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count", "active", "activity_status", "arguments"}, []string{"queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count", "active", "activity_status", "arguments"}, func(c *client) ([]map[string]any, error) {
			o.info("Listing consumers in vhost %s ...", vh())
			var cs []map[string]any
			err := c.call("GET", []string{"consumers", vh()}, nil, &cs)
			for _, x := range cs {
				q, _ := x["queue"].(map[string]any)
				x["queue_name"] = q["name"]
				d, _ := x["channel_details"].(map[string]any)
				x["channel_pid"] = d["name"]
			}
			return cs, err
		}),
		{use: "purge_queue [-p <vhost>] <queue>", short: "Purge a queue", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			o.info("Purging queue '%s' in vhost '%s' ...", a[0], vh())
			return notFoundCode(c.call("DELETE", []string{"queues", vh(), a[0], "contents"}, nil, nil), ExitUnavailable, "not_found")
		}},
		{use: "delete_queue [-p <vhost>] <queue>", short: "Delete a queue", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			o.info("Deleting queue '%s' on vhost '%s' ...", a[0], vh())
			var q map[string]any
			if err := c.call("GET", []string{"queues", vh(), a[0]}, nil, &q); err != nil {
				return notFoundCode(err, ExitUsage, "Queue not found")
			}
			if err := c.call("DELETE", []string{"queues", vh(), a[0]}, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "Queue was successfully deleted with %s ready messages\n", str(q["messages_ready"]))
			return nil
		}},
		{use: "close_connection <connection name> <explanation>", short: "Close a client connection", args: cobra.ExactArgs(2), run: func(c *client, a []string) error {
			o.info("Closing connection \"%s\", reason: %s...", a[0], a[1])
			return c.call("DELETE", []string{"connections", a[0]}, nil, nil)
		}},
		{use: "export_definitions <file|->", short: "Export definitions as JSON", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			var d json.RawMessage
			if err := c.call("GET", []string{"definitions"}, nil, &d); err != nil {
				return err
			}
			if a[0] == "-" {
				fmt.Fprintln(o.out, string(d))
				return nil
			}
			o.info("Exporting definitions in JSON to a file at \"%s\" ...", a[0])
			return os.WriteFile(a[0], append(d, '\n'), 0o600)
		}},
		{use: "import_definitions <file>", short: "Import definitions from JSON", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			o.info("Importing definitions in JSON from a file at \"%s\" ...", a[0])
			raw, err := os.ReadFile(a[0])
			if err != nil {
				return &ExitError{Code: ExitDataErr, Msg: err.Error()}
			}
			var d any
			if err := json.Unmarshal(raw, &d); err != nil {
				return &ExitError{Code: ExitDataErr, Msg: fmt.Sprintf("%s is not valid JSON: %v", a[0], err)}
			}
			if err := c.call("POST", []string{"definitions"}, d, nil); err != nil {
				return err
			}
			o.info("Successfully started definition import. This process is asynchronous and can take some time.")
			return nil
		}},
		{use: "set_vm_memory_high_watermark <fraction>", short: "Set the memory high watermark", args: cobra.ExactArgs(1), run: func(c *client, a []string) error {
			f, err := strconv.ParseFloat(a[0], 64)
			if err != nil || f < 0 || f > 1 {
				return &ExitError{Code: ExitUsage, Msg: "the watermark must be a fraction between 0 and 1"}
			}
			o.info("Setting memory threshold on %s to %s ...", o.node, a[0])
			return c.call("PUT", []string{"warren", "vm_memory_high_watermark"}, map[string]float64{"fraction": f}, nil)
		}},
		{use: "set_disk_free_limit <limit> | mem_relative <fraction>", short: "Set the free disk space limit (bytes, or 2GB, 500MB, ...; or relative to total memory)", args: cobra.RangeArgs(1, 2), run: func(c *client, a []string) error {
			body := map[string]any{}
			switch {
			case len(a) == 2 && a[0] == "mem_relative":
				f, err := strconv.ParseFloat(a[1], 64)
				if err != nil || f <= 0 {
					return &ExitError{Code: ExitUsage, Msg: "mem_relative takes a positive fraction, e.g. 1.5"}
				}
				body["mem_relative"] = f
			case len(a) == 1:
				n, err := config.ParseSize(a[0])
				if err != nil || n < 0 {
					return &ExitError{Code: ExitUsage, Msg: fmt.Sprintf("cannot read %q as a size: use bytes or a unit (50000000, 500MB, 2GB)", a[0])}
				}
				body["bytes"] = n
			default:
				return &ExitError{Code: ExitUsage, Msg: "usage: set_disk_free_limit <limit> | set_disk_free_limit mem_relative <fraction>"}
			}
			o.info("Setting disk free limit on %s to %s ...", o.node, strings.Join(a, " "))
			return c.call("PUT", []string{"warren", "disk_free_limit"}, body, nil)
		}},
		{use: "environment", short: "Show the node's effective configuration", args: cobra.NoArgs, run: func(c *client, _ []string) error {
			var env map[string]any
			if err := c.call("GET", []string{"warren", "environment"}, nil, &env); err != nil {
				return err
			}
			o.info("Application environment of node %s ...", o.node)
			b, _ := json.MarshalIndent(env, "", "  ")
			fmt.Fprintln(o.out, string(b))
			return nil
		}},
	}
	var out []*cobra.Command
	for _, v := range verbs {
		v := v
		cmd := &cobra.Command{Use: v.use, Short: v.short, Args: v.args, RunE: func(_ *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			return v.run(c, args)
		}}
		if v.flags != nil {
			v.flags(cmd)
		}
		out = append(out, cmd)
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, e := range xs {
		if e == x {
			return true
		}
	}
	return false
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

func notFound(err error, format string, a ...any) error {
	return notFoundCode(err, ExitDataErr, format, a...)
}

// notFoundCode turns the API's "not found" into rabbitmqctl's message
// and exit code for the verb.
func notFoundCode(err error, code int, format string, a ...any) error {
	if ee, ok := err.(*ExitError); ok && ee.Code == ExitDataErr {
		return &ExitError{Code: code, Msg: fmt.Sprintf(format, a...)}
	}
	return err
}

// listedVHost makes listing a vhost that does not exist list nothing,
// successfully, as rabbitmqctl does (the API answers 404).
func listedVHost(err error) error {
	if ee, ok := err.(*ExitError); ok && ee.Code == ExitDataErr {
		return nil
	}
	return err
}

// noUser is rabbitmqctl's answer for a user that does not exist (exit 67).
func noUser(err error, name string) error {
	return notFoundCode(err, ExitNoUser, "User \"%s\" does not exist", name)
}

// noVHost is rabbitmqctl's answer for a vhost that does not exist.
func noVHost(err error, name string) error {
	if ee, ok := err.(*ExitError); ok && ee.Code == ExitDataErr {
		return &ExitError{Code: ExitDataErr, Msg: fmt.Sprintf("Virtual host '%s' does not exist", name), Bare: true}
	}
	return err
}
