package mgmt_test

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/node"
	"github.com/warrenmq/warren/internal/testenv"
)

func wantBody(t *testing.T, r resp, status int, body string) {
	t.Helper()
	if r.status != status || !strings.Contains(string(r.body), body) {
		t.Fatalf("got %d %s, want %d with %s", r.status, r.body, status, body)
	}
}

// TestPolicymakerWithoutVHostAccess: a policymaker cannot set, read or
// delete policies in a vhost it has no permissions in (RabbitMQ: 401
// "User not authorised to access object"), and GET /api/policies lists
// only its vhosts' policies.
func TestPolicymakerWithoutVHostAccess(t *testing.T) {
	_, base := start(t)
	g := func(m, p string, b any) resp { return call(t, m, base+p, "guest", "guest", b) }
	want(t, g("PUT", "/api/vhosts/secret", nil), 201)
	// the creator of a vhost already has full permissions there (as in RabbitMQ)
	want(t, g("PUT", "/api/permissions/secret/guest", map[string]string{"configure": ".*", "write": ".*", "read": ".*"}), 204)
	want(t, g("PUT", "/api/queues/secret/vault", map[string]any{}), 201)
	want(t, g("POST", "/api/exchanges/secret/amq.default/publish", map[string]any{"properties": map[string]any{}, "routing_key": "vault", "payload": "gold", "payload_encoding": "string"}), 200)
	want(t, g("PUT", "/api/policies/secret/keep", map[string]any{"pattern": "^zzz", "definition": map[string]any{"max-length": 100}}), 201)
	want(t, g("PUT", "/api/users/pm", map[string]any{"password": "p", "tags": "policymaker"}), 201)
	want(t, g("PUT", "/api/permissions/%2F/pm", map[string]string{"configure": ".*", "write": ".*", "read": ".*"}), 201)
	pm := func(m, p string, b any) resp { return call(t, m, base+p, "pm", "p", b) }
	wantBody(t, pm("PUT", "/api/policies/secret/evil", map[string]any{"pattern": "^", "definition": map[string]any{"max-length": 0}}),
		401, `{"error":"not_authorised","reason":"User not authorised to access object"}`)
	wantBody(t, pm("DELETE", "/api/policies/secret/keep", nil), 401, "User not authorised to access object")
	wantBody(t, pm("GET", "/api/policies/secret/keep", nil), 401, "User not authorised to access object")
	wantBody(t, pm("GET", "/api/policies/secret", nil), 401, "User not authorised to access virtual host")
	var q map[string]any
	g("GET", "/api/queues/secret/vault", nil).json(t, &q)
	if q["messages"] != 1.0 {
		t.Fatalf("the policymaker emptied a queue in a vhost it cannot access: %v", q["messages"])
	}
	want(t, pm("PUT", "/api/policies/%2F/mine", map[string]any{"pattern": "^zzz", "definition": map[string]any{"max-length": 5}}), 201)
	var pols []map[string]any
	pm("GET", "/api/policies", nil).json(t, &pols)
	if len(pols) != 1 || pols[0]["vhost"] != "/" {
		t.Fatalf("GET /api/policies as pm lists other vhosts' policies: %v", pols)
	}
	g("GET", "/api/policies", nil).json(t, &pols)
	if len(pols) != 2 {
		t.Fatalf("GET /api/policies as administrator: %v", pols)
	}
}

// TestManagementUserCannotReadOtherVHosts: GET /api/vhosts/{v},
// /api/vhosts/{v}/permissions and other users' permissions are for
// administrators only (RabbitMQ 3.10: 401 "Not administrator user"); a
// vhost's objects need access to it.
func TestManagementUserCannotReadOtherVHosts(t *testing.T) {
	_, base := start(t)
	g := func(m, p string, b any) resp { return call(t, m, base+p, "guest", "guest", b) }
	want(t, g("PUT", "/api/vhosts/secret", nil), 201)
	want(t, g("PUT", "/api/users/mg", map[string]any{"password": "p", "tags": "management"}), 201)
	want(t, g("PUT", "/api/users/other", map[string]any{"password": "p", "tags": ""}), 201)
	want(t, g("PUT", "/api/permissions/secret/other", map[string]string{"configure": "^sec", "write": "^sec", "read": "^sec"}), 201)
	mg := func(p string) resp { return call(t, "GET", base+p, "mg", "p", nil) }
	for _, p := range []string{"/api/vhosts/secret", "/api/vhosts/secret/permissions", "/api/users/other/permissions", "/api/users/mg/permissions", "/api/permissions/secret/other", "/api/permissions"} {
		wantBody(t, mg(p), 401, `"reason":"Not administrator user"`)
	}
	for _, p := range []string{"/api/queues/secret", "/api/exchanges/secret", "/api/bindings/secret", "/api/exchanges/secret/amq.direct", "/api/policies/secret"} {
		wantBody(t, mg(p), 401, "User not authorised to access virtual host")
	}
	var vs []map[string]any
	mg("/api/vhosts").json(t, &vs)
	for _, v := range vs {
		if v["name"] == "secret" {
			t.Fatalf("GET /api/vhosts as a management user without access lists %v", v)
		}
	}
	// the overview counts only the vhosts the user has permissions in
	want(t, g("PUT", "/api/permissions/secret/guest", map[string]string{"configure": ".*", "write": ".*", "read": ".*"}), 204) // the vhost creator holds them already
	want(t, g("PUT", "/api/queues/secret/hidden", map[string]any{}), 201)
	want(t, g("POST", "/api/exchanges/secret/amq.default/publish", map[string]any{"properties": map[string]any{}, "routing_key": "hidden", "payload": "x", "payload_encoding": "string"}), 200)
	var o map[string]any
	mg("/api/overview").json(t, &o)
	if qt := o["queue_totals"].(map[string]any); qt["messages"] != 0.0 || o["object_totals"].(map[string]any)["queues"] != 0.0 || o["listeners"] != nil {
		t.Fatalf("overview as a management user without access: %v", o)
	}
	g("GET", "/api/overview", nil).json(t, &o)
	if o["queue_totals"].(map[string]any)["messages"] != 1.0 || o["listeners"] == nil {
		t.Fatalf("overview as administrator: %v", o)
	}
}

// TestHTTPRespectsExclusiveQueues: another user cannot get, purge,
// delete, bind or redeclare a connection's exclusive queue over HTTP
// (RabbitMQ: 400 with 405 RESOURCE_LOCKED's text).
func TestHTTPRespectsExclusiveQueues(t *testing.T) {
	_, base := start(t)
	c, err := amqp091.Dial("amqp://guest:guest@" + amqpAddr(t, base) + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, _ := c.Channel()
	if _, err := ch.QueueDeclare("mine", false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Publish("", "mine", false, false, amqp091.Publishing{Body: []byte("private")}); err != nil {
		t.Fatal(err)
	}
	locked := "cannot obtain exclusive access to locked queue 'mine' in vhost '/'"
	g := func(m, p string, b any) resp { return call(t, m, base+p, "guest", "guest", b) }
	wantBody(t, g("POST", "/api/queues/%2F/mine/get", map[string]any{"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}), 400,
		`"reason":"405 RESOURCE_LOCKED - `+locked)
	wantBody(t, g("DELETE", "/api/queues/%2F/mine/contents", nil), 400, locked)
	wantBody(t, g("DELETE", "/api/queues/%2F/mine", nil), 400, locked)
	wantBody(t, g("POST", "/api/bindings/%2F/e/amq.direct/q/mine", map[string]any{"routing_key": "k"}), 400, locked)
	wantBody(t, g("PUT", "/api/queues/%2F/mine", map[string]any{"durable": false}), 400, locked)
	want(t, g("GET", "/api/queues/%2F/mine/bindings", nil), 200)
	msg, ok, err := ch.Get("mine", true)
	if err != nil || !ok || string(msg.Body) != "private" {
		t.Fatalf("the owner lost its message: %v %v %q", ok, err, msg.Body)
	}
}

// TestNameAndKeyLengths: names and routing keys over 255 bytes (AMQP's
// short string) are refused with 400.
func TestNameAndKeyLengths(t *testing.T) {
	_, base := start(t)
	g := func(m, p string, b any) resp { return call(t, m, base+p, "guest", "guest", b) }
	long, ok255 := strings.Repeat("a", 256), strings.Repeat("b", 255)
	wantBody(t, g("PUT", "/api/queues/%2F/"+long, map[string]any{}), 400, "queue should be less than 255 bytes, actually was 256")
	want(t, g("PUT", "/api/queues/%2F/"+ok255, map[string]any{}), 201)
	// request lines this long are refused before routing: 414, as RabbitMQ
	// answers past about 8,000 bytes (measured: 10,000 and 100,000)
	want(t, g("PUT", "/api/queues/%2F/"+strings.Repeat("q", 10000), map[string]any{}), 414)
	want(t, g("PUT", "/api/queues/%2F/"+strings.Repeat("q", 100000), map[string]any{}), 414)
	wantBody(t, g("PUT", "/api/exchanges/%2F/"+long, map[string]any{"type": "direct"}), 400, "exchange should be less than 255 bytes")
	wantBody(t, g("PUT", "/api/vhosts/"+long, nil), 400, "vhost should be less than 255 bytes")
	wantBody(t, g("PUT", "/api/queues/%2F/a%FFb", map[string]any{}), 400, "not valid UTF-8")
	// a 300-byte routing key to a fanout: refused, not half-delivered
	c, err := amqp091.Dial("amqp://guest:guest@" + amqpAddr(t, base) + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, _ := c.Channel()
	q, _ := ch.QueueDeclare("", false, true, true, false, nil)
	ch.QueueBind(q.Name, "", "amq.fanout", false, nil)
	wantBody(t, g("POST", "/api/exchanges/%2F/amq.fanout/publish", map[string]any{"properties": map[string]any{}, "routing_key": strings.Repeat("k", 300), "payload": "x", "payload_encoding": "string"}),
		400, "routing_key should be less than 255 bytes, actually was 300")
	wantBody(t, g("POST", "/api/bindings/%2F/e/amq.direct/q/"+ok255, map[string]any{"routing_key": long}), 400, "routing_key should be less than 255 bytes")
	if _, ok, _ := ch.Get(q.Name, true); ok {
		t.Fatal("the refused publish was delivered")
	}
	// the connection still works
	if _, err := ch.QueueDeclarePassive(q.Name, false, true, true, false, nil); err != nil {
		t.Fatal(err)
	}
}

// TestPaginationParameters: every pagination parameter is validated as
// RabbitMQ does; none panics.
func TestPaginationParameters(t *testing.T) {
	_, base := start(t)
	for i := 0; i < 5; i++ {
		want(t, call(t, "PUT", fmt.Sprintf("%s/api/queues/%%2F/q%d", base, i), "guest", "guest", map[string]any{}), 201)
	}
	for _, tc := range []struct {
		query  string
		status int
		body   string
	}{
		{"page=184467440737095517", 400, `{"error":"page_out_of_range","reason":"Page out of range, page: 184467440737095517 page size: 100, len: 5"}`},
		{"page=9223372036854775807&page_size=500", 400, "page_out_of_range"},
		{"page=99999999999999999999", 400, "Pagination parameters are invalid"},
		{"page=2&page_size=5", 400, "page_out_of_range"},
		{"page=0", 400, `{"error":"invalid_pagination_parameters","reason":"Invalid pagination parameters: page number 0, page size undefined"}`},
		{"page=-1", 400, "invalid_pagination_parameters"},
		{"page=abc", 400, `{"error":"bad_request","reason":"Pagination parameters are invalid"}`},
		{"page=1.5", 400, "Pagination parameters are invalid"},
		{"page=1&page_size=501", 400, "page number 1, page size 501"},
		{"page=1&page_size=0", 400, "page size 0"},
		{"page=1&page_size=-9223372036854775808", 400, "invalid_pagination_parameters"},
		{"page=1&page_size=x", 400, "Pagination parameters are invalid"},
		{"page=1&name=(&use_regex=true", 400, "regex"},
		{"page=1&page_size=2", 200, `"item_count":2`},
		{"page=3&page_size=2", 200, `"item_count":1`},
	} {
		for _, ep := range []string{"queues", "exchanges", "connections"} {
			r := call(t, "GET", base+"/api/"+ep+"?"+tc.query, "guest", "guest", nil)
			if ep != "queues" && tc.status == 200 {
				continue
			}
			if ep != "queues" && strings.Contains(tc.body, "len: 5") {
				tc.body = "page_out_of_range"
			}
			if ep != "queues" && strings.Contains(tc.query, "page=2&") {
				continue // checked on queues, whose count the test knows
			}
			if r.status != tc.status || !strings.Contains(string(r.body), tc.body) {
				t.Errorf("/api/%s?%s: %d %s, want %d %s", ep, tc.query, r.status, r.body, tc.status, tc.body)
			}
		}
	}
}

// TestPrometheusDoesNotListNamesByDefault: the unauthenticated /metrics
// is aggregated (RabbitMQ's default); /metrics/per-object lists queues,
// and a queue name that is not UTF-8 never turns the scrape into a 500.
func TestPrometheusDoesNotListNamesByDefault(t *testing.T) {
	n, base := start(t)
	want(t, call(t, "PUT", base+"/api/vhosts/secret-vhost", "guest", "guest", nil), 201)
	want(t, call(t, "PUT", base+"/api/queues/%2F/secret-queue-name", "guest", "guest", map[string]any{}), 201)
	m, _ := auth.CompilePermission(auth.Permission{Configure: ".*", Write: ".*", Read: ".*"})
	if _, _, _, err := n.Broker.VHost("/").Session("guest", m).DeclareQueue(&amqp.QueueDeclare{Queue: "bad\xffname"}, 0); err != nil {
		t.Fatal(err)
	}
	prom := "http://" + n.Addr("prometheus").String()
	r := call(t, "GET", prom+"/metrics", "", "", nil)
	want(t, r, 200)
	for _, secret := range []string{"secret-queue-name", "secret-vhost", `queue="`, `vhost="`} {
		if strings.Contains(string(r.body), secret) {
			t.Errorf("/metrics shows %q", secret)
		}
	}
	if !strings.Contains(string(r.body), "\nrabbitmq_queue_messages_ready 0\n") || !strings.Contains(string(r.body), "\nrabbitmq_queues 2\n") {
		t.Errorf("/metrics lacks the aggregated queue metrics:\n%.2000s", r.body)
	}
	r = call(t, "GET", prom+"/metrics/per-object", "", "", nil)
	want(t, r, 200)
	if !strings.Contains(string(r.body), `rabbitmq_queue_messages_ready{queue="secret-queue-name",vhost="/"} 0`) ||
		!strings.Contains(string(r.body), `queue="bad\\xFFname"`) {
		t.Errorf("/metrics/per-object:\n%.3000s", r.body)
	}
	if regexp.MustCompile(`goroutine \d+ \[|\.go:\d+`).Match(r.body) {
		t.Errorf("stack trace in the answer:\n%.2000s", r.body)
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		testenv.Skip(t, "no /proc/self/fd")
	}
	return len(ents)
}

// TestIdleHTTPFloodDoesNotTakeFDs: hundreds of idle connections to the
// management port hold at most management.tcp.max_connections of the
// node's descriptors, and AMQP clients still connect meanwhile.
func TestIdleHTTPFloodDoesNotTakeFDs(t *testing.T) {
	const limit, flood = 20, 300
	n, _ := startWith(t, func(c *config.Config) { c.HTTPMaxConnections = limit })
	addr := n.Addr("management").String()
	before := openFDs(t)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < flood; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	// let the server accept what it will
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	serverSide := openFDs(t) - before - flood
	if serverSide > limit+5 {
		t.Fatalf("the server holds %d descriptors for %d idle HTTP connections (limit %d)", serverSide, flood, limit)
	}
	c, err := amqp091.Dial("amqp://guest:guest@" + amqpAddr2(t, n) + "/")
	if err != nil {
		t.Fatalf("AMQP during the HTTP flood: %v", err)
	}
	c.Close()
	t.Logf("%d idle HTTP connections: %d server-side descriptors", flood, serverSide)
}

func amqpAddr2(t *testing.T, n *node.Node) string {
	return n.Broker.Addrs()[0].String()
}

// TestHTTPPublishPropertiesChecked: properties a channel refuses are
// refused by HTTP publish with RabbitMQ's answers.
func TestHTTPPublishPropertiesChecked(t *testing.T) {
	_, base := start(t)
	g := func(m, p string, b any) resp { return call(t, m, base+p, "guest", "guest", b) }
	want(t, g("PUT", "/api/queues/%2F/q", map[string]any{}), 201)
	pub := func(props map[string]any) resp {
		return g("POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{"properties": props, "routing_key": "q", "payload": "x", "payload_encoding": "string"})
	}
	for _, tc := range []struct {
		props map[string]any
		body  string
	}{
		{map[string]any{"user_id": "someoneelse"}, `"reason":"406 PRECONDITION_FAILED - user_id property set to 'someoneelse' but authenticated user was 'guest'"`},
		{map[string]any{"delivery_mode": 300}, `406 PRECONDITION_FAILED - invalid message: {delivery_mode_unknown,300}`},
		{map[string]any{"expiration": "abc"}, `406 PRECONDITION_FAILED - invalid expiration 'abc': no_integer`},
		{map[string]any{"expiration": "10000000000000"}, `invalid expiration '10000000000000': {value_too_large,10000000000000}`},
		{map[string]any{"expiration": "9223372036854775808"}, `value_too_large`},
		{map[string]any{"expiration": "-5"}, `invalid expiration '-5': {value_negative,-5}`},
		{map[string]any{"timestamp": 1e300}, `timestamp must be an integer`},
	} {
		wantBody(t, pub(tc.props), 400, tc.body)
	}
	want(t, pub(map[string]any{"user_id": "guest", "delivery_mode": 2, "expiration": "60000", "timestamp": 1700000000}), 200)
	var q map[string]any
	g("GET", "/api/queues/%2F/q", nil).json(t, &q)
	if q["messages"] != 1.0 {
		t.Fatalf("%v messages, want only the valid one", q["messages"])
	}
}
