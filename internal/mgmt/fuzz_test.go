package mgmt_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// fuzzMethods are the methods the fuzzer picks from.
var fuzzMethods = []string{"GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"}

// FuzzManagementAPI sends arbitrary methods, paths, queries and bodies to
// the management API as an administrator and as a management user: the
// node never answers 500 or drops the connection (a recovered panic), and
// JSON answers are JSON.
func FuzzManagementAPI(f *testing.F) {
	_, base := start(f)
	admin := func(m, p string, b any) {
		if r := callTB(f, m, base+p, "guest", "guest", b); r.status >= 300 {
			f.Fatalf("setup %s %s: %d %s", m, p, r.status, r.body)
		}
	}
	admin("PUT", "/api/users/fz", map[string]any{"password": "p", "tags": "management"})
	admin("PUT", "/api/permissions/%2F/fz", map[string]string{"configure": "^fz", "write": ".*", "read": ".*"})
	admin("PUT", "/api/queues/%2F/fzq", map[string]any{})
	for _, s := range []struct {
		m          uint8
		path, q    string
		body       string
		asMgmtUser bool
	}{
		{0, "queues", "page=184467440737095517", "", false},
		{0, "queues/%2F", "page=1&page_size=500&name=(&use_regex=true", "", false},
		{1, "queues/%2F/fzq", "", `{"durable":true,"arguments":{"x-expires":1e300}}`, false},
		{1, "queues/%2F/" + strings.Repeat("q", 300), "", `{}`, false},
		{2, "queues/%2F/fzq/get", "", `{"count":-5,"ackmode":"ack_requeue_false","truncate":-1}`, false},
		{2, "exchanges/%2F/amq.default/publish", "", `{"properties":{"delivery_mode":300,"priority":-1,"headers":{"a":{"b":[1,2,{"c":null}]}},"timestamp":1e300},"routing_key":"fzq","payload":"x","payload_encoding":"base64"}`, false},
		{1, "policies/%2F/p", "", `{"pattern":"^","definition":{"ha-mode":"exactly","ha-params":1e300},"priority":1e300}`, true},
		{1, "permissions/%2F/fz", "", `{"configure":"(","write":"","read":""}`, false},
		{2, "definitions", "", `{"vhosts":[{"name":"\u0000"}],"queues":[{"name":"q","vhost":"\u0000","arguments":{"x-max-priority":1e10}}]}`, false},
		{3, "vhosts/%2F", "", "", true},
		{1, "warren/disk_free_limit", "", `{"mem_relative":1e308}`, false},
		{2, "bindings/%2F/e/amq.direct/q/fzq", "", `{"routing_key":"k","arguments":{"x-match":[]}}`, false},
		{3, "bindings/%2F/e/amq.direct/q/fzq/%FF", "", "", false},
		{1, "users/%FF", "", `{"password":1,"tags":[1,null]}`, false},
		{1, "users/u", "", `{"password_hash":"x","hashing_algorithm":"nope"}`, false},
	} {
		f.Add(s.m, s.path, s.q, []byte(s.body), s.asMgmtUser)
	}
	f.Fuzz(func(t *testing.T, m uint8, path, query string, body []byte, asMgmtUser bool) {
		u, err := url.Parse(base + "/api/" + path)
		if err != nil || strings.ContainsAny(path, "?#") {
			return
		}
		u.RawQuery = query
		req, err := http.NewRequest(fuzzMethods[int(m)%len(fuzzMethods)], u.String(), bytes.NewReader(body))
		if err != nil {
			return
		}
		if asMgmtUser {
			req.SetBasicAuth("fz", "p")
		} else {
			req.SetBasicAuth("guest", "guest")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v (a panic in the handler?)", req.Method, u, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s %q: %d %s", req.Method, u, body, resp.StatusCode, raw)
		}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && req.Method != "HEAD" && !json.Valid(raw) {
			t.Fatalf("%s %s: invalid JSON answer %q", req.Method, u, raw)
		}
	})
}

// FuzzDefinitionsImport posts arbitrary definitions: the answer is 204 or
// 400, never 500, and a refused file changes nothing.
func FuzzDefinitionsImport(f *testing.F) {
	_, base := start(f)
	for _, s := range []string{
		`{"vhosts":[{"name":"a"}],"queues":[{"name":"q","vhost":"a","durable":true,"arguments":{"x-message-ttl":1000}}]}`,
		`{"vhosts":[{"name":"b"}],"topic_permissions":[{"user":"guest","vhost":"b","exchange":"amq.topic","write":".*","read":".*"}]}`,
		`{"permissions":[{"user":"guest","vhost":"/","configure":"(","write":"","read":""}]}`,
		`{"exchanges":[{"name":"x","vhost":"/","type":"x-nope"}]}`,
		`{"bindings":[{"source":"amq.direct","vhost":"/","destination":"nowhere","destination_type":"queue","routing_key":"k"}]}`,
		`{"policies":[{"name":"p","vhost":"/","pattern":"^","definition":{"message-ttl":-1}}]}`,
		`{"users":[{"name":"u","password_hash":"x","hashing_algorithm":"md4","tags":"administrator"}]}`,
		`[]`, `null`, `{"queues":[null]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := callTB(t, "GET", base+"/api/definitions", "guest", "guest", nil)
		req, _ := http.NewRequest("POST", base+"/api/definitions", bytes.NewReader(body))
		req.SetBasicAuth("guest", "guest")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%v (a panic in the handler?)", err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case 204:
		case 400:
			after := callTB(t, "GET", base+"/api/definitions", "guest", "guest", nil)
			if !bytes.Equal(before.body, after.body) {
				t.Fatalf("a refused import (%s) changed the definitions:\n%s\n%s", raw, before.body, after.body)
			}
		default:
			t.Fatalf("import of %q: %d %s", body, resp.StatusCode, raw)
		}
	})
}

// callTB is call for setup from a testing.F.
func callTB(t testing.TB, method, url, user, pass string, body any) resp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.SetBasicAuth(user, pass)
	req.Header.Set("Content-Type", "application/json")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, b}
}
