package mgmt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/node"
)

func start(t testing.TB) (*node.Node, string) {
	t.Helper()
	return startWith(t, nil)
}

// startWith starts a node with test ports, after edit changes its config.
func startWith(t testing.TB, edit func(*config.Config)) (*node.Node, string) {
	t.Helper()
	cfg := config.Default()
	cfg.AMQPListeners = []string{"127.0.0.1:0"}
	cfg.ManagementPort, cfg.PrometheusPort, cfg.ControlPort = -1, -1, -1
	cfg.DataDir = t.TempDir()
	if edit != nil {
		edit(&cfg)
	}
	t.Setenv("WARREN_COOKIE_FILE", cfg.DataDir+"/cookie")
	n, err := node.Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Stop(ctx)
	})
	return n, "http://" + n.Addr("management").String()
}

type resp struct {
	status int
	body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("%v in %s", err, r.body)
	}
}

func call(t *testing.T, method, url, user, pass string, body any) resp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	req.Header.Set("Content-Type", "application/json")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, b}
}

func want(t *testing.T, r resp, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}

func TestOverviewAndAuth(t *testing.T) {
	_, base := start(t)
	want(t, call(t, "GET", base+"/api/overview", "", "", nil), 401)
	want(t, call(t, "GET", base+"/api/overview", "guest", "bad", nil), 401)
	r := call(t, "GET", base+"/api/overview", "guest", "guest", nil)
	want(t, r, 200)
	var o map[string]any
	r.json(t, &o)
	for _, k := range []string{"node", "cluster_name", "object_totals", "queue_totals", "message_stats", "listeners", "rabbitmq_version"} {
		if _, ok := o[k]; !ok {
			t.Errorf("overview lacks %q", k)
		}
	}
	r = call(t, "GET", base+"/api/whoami", "guest", "guest", nil)
	var who map[string]any
	r.json(t, &who)
	if who["name"] != "guest" {
		t.Fatalf("whoami %v", who)
	}
	want(t, call(t, "GET", base+"/api/aliveness-test/%2F", "guest", "guest", nil), 200)
	want(t, call(t, "GET", base+"/api/health/checks/alarms", "guest", "guest", nil), 200)
	want(t, call(t, "GET", base+"/api/nodes", "guest", "guest", nil), 200)
}

func TestTagRules(t *testing.T) {
	_, base := start(t)
	want(t, call(t, "PUT", base+"/api/users/plain", "guest", "guest", map[string]any{"password": "p", "tags": ""}), 201)
	want(t, call(t, "PUT", base+"/api/users/mon", "guest", "guest", map[string]any{"password": "p", "tags": "monitoring"}), 201)
	want(t, call(t, "PUT", base+"/api/users/pm", "guest", "guest", map[string]any{"password": "p", "tags": "policymaker"}), 201)
	want(t, call(t, "PUT", base+"/api/users/mon", "guest", "guest", map[string]any{"password": "p", "tags": "monitoring"}), 204)
	// no management tag: refused
	want(t, call(t, "GET", base+"/api/overview", "plain", "p", nil), 401)
	// monitoring reads but cannot administer
	want(t, call(t, "GET", base+"/api/queues", "mon", "p", nil), 200)
	want(t, call(t, "PUT", base+"/api/users/x", "mon", "p", map[string]any{"password": "p"}), 401)
	want(t, call(t, "PUT", base+"/api/policies/%2F/p1", "mon", "p", map[string]any{"pattern": "^", "definition": map[string]any{"max-length": 1}}), 401)
	// policymaker manages policies in the vhosts it has access to
	want(t, call(t, "PUT", base+"/api/policies/%2F/p1", "pm", "p", map[string]any{"pattern": "^", "definition": map[string]any{"max-length": 1}}), 401)
	want(t, call(t, "PUT", base+"/api/permissions/%2F/pm", "guest", "guest", map[string]string{"configure": "", "write": "", "read": ""}), 201)
	want(t, call(t, "PUT", base+"/api/policies/%2F/p1", "pm", "p", map[string]any{"pattern": "^", "definition": map[string]any{"max-length": 1}}), 201)
	want(t, call(t, "DELETE", base+"/api/users/plain", "pm", "p", nil), 401)
}

func TestUsersPermissionsPolicies(t *testing.T) {
	_, base := start(t)
	g := func(m, p string, b any) resp { return call(t, m, base+p, "guest", "guest", b) }
	want(t, g("PUT", "/api/vhosts/edu", nil), 201)
	want(t, g("PUT", "/api/users/prim", map[string]any{"password": "123456", "tags": "administrator"}), 201)
	want(t, g("PUT", "/api/permissions/edu/prim", map[string]string{"configure": ".*", "write": ".*", "read": ".*"}), 201)
	var perms []map[string]any
	g("GET", "/api/users/prim/permissions", nil).json(t, &perms)
	if len(perms) != 1 || perms[0]["vhost"] != "edu" || perms[0]["configure"] != ".*" {
		t.Fatalf("permissions %v", perms)
	}
	var u map[string]any
	g("GET", "/api/users/prim", nil).json(t, &u)
	if u["hashing_algorithm"] != "rabbit_password_hashing_sha256" || fmt.Sprint(u["tags"]) != "[administrator]" {
		t.Fatalf("user %v", u)
	}
	// AMQP login with the new user
	c, err := amqp091.Dial(strings.Replace(base, "http", "amqp", 1)[:0] + "amqp://prim:123456@" + amqpAddr(t, base) + "/edu")
	if err != nil {
		t.Fatalf("login as prim: %v", err)
	}
	c.Close()
	// policies: validation as RabbitMQ
	want(t, g("PUT", "/api/policies/%2F/xall", map[string]any{"pattern": "^", "definition": map[string]any{"ha-mode": "all"}}), 201)
	want(t, g("PUT", "/api/policies/%2F/bad", map[string]any{"pattern": "^", "definition": map[string]any{"ha-mode": "exactly"}}), 400)
	want(t, g("PUT", "/api/policies/%2F/bad", map[string]any{"pattern": "^", "definition": map[string]any{"ha-mode": "exactly", "ha-params": 2, "ha-sync-mode": "automatic"}}), 201)
	want(t, g("PUT", "/api/policies/%2F/bad2", map[string]any{"pattern": "^", "definition": map[string]any{"ha-sync-mode": "sometimes", "ha-mode": "all"}}), 400)
	want(t, g("PUT", "/api/policies/%2F/bad3", map[string]any{"pattern": "^", "definition": map[string]any{"no-such-key": 1}}), 400)
	var pols []map[string]any
	g("GET", "/api/policies/%2F", nil).json(t, &pols)
	if len(pols) != 2 || pols[1]["apply-to"] != "all" {
		t.Fatalf("policies %v", pols)
	}
	want(t, g("DELETE", "/api/policies/%2F/xall", nil), 204)
	want(t, g("DELETE", "/api/users/prim", nil), 204)
	want(t, g("DELETE", "/api/users/prim", nil), 404)
}

var amqpAddrs = map[string]string{}

func amqpAddr(t *testing.T, base string) string {
	var o map[string]any
	call(t, "GET", base+"/api/overview", "guest", "guest", nil).json(t, &o)
	l := o["listeners"].([]any)[0].(map[string]any)
	return fmt.Sprintf("%s:%v", l["ip_address"], l["port"])
}

func TestQueuesPublishGetPurgeDelete(t *testing.T) {
	_, base := start(t)
	g := func(m, p string, b any) resp { return call(t, m, base+p, "guest", "guest", b) }
	want(t, g("PUT", "/api/queues/%2F/work", map[string]any{"durable": true, "arguments": map[string]any{"x-max-length": 10}}), 201)
	want(t, g("PUT", "/api/queues/%2F/work", map[string]any{"durable": false}), 400) // inequivalent
	var pub map[string]bool
	g("POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{"properties": map[string]any{"content_type": "text/plain"}, "routing_key": "work", "payload": "hello", "payload_encoding": "string"}).json(t, &pub)
	if !pub["routed"] {
		t.Fatal("not routed")
	}
	var q map[string]any
	g("GET", "/api/queues/%2F/work", nil).json(t, &q)
	if q["messages"] != 1.0 || q["durable"] != true || q["node"] == nil {
		t.Fatalf("queue %v", q)
	}
	if q["messages_ready_ram"] != 1.0 || q["messages_paged_out"] != 0.0 || q["message_bytes_ram"] != 5.0 || q["message_bytes_paged_out"] != 0.0 {
		t.Fatalf("paging figures %v %v %v %v", q["messages_ready_ram"], q["messages_paged_out"], q["message_bytes_ram"], q["message_bytes_paged_out"])
	}
	var msgs []map[string]any
	g("POST", "/api/queues/%2F/work/get", map[string]any{"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"}).json(t, &msgs)
	if len(msgs) != 1 || msgs[0]["payload"] != "hello" || msgs[0]["properties"].(map[string]any)["content_type"] != "text/plain" {
		t.Fatalf("get %v", msgs)
	}
	var bs []map[string]any
	g("GET", "/api/queues/%2F/work/bindings", nil).json(t, &bs)
	if len(bs) != 1 || bs[0]["source"] != "" {
		t.Fatalf("default binding %v", bs)
	}
	want(t, g("POST", "/api/bindings/%2F/e/amq.topic/q/work", map[string]any{"routing_key": "a.#"}), 201)
	want(t, g("DELETE", "/api/queues/%2F/work/contents", nil), 204)
	g("GET", "/api/queues/%2F/work", nil).json(t, &q)
	if q["messages"] != 0.0 {
		t.Fatalf("after purge %v", q["messages"])
	}
	want(t, g("DELETE", "/api/queues/%2F/work", nil), 204)
	want(t, g("GET", "/api/queues/%2F/work", nil), 404)
}

func TestPagination(t *testing.T) {
	_, base := start(t)
	for i := 0; i < 25; i++ {
		want(t, call(t, "PUT", fmt.Sprintf("%s/api/queues/%%2F/q%02d", base, i), "guest", "guest", map[string]any{}), 201)
	}
	var p map[string]any
	call(t, "GET", base+"/api/queues?page=3&page_size=10", "guest", "guest", nil).json(t, &p)
	if p["item_count"] != 5.0 || p["page_count"] != 3.0 || p["total_count"] != 25.0 {
		t.Fatalf("page %v", p)
	}
	call(t, "GET", base+"/api/queues?page=1&page_size=100&name=q1&use_regex=false", "guest", "guest", nil).json(t, &p)
	if p["filtered_count"] != 10.0 {
		t.Fatalf("filter %v", p["filtered_count"])
	}
}

func TestImportRabbitMQDefinitions(t *testing.T) {
	_, base := start(t)
	raw, err := os.ReadFile("testdata/rabbitmq-3.10-definitions.json")
	if err != nil {
		t.Fatal(err)
	}
	var d any
	json.Unmarshal(raw, &d)
	want(t, call(t, "POST", base+"/api/definitions", "guest", "guest", d), 204)
	// the password hash exported by RabbitMQ works here
	c, err := amqp091.Dial("amqp://prim:123456@" + amqpAddr(t, base) + "/edu")
	if err != nil {
		t.Fatalf("login with a RabbitMQ-exported password hash: %v", err)
	}
	c.Close()
	var q map[string]any
	call(t, "GET", base+"/api/queues/%2F/orders.eu", "guest", "guest", nil).json(t, &q)
	if q["arguments"].(map[string]any)["x-dead-letter-exchange"] != "dlx" {
		t.Fatalf("queue %v", q)
	}
	// export and re-import into a fresh node: same definitions
	r := call(t, "GET", base+"/api/definitions", "guest", "guest", nil)
	want(t, r, 200)
	var exp map[string]any
	r.json(t, &exp)
	for _, k := range []string{"users", "vhosts", "permissions", "policies", "queues", "exchanges", "bindings"} {
		if _, ok := exp[k].([]any); !ok {
			t.Fatalf("export lacks %s", k)
		}
	}
	_, base2 := start(t)
	want(t, call(t, "POST", base2+"/api/definitions", "guest", "guest", exp), 204)
	r2 := call(t, "GET", base2+"/api/definitions", "guest", "guest", nil)
	var exp2 map[string]any
	r2.json(t, &exp2)
	a, _ := json.Marshal(exp["queues"])
	b, _ := json.Marshal(exp2["queues"])
	if string(a) != string(b) {
		t.Fatalf("queues differ after round trip:\n%s\n%s", a, b)
	}
}

func TestPrometheusMetrics(t *testing.T) {
	n, _ := start(t)
	r := call(t, "GET", "http://"+n.Addr("prometheus").String()+"/metrics", "", "", nil)
	want(t, r, 200)
	for _, m := range []string{"rabbitmq_connections", "rabbitmq_queues", "rabbitmq_global_messages_received_total", "rabbitmq_process_resident_memory_bytes"} {
		if !bytes.Contains(r.body, []byte(m)) {
			t.Errorf("metrics lack %s", m)
		}
	}
}
