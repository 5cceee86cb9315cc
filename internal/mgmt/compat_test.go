package mgmt_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/warrenmq/warren/internal/testenv"
)

// Compatibility with RabbitMQ 3.10's management API: every expectation
// below was read from RabbitMQ 3.10.8 with the same requests.

func guest(t *testing.T, base string) func(m, p string, b any) resp {
	return func(m, p string, b any) resp { return call(t, m, base+p, "guest", "guest", b) }
}

func dialGuest(t *testing.T, base string) *amqp091.Connection {
	t.Helper()
	c, err := amqp091.Dial("amqp://guest:guest@" + amqpAddr(t, base) + "/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func num(t *testing.T, m map[string]any, k string) float64 {
	t.Helper()
	f, ok := m[k].(float64)
	if !ok {
		t.Fatalf("%s is %T %v, want a number", k, m[k], m[k])
	}
	return f
}

func TestOverviewFieldsRabbitMQHas(t *testing.T) {
	_, base := start(t)
	g := guest(t, base)
	var o map[string]any
	g("GET", "/api/overview", nil).json(t, &o)
	if o["product_name"] != "Warren" || o["rates_mode"] != "basic" {
		t.Errorf("product_name %v rates_mode %v", o["product_name"], o["rates_mode"])
	}
	// compatible with 3.10, parseable as a version, and not a RabbitMQ release
	if v, _ := o["rabbitmq_version"].(string); !strings.HasPrefix(v, "3.10.0+warren.") {
		t.Errorf("rabbitmq_version %q", o["rabbitmq_version"])
	}
	var types []string
	for _, x := range o["exchange_types"].([]any) {
		types = append(types, x.(map[string]any)["name"].(string))
	}
	if strings.Join(types, ",") != "direct,fanout,headers,topic" {
		t.Errorf("exchange_types %v", types)
	}
	churn := o["churn_rates"].(map[string]any)
	for _, k := range []string{"connection_created", "connection_closed", "channel_created", "channel_closed", "queue_created", "queue_declared", "queue_deleted"} {
		num(t, churn, k)
		if _, ok := churn[k+"_details"].(map[string]any)["rate"].(float64); !ok {
			t.Errorf("churn_rates.%s_details.rate missing", k)
		}
	}
	var protos []string
	for _, l := range o["listeners"].([]any) {
		protos = append(protos, l.(map[string]any)["protocol"].(string))
	}
	if strings.Join(protos, ",") != "amqp,http,http/prometheus" {
		t.Errorf("listeners %v", protos)
	}
}

// TestChurnCounts opens and closes a connection with two channels and
// declares and deletes a queue: churn_rates counts each.
func TestChurnCounts(t *testing.T) {
	_, base := start(t)
	g := guest(t, base)
	churn := func() map[string]any {
		var o map[string]any
		g("GET", "/api/overview", nil).json(t, &o)
		return o["churn_rates"].(map[string]any)
	}
	before := churn()
	c, err := amqp091.Dial("amqp://guest:guest@" + amqpAddr(t, base) + "/")
	if err != nil {
		t.Fatal(err)
	}
	ch1, _ := c.Channel()
	if _, err := c.Channel(); err != nil {
		t.Fatal(err)
	}
	if _, err := ch1.QueueDeclare("churn", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch1.QueueDeclare("churn", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch1.QueueDelete("churn", false, false, false); err != nil {
		t.Fatal(err)
	}
	mid := churn()
	c.Close()
	after := churn()
	d := func(m map[string]any, k string) float64 { return num(t, m, k) - num(t, before, k) }
	for k, w := range map[string]float64{"connection_created": 1, "connection_closed": 0, "channel_created": 2, "channel_closed": 0, "queue_created": 1, "queue_declared": 2, "queue_deleted": 1} {
		if got := d(mid, k); got != w {
			t.Errorf("while open: %s grew by %v, want %v", k, got, w)
		}
	}
	// the connection's close is accounted once its goroutine ends
	for i := 0; i < 500 && d(after, "connection_closed") != 1; i++ {
		time.Sleep(10 * time.Millisecond)
		after = churn()
	}
	if d(after, "connection_closed") != 1 || d(after, "channel_closed") != 2 || d(after, "channel_created") != 2 {
		t.Errorf("after close: %v", after)
	}
}

func TestNodeFieldsRabbitMQHas(t *testing.T) {
	_, base := start(t)
	dialGuest(t, base)
	g := guest(t, base)
	var nodes []map[string]any
	g("GET", "/api/nodes", nil).json(t, &nodes)
	if len(nodes) != 1 {
		t.Fatalf("nodes %v", nodes)
	}
	n := nodes[0]
	for _, k := range []string{"mem_limit", "mem_used", "disk_free", "disk_free_limit", "fd_total", "fd_used", "sockets_used", "sockets_total", "proc_total", "proc_used", "uptime", "run_queue", "processors"} {
		num(t, n, k)
	}
	if num(t, n, "fd_used") < 3 || num(t, n, "fd_total") < num(t, n, "fd_used") {
		t.Errorf("fd_used %v fd_total %v", n["fd_used"], n["fd_total"])
	}
	if num(t, n, "sockets_used") != 1 {
		t.Errorf("sockets_used %v with one AMQP connection open", n["sockets_used"])
	}
	if num(t, n, "mem_limit") <= 0 || num(t, n, "mem_used") <= 0 || num(t, n, "disk_free") <= 0 || num(t, n, "processors") < 1 || num(t, n, "proc_used") < 2 || num(t, n, "proc_total") < num(t, n, "proc_used") {
		t.Errorf("node %v", n)
	}
	for _, k := range []string{"connection_created", "channel_created", "queue_declared"} {
		num(t, n, k)
	}
	if n["mem_calculation_strategy"] != "rss" || len(n["auth_mechanisms"].([]any)) != 2 {
		t.Errorf("node %v", n)
	}
	var one map[string]any
	g("GET", "/api/nodes/"+url.PathEscape(n["name"].(string)), nil).json(t, &one)
	if _, ok := one["fd_total"]; !ok {
		t.Errorf("/api/nodes/{name} lacks fd_total: %v", one)
	}
}

func TestConnectionChannels(t *testing.T) {
	_, base := start(t)
	cfg := amqp091.Config{Properties: amqp091.Table{"connection_name": "mine"}}
	c, err := amqp091.DialConfig("amqp://guest:guest@"+amqpAddr(t, base)+"/", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 2; i++ {
		if _, err := c.Channel(); err != nil {
			t.Fatal(err)
		}
	}
	g := guest(t, base)
	var conns []map[string]any
	g("GET", "/api/connections", nil).json(t, &conns)
	if len(conns) != 1 {
		t.Fatalf("connections %v", conns)
	}
	name := conns[0]["name"].(string)
	r := g("GET", "/api/connections/"+url.PathEscape(name)+"/channels", nil)
	want(t, r, 200)
	var chans []map[string]any
	r.json(t, &chans)
	if len(chans) != 2 || chans[0]["connection_details"].(map[string]any)["name"] != name {
		t.Fatalf("channels of %s: %v", name, chans)
	}
	if conns[0]["user_provided_name"] != "mine" || conns[0]["ssl"] != false {
		t.Errorf("connection %v", conns[0])
	}
	for _, ch := range chans {
		d := ch["connection_details"].(map[string]any)
		if _, ok := d["peer_port"].(float64); !ok || strings.Contains(d["peer_host"].(string), ":") {
			t.Errorf("connection_details %v", d)
		}
	}
	want(t, g("GET", "/api/connections/nope/channels", nil), 404)
}

func TestVHostCreatorGetsFullPermissions(t *testing.T) {
	_, base := start(t)
	g := guest(t, base)
	want(t, g("PUT", "/api/users/boss", map[string]any{"password": "pw", "tags": "administrator"}), 201)
	want(t, call(t, "PUT", base+"/api/vhosts/bossland", "boss", "pw", nil), 201)
	var perms []map[string]any
	g("GET", "/api/vhosts/bossland/permissions", nil).json(t, &perms)
	if len(perms) != 1 || perms[0]["user"] != "boss" || perms[0]["configure"] != ".*" || perms[0]["write"] != ".*" || perms[0]["read"] != ".*" {
		t.Fatalf("permissions on the new vhost: %v", perms)
	}
	// so the creator can use it at once
	want(t, call(t, "PUT", base+"/api/queues/bossland/q", "boss", "pw", map[string]any{}), 201)
	// a second PUT changes nothing and grants nothing
	want(t, g("PUT", "/api/vhosts/bossland", nil), 204)
	g("GET", "/api/vhosts/bossland/permissions", nil).json(t, &perms)
	if len(perms) != 1 {
		t.Fatalf("after a second PUT: %v", perms)
	}
}

// TestStatusCodesAsRabbitMQ replays a create/update/delete sequence over
// every kind of object with the status codes RabbitMQ 3.10 answered.
func TestStatusCodesAsRabbitMQ(t *testing.T) {
	_, base := start(t)
	g := guest(t, base)
	perm := map[string]string{"configure": ".*", "write": ".*", "read": ".*"}
	pol := map[string]any{"pattern": "^q", "definition": map[string]any{"max-length": 5}, "apply-to": "queues"}
	steps := []struct {
		m, p string
		b    any
		code int
	}{
		{"PUT", "/api/vhosts/v1", nil, 201},
		{"PUT", "/api/vhosts/v1", nil, 204},
		{"PUT", "/api/users/u1", map[string]any{"password": "x", "tags": ""}, 201},
		{"PUT", "/api/users/u1", map[string]any{"password": "x", "tags": ""}, 204},
		{"PUT", "/api/permissions/v1/u1", perm, 201},
		{"PUT", "/api/permissions/v1/u1", perm, 204},
		{"PUT", "/api/exchanges/v1/x1", map[string]any{"type": "direct"}, 201},
		{"PUT", "/api/exchanges/v1/x1", map[string]any{"type": "direct"}, 204},
		{"PUT", "/api/queues/v1/q1", map[string]any{}, 201},
		{"PUT", "/api/queues/v1/q1", map[string]any{}, 204},
		{"POST", "/api/bindings/v1/e/x1/q/q1", map[string]any{"routing_key": "k"}, 201},
		{"POST", "/api/bindings/v1/e/x1/q/q1", map[string]any{"routing_key": "k"}, 201},
		{"POST", "/api/bindings/v1/e/amq.direct/e/x1", map[string]any{"routing_key": "k"}, 201},
		{"PUT", "/api/policies/v1/p1", pol, 201},
		{"PUT", "/api/policies/v1/p1", pol, 204},
		{"DELETE", "/api/bindings/v1/e/x1/q/q1/k", nil, 204},
		{"DELETE", "/api/bindings/v1/e/x1/q/q1/k", nil, 404},
		{"DELETE", "/api/bindings/v1/e/amq.direct/e/x1/k", nil, 204},
		{"DELETE", "/api/policies/v1/p1", nil, 204},
		{"DELETE", "/api/policies/v1/p1", nil, 404},
		{"DELETE", "/api/queues/v1/q1", nil, 204},
		{"DELETE", "/api/queues/v1/q1", nil, 404},
		{"DELETE", "/api/exchanges/v1/x1", nil, 204},
		{"DELETE", "/api/exchanges/v1/x1", nil, 404},
		{"DELETE", "/api/permissions/v1/u1", nil, 204},
		{"DELETE", "/api/permissions/v1/u1", nil, 404},
		{"DELETE", "/api/users/u1", nil, 204},
		{"DELETE", "/api/users/u1", nil, 404},
		{"DELETE", "/api/vhosts/v1", nil, 204},
		{"DELETE", "/api/vhosts/v1", nil, 404},
		// kinds Warren does not have: none to list, refused to create
		{"GET", "/api/parameters", nil, 200},
		{"GET", "/api/topic-permissions", nil, 200},
		{"PUT", "/api/global-parameters/g1", map[string]any{"value": "x"}, 400},
	}
	for _, s := range steps {
		r := g(s.m, s.p, s.b)
		if r.status != s.code {
			t.Errorf("%s %s: %d, RabbitMQ answers %d (%s)", s.m, s.p, r.status, s.code, r.body)
		}
		if r.status == 404 && string(bytes.TrimSpace(r.body)) != `{"error":"Object Not Found","reason":"Not Found"}` {
			t.Errorf("%s %s: 404 body %s", s.m, s.p, r.body)
		}
	}
}

func TestPolicyNamesInQueueAndExchangeJSON(t *testing.T) {
	_, base := start(t)
	g := guest(t, base)
	want(t, g("PUT", "/api/queues/%2F/q1", map[string]any{}), 201)
	want(t, g("PUT", "/api/queues/%2F/other", map[string]any{}), 201)
	want(t, g("PUT", "/api/exchanges/%2F/x1", map[string]any{"type": "topic"}), 201)
	want(t, g("PUT", "/api/policies/%2F/p1", map[string]any{"pattern": "^q", "definition": map[string]any{"max-length": 5}, "apply-to": "queues"}), 201)
	want(t, g("PUT", "/api/policies/%2F/px", map[string]any{"pattern": "^x", "definition": map[string]any{"alternate-exchange": "amq.direct"}, "apply-to": "exchanges"}), 201)
	var q, o map[string]any
	g("GET", "/api/queues/%2F/q1", nil).json(t, &q)
	g("GET", "/api/queues/%2F/other", nil).json(t, &o)
	if q["policy"] != "p1" || o["policy"] != nil {
		t.Errorf("policy: q1 %v, other %v", q["policy"], o["policy"])
	}
	for _, m := range []map[string]any{q, o} {
		if v, ok := m["operator_policy"]; !ok || v != nil {
			t.Errorf("operator_policy %v (present %v), want null", v, ok)
		}
	}
	var x, d map[string]any
	g("GET", "/api/exchanges/%2F/x1", nil).json(t, &x)
	g("GET", "/api/exchanges/%2F/amq.direct", nil).json(t, &d)
	if x["policy"] != "px" {
		t.Errorf("exchange policy %v", x["policy"])
	}
	if _, ok := d["policy"]; ok {
		t.Errorf("an exchange without a policy has no policy field in RabbitMQ: %v", d)
	}
}

func TestColumnsAndJSONWithoutHTMLEscaping(t *testing.T) {
	_, base := start(t)
	g := guest(t, base)
	want(t, g("PUT", "/api/queues/%2F/a", map[string]any{"arguments": map[string]any{"x-max-length": 3}}), 201)
	want(t, g("PUT", "/api/queues/%2F/b", map[string]any{}), 201)
	want(t, g("POST", "/api/bindings/%2F/e/amq.topic/q/a", map[string]any{"routing_key": "a->b"}), 201)
	r := g("GET", "/api/bindings/%2F", nil)
	if !bytes.Contains(r.body, []byte(`"routing_key":"a->b"`)) || bytes.Contains(r.body, []byte(`\u003e`)) {
		t.Errorf("HTML-escaped JSON: %s", r.body)
	}
	if !bytes.Contains(r.body, []byte(`"properties_key":"a-%3Eb"`)) {
		t.Errorf("properties_key is not RabbitMQ's: %s", r.body)
	}
	// delete by that properties_key, escaped once more in the path as rabbitmqadmin does
	want(t, g("DELETE", "/api/bindings/%2F/e/amq.topic/q/a/"+url.PathEscape("a-%3Eb"), nil), 204)
	check := func(path, wantBody string) {
		t.Helper()
		r := g("GET", path, nil)
		want(t, r, 200)
		var got, exp any
		r.json(t, &got)
		_ = json.Unmarshal([]byte(wantBody), &exp)
		gb, _ := json.Marshal(got)
		eb, _ := json.Marshal(exp)
		if !bytes.Equal(gb, eb) {
			t.Errorf("%s:\n got %s\nwant %s", path, gb, eb)
		}
	}
	check("/api/queues/%2F?columns=name,arguments.x-max-length,garbage", `[{"name":"a","arguments":{"x-max-length":3}},{"name":"b","arguments":{}}]`)
	check("/api/queues/%2F/a?columns=name,durable", `{"name":"a","durable":true}`)
	check("/api/queues?columns=name&page=1&page_size=1", `{"filtered_count":2,"item_count":1,"items":[{"name":"a"}],"page":1,"page_count":2,"page_size":1,"total_count":2}`)
	check("/api/overview?columns=product_name,object_totals.queues", `{"product_name":"Warren","object_totals":{"queues":2}}`)
}

func TestUnauthorizedAnswersAndFavicon(t *testing.T) {
	_, base := start(t)
	get := func(user, pass string) *http.Response {
		req, _ := http.NewRequest("GET", base+"/api/overview", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	body := func(r *http.Response) string {
		defer r.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(r.Body)
		return strings.TrimSpace(b.String())
	}
	r := get("", "")
	if r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") != `Basic realm="RabbitMQ Management"` || body(r) != "" {
		t.Errorf("no credentials: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	for _, up := range [][2]string{{"guest", "wrong"}, {"nobody", "x"}} {
		r = get(up[0], up[1])
		if b := body(r); r.StatusCode != 401 || b != `{"error":"not_authorized","reason":"Login failed"}` || r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s/%s: %d %s", up[0], up[1], r.StatusCode, b)
		}
	}
	r, err := http.Get(base + "/favicon.ico")
	if err != nil {
		t.Fatal(err)
	}
	ico := body(r)
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "image/x-icon" || !strings.HasPrefix(ico, "\x00\x00\x01\x00") {
		t.Errorf("favicon: %d %s %q", r.StatusCode, r.Header.Get("Content-Type"), ico[:min(8, len(ico))])
	}
}

// rabbitmqadminPath finds the management plugin's CLI where Debian's
// rabbitmq-server package installs it (.ci/run installs the package).
func rabbitmqadminPath() string {
	m, _ := filepath.Glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbitmq_management-*/priv/www/cli/rabbitmqadmin")
	if len(m) > 0 {
		return m[len(m)-1]
	}
	if _, err := os.Stat("/usr/bin/rabbitmqadmin"); err == nil {
		return "/usr/bin/rabbitmqadmin"
	}
	return ""
}

// TestRabbitmqadmin runs RabbitMQ's own management CLI against Warren.
func TestRabbitmqadmin(t *testing.T) {
	admin := rabbitmqadminPath()
	if admin == "" {
		testenv.Skip(t, "rabbitmqadmin not installed (Debian package rabbitmq-server; .ci/run installs it)")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.Skip(t, "/usr/bin/python3 not installed")
	}
	_, base := start(t)
	u, _ := url.Parse(base)
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("/usr/bin/python3", append([]string{admin, "-H", u.Hostname(), "-P", u.Port(), "-u", "guest", "-p", "guest"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil || bytes.Contains(out, []byte("***")) {
			t.Fatalf("rabbitmqadmin %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("declare", "queue", "name=adminq", "durable=true")
	run("declare", "queue", "name=gone", "durable=false", "auto_delete=false")
	if out := run("list", "queues", "name", "messages"); !strings.Contains(out, "adminq") || !strings.Contains(out, "gone") {
		t.Fatalf("list queues:\n%s", out)
	}
	if out := run("publish", "routing_key=adminq", "payload=hello->world"); !strings.Contains(out, "Message published") || strings.Contains(out, "NOT routed") {
		t.Fatalf("publish:\n%s", out)
	}
	if out := run("get", "queue=adminq", "ackmode=ack_requeue_true", "count=1"); !strings.Contains(out, "hello->world") {
		t.Fatalf("get:\n%s", out)
	}
	run("declare", "exchange", "name=adminx", "type=topic")
	run("declare", "binding", "source=adminx", "destination=adminq", "routing_key=a->b")
	if out := run("-f", "raw_json", "list", "bindings", "source", "routing_key", "properties_key"); !strings.Contains(out, `"properties_key":"a-%3Eb"`) {
		t.Fatalf("list bindings:\n%s", out)
	}
	run("delete", "binding", "source=adminx", "destination_type=queue", "destination=adminq", "properties_key=a-%3Eb")
	if out := run("list", "bindings", "source", "routing_key"); strings.Contains(out, "a->b") {
		t.Fatalf("binding still there after delete:\n%s", out)
	}
	if out := run("show", "overview"); !strings.Contains(out, "3.10.0+warren.") {
		t.Fatalf("show overview:\n%s", out)
	}
	exp := filepath.Join(dir, "defs.json")
	run("export", exp)
	run("delete", "queue", "name=adminq")
	run("delete", "exchange", "name=adminx")
	run("import", exp)
	if out := run("list", "exchanges", "name"); !strings.Contains(out, "adminx") {
		t.Fatalf("exchange not back after import:\n%s", out)
	}
	if out := run("list", "queues", "name"); !strings.Contains(out, "adminq") {
		t.Fatalf("queue not back after import:\n%s", out)
	}
	// one vhost's definitions
	vexp := filepath.Join(dir, "vhost.json")
	run("--vhost=/", "export", vexp)
	raw, _ := os.ReadFile(vexp)
	if !bytes.Contains(raw, []byte(`"adminq"`)) || bytes.Contains(raw, []byte(`"users"`)) {
		t.Fatalf("per-vhost export: %s", raw)
	}
	run("delete", "queue", "name=adminq")
	run("--vhost=/", "import", vexp)
	if out := run("list", "queues", "name"); !strings.Contains(out, "adminq") {
		t.Fatalf("queue not back after the per-vhost import:\n%s", out)
	}
	for _, what := range []string{"nodes", "connections", "channels", "consumers", "exchanges", "vhosts", "users", "permissions", "policies", "parameters"} {
		run("list", what)
	}
}

// TestErrorAnswersAsRabbitMQ: a method an endpoint does not take, a body
// that is not JSON, a path that does not exist, an AMQP-level refusal.
func TestErrorAnswersAsRabbitMQ(t *testing.T) {
	_, base := start(t)
	req, _ := http.NewRequest("POST", base+"/api/overview", nil)
	req.SetBasicAuth("guest", "guest")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(r.Body)
	r.Body.Close()
	if r.StatusCode != 405 || r.Header.Get("Allow") != "HEAD, GET, OPTIONS" || b.Len() != 0 {
		t.Errorf("POST /api/overview: %d allow %q body %q", r.StatusCode, r.Header.Get("Allow"), b.String())
	}
	req, _ = http.NewRequest("PUT", base+"/api/vhosts/bad", strings.NewReader("{bad"))
	req.SetBasicAuth("guest", "guest")
	if r, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 400 {
		t.Errorf("PUT a vhost with a body that is not JSON: %d, RabbitMQ answers 400", r.StatusCode)
	}
	g := guest(t, base)
	if r := g("GET", "/api/nothing", nil); r.status != 404 || string(bytes.TrimSpace(r.body)) != `{"error":"Object Not Found","reason":"Not Found"}` {
		t.Errorf("unknown path: %d %s", r.status, r.body)
	}
	if r := g("PUT", "/api/exchanges/%2F/x", map[string]any{"type": "nope"}); r.status != 400 || bytes.Contains(r.body, []byte("COMMAND_INVALID")) {
		t.Errorf("bad exchange type: %d %s", r.status, r.body)
	}
}
