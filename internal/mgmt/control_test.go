package mgmt_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/broker"
)

// controlCall performs one control request the way warrenctl does: fetch a
// nonce, sign the request with the cookie. It returns the answer and the
// nonce used (for replay tests).
func controlCall(t *testing.T, base, cookie, method, path string, body []byte) (resp, string, http.Header) {
	t.Helper()
	r, err := http.Get(base + "/control/challenge")
	if err != nil {
		t.Fatal(err)
	}
	var ch struct{ Nonce string }
	json.NewDecoder(r.Body).Decode(&ch)
	r.Body.Close()
	if ch.Nonce == "" {
		t.Fatalf("no nonce (status %d)", r.StatusCode)
	}
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
	req.Header.Set("Authorization", auth.ControlAuthScheme+" nonce="+ch.Nonce+",mac="+auth.ControlMAC(cookie, ch.Nonce, method, req.URL.RequestURI(), body))
	return do(t, req), ch.Nonce, req.Header
}

func do(t *testing.T, req *http.Request) resp {
	t.Helper()
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, b}
}

// TestControlVerbsNotOnManagementAPI: an administrator with HTTP basic
// auth cannot reach the node's control verbs; the cookie sent as a header
// (as warrenctl used to) is not accepted either; a user named "warrenctl"
// gets no special permissions.
func TestControlVerbsNotOnManagementAPI(t *testing.T) {
	n, base := start(t)
	g := func(m, p string, b any) resp { return call(t, m, base+p, "guest", "guest", b) }
	for _, v := range []string{"stop_app", "start_app", "disk_free_limit", "vm_memory_high_watermark", "status", "environment", "authenticate_user"} {
		r := g("POST", "/api/warren/"+v, map[string]any{"bytes": 1})
		if r.status != 404 {
			t.Errorf("management API POST /api/warren/%s as administrator: %d %s, want 404", v, r.status, r.body)
		}
	}
	if !n.Broker.Running() {
		t.Fatal("the management API stopped the app")
	}
	// the cookie in a header does not authenticate on the management port
	req, _ := http.NewRequest("POST", base+"/api/warren/stop_app", nil)
	req.Header.Set("X-Warren-Cookie", n.Cookie)
	if r := do(t, req); r.status != 401 {
		t.Fatalf("cookie header on the management port: %d %s", r.status, r.body)
	}
	if !n.Broker.Running() {
		t.Fatal("the cookie header stopped the app")
	}
	// an administrator named warrenctl with no permissions on vhost "priv"
	want(t, g("PUT", "/api/vhosts/priv", nil), 201)
	want(t, g("PUT", "/api/users/warrenctl", map[string]any{"password": "x", "tags": "administrator"}), 201)
	r := call(t, "PUT", base+"/api/queues/priv/stolen", "warrenctl", "x", map[string]any{})
	if r.status != 401 || !strings.Contains(string(r.body), "Access refused to vhost 'priv'") {
		t.Fatalf("user warrenctl declared a queue in a vhost it has no permission for: %d %s", r.status, r.body)
	}
}

// TestControlListenerChallengeResponse: the control listener answers only
// a request signed over a fresh nonce with the cookie; basic auth, a wrong
// cookie, a replayed nonce and a tampered request are refused, and the
// answer proves the node knows the cookie.
func TestControlListenerChallengeResponse(t *testing.T) {
	n, _ := start(t)
	cbase := "http://" + n.Addr("control").String()
	if !strings.HasPrefix(n.Addr("control").String(), "127.0.0.1:") {
		t.Fatalf("control listener on %s, want loopback", n.Addr("control"))
	}
	// basic auth of an administrator: refused
	if r := call(t, "GET", cbase+"/api/overview", "guest", "guest", nil); r.status != 401 {
		t.Fatalf("basic auth on the control listener: %d %s", r.status, r.body)
	}
	// the right cookie: accepted, with the node's proof
	r, nonce, _ := controlCall(t, cbase, n.Cookie, "GET", "/api/warren/status", nil)
	want(t, r, 200)
	_ = nonce
	// wrong cookie
	r, _, _ = controlCall(t, cbase, "WRONGWRONGWRONGWRONG", "POST", "/api/warren/stop_app", nil)
	if r.status != 401 || !n.Broker.Running() {
		t.Fatalf("wrong cookie: %d %s (running %v)", r.status, r.body, n.Broker.Running())
	}
	// replay: the same signed request twice; the second is refused
	body := []byte(`{"bytes": 1000}`)
	r, nonce, hdr := controlCall(t, cbase, n.Cookie, "PUT", "/api/warren/disk_free_limit", body)
	want(t, r, 204)
	req, _ := http.NewRequest("PUT", cbase+"/api/warren/disk_free_limit", bytes.NewReader(body))
	req.Header = hdr.Clone()
	if r := do(t, req); r.status != 401 {
		t.Fatalf("replayed nonce %s: %d %s", nonce, r.status, r.body)
	}
	// tampering: a signature for one request used for another
	rr, _ := http.Get(cbase + "/control/challenge")
	var ch struct{ Nonce string }
	json.NewDecoder(rr.Body).Decode(&ch)
	rr.Body.Close()
	req, _ = http.NewRequest("POST", cbase+"/api/warren/stop_app", nil)
	req.Header.Set("Authorization", auth.ControlAuthScheme+" nonce="+ch.Nonce+",mac="+auth.ControlMAC(n.Cookie, ch.Nonce, "GET", "/api/warren/status", nil))
	if r := do(t, req); r.status != 401 || !n.Broker.Running() {
		t.Fatalf("tampered request: %d %s", r.status, r.body)
	}
	// and the real thing works
	r, nonce, _ = controlCall(t, cbase, n.Cookie, "POST", "/api/warren/stop_app", nil)
	want(t, r, 204)
	if n.Broker.Running() {
		t.Fatal("stop_app over the control listener did not stop the app")
	}
	r, _, _ = controlCall(t, cbase, n.Cookie, "POST", "/api/warren/start_app", nil)
	want(t, r, 204)
}

// TestControlNodeProof: the answer carries HMAC(cookie, nonce), so
// warrenctl can tell the node from an impostor on the port.
func TestControlNodeProof(t *testing.T) {
	n, _ := start(t)
	cbase := "http://" + n.Addr("control").String()
	rr, _ := http.Get(cbase + "/control/challenge")
	var ch struct{ Nonce string }
	json.NewDecoder(rr.Body).Decode(&ch)
	rr.Body.Close()
	req, _ := http.NewRequest("GET", cbase+"/api/overview", nil)
	req.Header.Set("Authorization", auth.ControlAuthScheme+" nonce="+ch.Nonce+",mac="+auth.ControlMAC(n.Cookie, ch.Nonce, "GET", "/api/overview", nil))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("X-Warren-Node-Proof") != auth.NodeProof(n.Cookie, ch.Nonce) {
		t.Fatalf("status %d, proof %q", res.StatusCode, res.Header.Get("X-Warren-Node-Proof"))
	}
}

// TestCookieFileReadableByOthersRefused: as Erlang refuses an
// .erlang.cookie readable by others, the node refuses such a cookie file.
func TestCookieFileReadableByOthersRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cookie")
	os.WriteFile(p, []byte("ABCDEFGHIJKLMNOPQRST"), 0o644)
	_, err := broker.EnsureCookie(p)
	if err == nil || !strings.Contains(err.Error(), "Cookie file "+p+" must be accessible by owner only") {
		t.Fatalf("0644 cookie file: %v", err)
	}
	os.Chmod(p, 0o600)
	if c, err := broker.EnsureCookie(p); err != nil || c != "ABCDEFGHIJKLMNOPQRST" {
		t.Fatalf("0600 cookie file: %q %v", c, err)
	}
}
