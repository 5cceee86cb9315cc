package mgmt_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/broker"
)

var updateRoutes = flag.Bool("update-routes", false, "rewrite testdata/routes.golden from the running code")

// routePaths are the request targets TestRoutingMatrix sends: every
// resource's paths with a trailing slash, extra segments, a missing
// segment, names that need escaping (the default vhost "%2F", a space, a
// "/" inside a name, unicode, "%" itself, ".."), empty segments, and
// ?columns=, pagination and filtering. NODE stands for the node's name.
var routePaths = []string{
	"/api", "/api/", "//api/overview", "/api//overview", "/api/nothing", "/api/nothing/x", "/%61pi/whoami", "/api/%77hoami",
	"/api/overview", "/api/overview/", "/api/overview/x/y", "/api/whoami", "/api/whoami/x", "/api/cluster-name", "/api/cluster-name/x",
	"/api/nodes", "/api/nodes/", "/api/nodes/NODE", "/api/nodes/NODE/x", "/api/nodes/nope", "/api/extensions", "/api/extensions/x",
	// vhosts
	"/api/vhosts", "/api/vhosts/", "/api/vhosts/%2F", "/api/vhosts/%2F/", "/api/vhosts/v%201", "/api/vhosts/a%2Fb", "/api/vhosts/%C3%A9%E2%82%AC",
	"/api/vhosts/nope", "/api/vhosts/%2F/permissions", "/api/vhosts/a%2Fb/permissions/", "/api/vhosts/nope/permissions", "/api/vhosts//permissions",
	"/api/vhosts/%2F/x", "/api/vhosts/%2F/permissions/x", "/api/vhosts/%2E%2E",
	// users and permissions
	"/api/users", "/api/users/", "/api/users/rt-mg", "/api/users/nope", "/api/users/rt-mg/permissions", "/api/users/rt-mg/x", "/api/users/a/b/c",
	"/api/users/n%20%2F%C3%BC",
	"/api/permissions", "/api/permissions/%2F", "/api/permissions/%2F/rt-mg", "/api/permissions/a%2Fb/guest", "/api/permissions/%2F/nope",
	"/api/permissions/%2F/rt-mg/x", "/api/permissions//rt-mg",
	// policies
	"/api/policies", "/api/policies/", "/api/policies/%2F", "/api/policies/nope", "/api/policies/%2F/p1", "/api/policies/a%2Fb/p%2F2",
	"/api/policies/%2F/nope", "/api/policies/%2F/p1/x", "/api/policies/v%201",
	// queues
	"/api/queues", "/api/queues/", "/api/queues?columns=name,vhost", "/api/queues?page=1&page_size=2", "/api/queues?page=9",
	"/api/queues?page=0", "/api/queues?name=q&use_regex=true", "/api/queues?name=%C3%BC", "/api/queues/%2F", "/api/queues/%2F/",
	"/api/queues/v%201", "/api/queues/nope", "/api/queues/%2F/q", "/api/queues/%2F/q/", "/api/queues/%2F/q%2F1", "/api/queues/v%201/sp%20ace",
	"/api/queues/a%2Fb/x%25y", "/api/queues/%C3%A9%E2%82%AC/%C3%BC", "/api/queues/%2F/nope", "/api/queues/nope/q", "/api/queues/%2F/q/bindings",
	"/api/queues/%2F/q/bindings/x", "/api/queues/%2F/q/contents", "/api/queues/%2F/q/contents/x", "/api/queues/%2F/q/get",
	"/api/queues/%2F/q/get/x", "/api/queues/%2F/q/x", "/api/queues/%2F/q?columns=name,arguments.x", "/api/queues//q", "/api/queues/%2F/%2E%2E",
	"/api/queues/%2F/q%2F1/bindings", "/api/queues/a%2Fb/x%25y/get",
	// exchanges
	"/api/exchanges", "/api/exchanges?columns=name", "/api/exchanges?page=2&page_size=3", "/api/exchanges/%2F", "/api/exchanges/%2F/x",
	"/api/exchanges/%2F/amq.default", "/api/exchanges/%2F/x%2Fy", "/api/exchanges/a%2Fb/e%20x", "/api/exchanges/%2F/nope",
	"/api/exchanges/nope/x", "/api/exchanges/%2F/x/publish", "/api/exchanges/%2F/x/publish/y", "/api/exchanges/%2F/amq.default/publish",
	"/api/exchanges/%2F/x/bindings/source", "/api/exchanges/%2F/x/bindings/destination", "/api/exchanges/%2F/x%2Fy/bindings/destination",
	"/api/exchanges/%2F/x/bindings", "/api/exchanges/%2F/x/bindings/source/y", "/api/exchanges/%2F/x/y", "/api/exchanges/%2F/x/",
	// bindings
	"/api/bindings", "/api/bindings/", "/api/bindings/%2F", "/api/bindings/a%2Fb", "/api/bindings/nope", "/api/bindings/%2F/e/x",
	"/api/bindings/%2F/e/x/q/q", "/api/bindings/%2F/e/x/e/x%2Fy", "/api/bindings/%2F/e/x/q/q/k", "/api/bindings/%2F/e/x/q/q/a%252Fb+c%257E",
	"/api/bindings/%2F/e/x/q/q/~", "/api/bindings/%2F/e/x/e/x%2Fy/r", "/api/bindings/%2F/x/x/q/q", "/api/bindings/%2F/e/x/z/q",
	"/api/bindings/%2F/e/x/q/q/k/extra", "/api/bindings/nope/e/x/q/q", "/api/bindings/a%2Fb/e/e%20x/q/x%25y",
	// connections, channels, consumers
	"/api/connections", "/api/connections/", "/api/connections?page=1", "/api/connections/nope", "/api/connections/nope/channels",
	"/api/connections/nope/x", "/api/connections/a/b/c", "/api/channels", "/api/channels/x", "/api/consumers", "/api/consumers/%2F",
	"/api/consumers/%2F/x",
	// definitions
	"/api/definitions", "/api/definitions/", "/api/definitions/%2F", "/api/definitions/a%2Fb", "/api/definitions/nope", "/api/definitions/a/b",
	// aliveness and health
	"/api/aliveness-test", "/api/aliveness-test/%2F", "/api/aliveness-test/nope", "/api/aliveness-test/%2F/x", "/api/health",
	"/api/health/checks", "/api/health/checks/alarms", "/api/health/checks/local-alarms", "/api/health/checks/virtual-hosts",
	"/api/health/checks/node-is-quorum-critical", "/api/health/checks/node-is-mirror-sync-critical", "/api/health/checks/nope",
	"/api/health/checks/alarms/x", "/api/health/x/alarms",
	// kinds Warren does not have
	"/api/parameters", "/api/parameters/shovel", "/api/parameters/shovel/%2F", "/api/parameters/shovel/%2F/n", "/api/global-parameters",
	"/api/global-parameters/n", "/api/topic-permissions", "/api/topic-permissions/%2F/guest", "/api/operator-policies/%2F/p",
	"/api/vhost-limits/%2F", "/api/user-limits", "/api/federation-links", "/api/shovels/%2F",
	// node control (404 on this listener)
	"/api/warren", "/api/warren/history", "/api/warren/history/x", "/api/warren/status", "/api/warren/nope",
	// UI
	"/", "/index.html", "/favicon.ico", "/favicon.ico/x", "/nope.txt",
	// longer than a request line RabbitMQ accepts
	"/api/queues/%2F/" + strings.Repeat("a", 8001),
}

// controlPaths are sent over the control listener (cookie), which serves
// the same /api paths without the read-only 405 and with the node verbs.
var controlPaths = []string{
	"/api", "/api/overview/x", "/api/nothing", "/nope", "/api/warren", "/api/warren/environment", "/api/warren/environment/x",
	"/api/warren/nope", "/api/warren/history", "/api/warren/status", "/api/queues/%2F/q", "/api/vhosts/%2F/permissions",
	"/api/definitions/%2F", "/api/health/checks/alarms", "/api/users/rt-mg",
}

// volatile answers change from run to run (figures, ports, paths): only
// the shape of their JSON is recorded.
func volatile(path string) bool {
	for _, p := range []string{"/api/overview", "/api/nodes", "/api/warren/history", "/api/warren/status", "/api/warren/environment"} {
		if path == p || strings.HasPrefix(path, p+"/") || strings.HasPrefix(path, p+"?") {
			return true
		}
	}
	return strings.HasPrefix(path, "/%61pi/") || path == "//api/overview" || path == "/api//overview" // overview or whoami, by other spellings
}

// TestRoutingMatrix sends every path of routePaths with each method as
// users of each tag, then the control listener's paths, in a fixed order
// (reads first, then creations, then deletions) against a fixed set of
// objects, and compares status, the headers a client sees and the body
// with testdata/routes.golden, recorded from the hand-written switch
// router this ServeMux replaced: every answer a client can get from the
// management API, including its errors, stays the same. A change meant to
// change answers rewrites the file (go test ./internal/mgmt -run
// TestRoutingMatrix -update-routes), and its diff shows what changed.
func TestRoutingMatrix(t *testing.T) {
	n, base := start(t)
	node := n.Broker.Config().NodeName
	cluster := n.Broker.Config().ClusterName
	g := func(m, p string, b any) {
		t.Helper()
		if r := call(t, m, base+p, "guest", "guest", b); r.status >= 300 {
			t.Fatalf("setup %s %s: %d %s", m, p, r.status, r.body)
		}
	}
	all := map[string]string{"configure": ".*", "write": ".*", "read": ".*"}
	for _, v := range []string{"v%201", "a%2Fb", "%C3%A9%E2%82%AC"} {
		g("PUT", "/api/vhosts/"+v, nil)
	}
	users := []struct{ short, tags string }{{"mg", "management"}, {"mon", "monitoring"}, {"pm", "policymaker"}, {"none", ""}}
	for _, u := range users {
		g("PUT", "/api/users/rt-"+u.short, map[string]any{"password": "p", "tags": u.tags})
		g("PUT", "/api/permissions/%2F/rt-"+u.short, all)
	}
	for _, q := range []string{"%2F/q", "%2F/q%2F1", "v%201/sp%20ace", "a%2Fb/x%25y", "%C3%A9%E2%82%AC/%C3%BC"} {
		g("PUT", "/api/queues/"+q, map[string]any{"durable": true, "arguments": map[string]any{"x-max-length": 10}})
	}
	g("PUT", "/api/exchanges/%2F/x", map[string]any{"type": "direct"})
	g("PUT", "/api/exchanges/%2F/x%2Fy", map[string]any{"type": "fanout"})
	g("PUT", "/api/exchanges/a%2Fb/e%20x", map[string]any{"type": "topic"})
	g("POST", "/api/bindings/%2F/e/x/q/q", map[string]any{"routing_key": "k"})
	g("POST", "/api/bindings/%2F/e/x/q/q", map[string]any{"routing_key": "a/b c~"})
	g("POST", "/api/bindings/%2F/e/x/e/x%2Fy", map[string]any{"routing_key": "r"})
	g("POST", "/api/bindings/a%2Fb/e/e%20x/q/x%25y", map[string]any{"routing_key": "#"})
	g("PUT", "/api/policies/%2F/p1", map[string]any{"pattern": "^zzz", "definition": map[string]any{"max-length": 5}})
	g("PUT", "/api/policies/a%2Fb/p%2F2", map[string]any{"pattern": "^zzz", "definition": map[string]any{"message-ttl": 5000}})
	for _, m := range []string{"one", "two", "three"} {
		g("POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{"properties": map[string]any{"delivery_mode": 2}, "routing_key": "q", "payload": m, "payload_encoding": "string"})
	}

	var got []string
	record := func(who, method, path string, r *http.Response, body []byte) {
		h := r.Header
		s := string(body)
		s = strings.ReplaceAll(s, node, "NODE")
		s = strings.ReplaceAll(s, `"`+broker.Version+`"`, `"VERSION"`)
		if cluster != "" {
			s = strings.ReplaceAll(s, cluster, "CLUSTER")
		}
		switch {
		case method == "HEAD" || len(s) == 0:
		case strings.HasPrefix(h.Get("Content-Type"), "application/json") && volatile(path):
			s = "shape " + jsonShape(body)
		case strings.Contains(s, `"password_hash"`):
			s = normalizeJSON(s)
		}
		if len(s) > 160 {
			sum := sha256.Sum256([]byte(s))
			s = fmt.Sprintf("%.48s... sha256:%s", s, hex.EncodeToString(sum[:8]))
		}
		if len(path) > 120 {
			path = path[:120] + fmt.Sprintf("...(%d bytes)", len(path))
		}
		line := fmt.Sprintf("%s %s %s -> %d", who, method, path, r.StatusCode)
		if ct, cc := h.Get("Content-Type"), h.Get("Cache-Control"); ct == "application/json" && cc == "no-cache" {
			line += " json" // writeJSON's headers
		} else if ct != "" || cc != "" {
			line += fmt.Sprintf(" ct=%q cc=%q", ct, cc)
		}
		for _, k := range []string{"Allow", "WWW-Authenticate"} {
			if v := h.Get(k); v != "" {
				line += fmt.Sprintf(" %s=%q", k, v)
			}
		}
		if s = strings.TrimSpace(s); s != "" {
			line += fmt.Sprintf(" %q", s)
		}
		got = append(got, line)
	}
	send := func(who, user, method, path string) {
		target := strings.ReplaceAll(path, "NODE", node)
		req, err := http.NewRequest(method, base+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, map[bool]string{true: "guest", false: "p"}[user == "guest"])
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		record(who, method, path, r, body)
	}
	// request lines a Go client does not send: CONNECT, the absolute
	// form, dot segments as they are
	addr := strings.TrimPrefix(base, "http://")
	for _, line := range []string{"CONNECT /api/vhosts/%2F", "CONNECT /api/queues/%2F/q", "CONNECT /api/nothing", "CONNECT /api/overview",
		"GET /api/queues/%2F/q/..", "GET /api/../api/overview", "GET /api/./vhosts", "GET http://x/api/vhosts/%2F", "GET /api/vhosts/%2F/./permissions"} {
		a := strings.ReplaceAll(rawRequest(t, addr, line), node, "NODE")
		a = strings.ReplaceAll(a, `\"`+broker.Version+`\"`, `\"VERSION\"`)
		if cluster != "" {
			a = strings.ReplaceAll(a, cluster, "CLUSTER")
		}
		got = append(got, "raw "+line+" -> "+a)
	}

	who := []struct{ short, user string }{{"anon", ""}, {"none", "rt-none"}, {"mg", "rt-mg"}, {"pm", "rt-pm"}, {"mon", "rt-mon"}, {"adm", "guest"}}
	// reads, then creations, then deletions (in reverse, so that objects
	// go before their vhosts)
	for _, pass := range [][]string{{"GET", "HEAD", "OPTIONS", "PATCH"}, {"POST", "PUT"}, {"DELETE"}} {
		paths := routePaths
		if pass[0] == "DELETE" {
			paths = slices.Clone(paths)
			slices.Reverse(paths)
		}
		for _, p := range paths {
			for _, m := range pass {
				for _, u := range who {
					if (u.short == "anon" || u.short == "none") && m != "GET" {
						continue // refused before any routing whatever the method
					}
					send(u.short, u.user, m, p)
				}
			}
		}
	}
	cbase := "http://" + n.Addr("control").String()
	for _, p := range controlPaths {
		for _, m := range []string{"GET", "HEAD", "POST", "PATCH"} {
			if p == "/api/warren/environment" && m == "POST" {
				continue // a body-less POST would set nothing, but keep the node as it is
			}
			r, body := controlDo(t, cbase, n.Cookie, m, p)
			record("ctl", m, p, r, body)
		}
	}

	const golden = "testdata/routes.golden"
	if *updateRoutes {
		if err := os.WriteFile(golden, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %d answers to %s", len(got), golden)
		return
	}
	f, err := os.Open(golden)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wantLines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		wantLines = append(wantLines, sc.Text())
	}
	if len(wantLines) != len(got) {
		t.Errorf("%d answers, golden file has %d", len(got), len(wantLines))
	}
	diffs := 0
	for i := 0; i < len(got) && i < len(wantLines); i++ {
		if got[i] != wantLines[i] {
			if diffs++; diffs <= 40 {
				t.Errorf("answer %d differs:\n got: %s\nwant: %s", i, got[i], wantLines[i])
			}
		}
	}
	if diffs > 0 {
		t.Errorf("%d of %d answers differ from %s", diffs, len(got), golden)
	}
}

// controlDo sends one signed request on the control listener.
func controlDo(t *testing.T, cbase, cookie, method, path string) (*http.Response, []byte) {
	t.Helper()
	rr, err := http.Get(cbase + "/control/challenge")
	if err != nil {
		t.Fatal(err)
	}
	var ch struct{ Nonce string }
	json.NewDecoder(rr.Body).Decode(&ch)
	rr.Body.Close()
	req, _ := http.NewRequest(method, cbase+path, nil)
	req.Header.Set("Authorization", auth.ControlAuthScheme+" nonce="+ch.Nonce+",mac="+auth.ControlMAC(cookie, ch.Nonce, method, req.URL.RequestURI(), nil))
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	return r, body
}

// jsonShape describes a JSON value by its keys: an object's sorted keys,
// a list's length and its first item's shape.
func jsonShape(raw []byte) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "invalid JSON"
	}
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return "{" + strings.Join(keys, ",") + "}"
	case []any:
		if len(x) == 0 {
			return "[]"
		}
		first, _ := json.Marshal(x[0])
		return fmt.Sprintf("[%d x %s]", len(x), jsonShape(first))
	}
	return fmt.Sprintf("%T", v)
}

// normalizeJSON blanks what differs between runs in otherwise fixed
// answers: password hashes (salted at random).
func normalizeJSON(s string) string {
	var v any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return s
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "password_hash" {
					x[k] = "HASH"
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return b.String()
}

// TestEscapedNames: a name is one path segment however it is spelled: the
// default vhost "/" as %2F, names holding "/", spaces, "%" and unicode
// reach the object of that exact name, and a "/" left unescaped is a
// segment boundary (so it names something else).
func TestEscapedNames(t *testing.T) {
	_, base := start(t)
	g := guest(t, base)
	want(t, g("PUT", "/api/vhosts/a%2Fb%20%C3%BC", nil), 201)
	for _, c := range []struct{ vh, q, vhName, qName string }{
		{"%2F", "q%2F1", "/", "q/1"},
		{"%2F", "sp%20ace%20%25", "/", "sp ace %"},
		{"a%2Fb%20%C3%BC", "%E2%82%AC%2F%2F", "a/b ü", "€//"},
		{"a%2Fb%20%C3%BC", "%2E%2E", "a/b ü", ".."},
	} {
		want(t, g("PUT", "/api/queues/"+c.vh+"/"+c.q, map[string]any{}), 201)
		var q map[string]any
		r := g("GET", "/api/queues/"+c.vh+"/"+c.q, nil)
		want(t, r, 200)
		r.json(t, &q)
		if q["name"] != c.qName || q["vhost"] != c.vhName {
			t.Errorf("GET /api/queues/%s/%s: name %q vhost %q, want %q in %q", c.vh, c.q, q["name"], q["vhost"], c.qName, c.vhName)
		}
		var list []map[string]any
		g("GET", "/api/queues/"+c.vh+"?columns=name", nil).json(t, &list)
		found := false
		for _, it := range list {
			found = found || it["name"] == c.qName
		}
		if !found {
			t.Errorf("GET /api/queues/%s does not list %q: %v", c.vh, c.qName, list)
		}
		// the trailing slash names the same object
		want(t, g("GET", "/api/queues/"+c.vh+"/"+c.q+"/", nil), 200)
	}
	// "q/1" written with a bare slash is queue "q" then a sub-resource "1"
	want(t, g("GET", "/api/queues/%2F/q/1", nil), 404)
	// an exchange and a binding with escaped names, and the binding's
	// properties key (itself escaped) in the path
	want(t, g("PUT", "/api/exchanges/a%2Fb%20%C3%BC/x%2Fy", map[string]any{"type": "direct"}), 201)
	want(t, g("POST", "/api/bindings/a%2Fb%20%C3%BC/e/x%2Fy/q/%E2%82%AC%2F%2F", map[string]any{"routing_key": "k/1 ~"}), 201)
	var bs []map[string]any
	g("GET", "/api/bindings/a%2Fb%20%C3%BC/e/x%2Fy/q/%E2%82%AC%2F%2F", nil).json(t, &bs)
	if len(bs) != 1 || bs[0]["routing_key"] != "k/1 ~" || bs[0]["destination"] != "€//" {
		t.Fatalf("binding listed as %v", bs)
	}
	pk, _ := bs[0]["properties_key"].(string)
	want(t, g("DELETE", "/api/bindings/a%2Fb%20%C3%BC/e/x%2Fy/q/%E2%82%AC%2F%2F/"+url.PathEscape(pk), nil), 204)
	g("GET", "/api/bindings/a%2Fb%20%C3%BC/e/x%2Fy/q/%E2%82%AC%2F%2F", nil).json(t, &bs)
	if len(bs) != 0 {
		t.Fatalf("binding still there after DELETE with properties_key %q: %v", pk, bs)
	}
	want(t, g("DELETE", "/api/vhosts/a%2Fb%20%C3%BC", nil), 204)
	want(t, g("GET", "/api/vhosts/a%2Fb%20%C3%BC", nil), 404)
}

// rawRequest sends one request line as guest over a new connection and
// returns the answer, without its Date and Content-Length headers.
func rawRequest(t *testing.T, addr, line string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "%s HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nConnection: close\r\n\r\n", line)
	raw, _ := io.ReadAll(c)
	var out []string
	for _, l := range strings.Split(string(raw), "\r\n") {
		if !strings.HasPrefix(l, "Date:") && !strings.HasPrefix(l, "Content-Length:") {
			out = append(out, l)
		}
	}
	return fmt.Sprintf("%q", strings.Join(out, "|"))
}
