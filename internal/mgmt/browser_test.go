package mgmt_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// webdriver is a minimal W3C WebDriver client for chromedriver.
type webdriver struct {
	t    *testing.T
	base string
	sid  string
}

func (w *webdriver) do(method, path string, body any) map[string]any {
	w.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, w.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatalf("webdriver %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode >= 300 {
		w.t.Fatalf("webdriver %s %s: %d %v", method, path, resp.StatusCode, out)
	}
	return out
}

func (w *webdriver) find(css string) string {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last := ""
	for {
		b, _ := json.Marshal(map[string]string{"using": "css selector", "value": css})
		req, _ := http.NewRequest("POST", w.base+"/session/"+w.sid+"/element", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var out map[string]any
			json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if v, ok := out["value"].(map[string]any); ok && resp.StatusCode == 200 {
				for k, x := range v { // the W3C key (element-6066-...) or legacy ELEMENT
					if id, ok := x.(string); ok && (strings.HasPrefix(k, "element-") || k == "ELEMENT") {
						return id
					}
				}
			}
			last = fmt.Sprintf("%d %v", resp.StatusCode, out)
		}
		if time.Now().After(deadline) {
			src := w.do("GET", "/session/"+w.sid+"/source", nil)
			w.t.Fatalf("element %q never appeared (%.300s); page source: %.300v", css, last, src["value"])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *webdriver) text(css string) string {
	id := w.find(css)
	v := w.do("GET", "/session/"+w.sid+"/element/"+id+"/text", nil)
	s, _ := v["value"].(string)
	return s
}

func (w *webdriver) waitText(css, want string) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if strings.Contains(w.text(css), want) {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s never showed %q (has %q)", css, want, w.text(css))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *webdriver) typeInto(css, text string) {
	id := w.find(css)
	w.do("POST", "/session/"+w.sid+"/element/"+id+"/clear", map[string]any{})
	w.do("POST", "/session/"+w.sid+"/element/"+id+"/value", map[string]any{"text": text})
}

func (w *webdriver) click(css string) {
	id := w.find(css)
	w.do("POST", "/session/"+w.sid+"/element/"+id+"/click", map[string]any{})
}

func (w *webdriver) open(url string) {
	w.do("POST", "/session/"+w.sid+"/url", map[string]any{"url": url})
}

// TestBrowserUI logs in with headless Chromium, sees a queue declared by
// a client, publishes and gets a message through the UI, and saves a
// screenshot (to $WARREN_ARTIFACT_DIR, default /tmp/warren-artifacts).
func TestBrowserUI(t *testing.T) {
	n, base := start(t)
	c, err := amqp091.Dial("amqp://guest:guest@" + amqpAddr(t, base) + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, _ := c.Channel()
	if _, err := ch.QueueDeclare("ui-orders", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	_ = n
	w := newBrowser(t)
	w.open(base + "/")
	w.typeInto("#user", "guest")
	w.typeInto("#pass", "guest")
	w.click("#loginBtn")
	w.waitText("#who", "guest")
	w.open(base + "/#queues")
	w.waitText("#main", "ui-orders")
	w.open(base + "/#queue/%2F/ui-orders")
	w.waitText("#qname", "ui-orders")
	w.typeInto("#pp", "hello from the browser")
	w.click("#pub")
	w.waitText("#pubr", "Message published.")
	w.click("#get")
	w.waitText("#got", "hello from the browser")
	shot := w.do("GET", "/session/"+w.sid+"/screenshot", nil)
	png, err := base64.StdEncoding.DecodeString(shot["value"].(string))
	if err != nil || len(png) < 1000 {
		t.Fatalf("screenshot: %v (%d bytes)", err, len(png))
	}
	dir := os.Getenv("WARREN_ARTIFACT_DIR")
	if dir == "" {
		dir = "/tmp/warren-artifacts"
	}
	os.MkdirAll(dir, 0o755)
	p := filepath.Join(dir, "ui-queue-get.png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot saved to %s", p)
	// the message was requeued by the UI's default ack mode
	q, _ := ch.QueueDeclarePassive("ui-orders", true, false, false, false, nil)
	if q.Messages != 1 {
		t.Fatalf("queue holds %d messages after publish+get(requeue) in the UI", q.Messages)
	}
}

// newBrowser starts chromedriver and a headless Chromium session, both
// stopped at the end of the test.
func newBrowser(t *testing.T) *webdriver {
	t.Helper()
	chromium, err1 := exec.LookPath("chromium")
	driver, err2 := exec.LookPath("chromedriver")
	if err1 != nil || err2 != nil {
		t.Skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(driver, fmt.Sprintf("--port=%d", port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	w := &webdriver{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	for i := 0; ; i++ {
		if resp, err := http.Get(w.base + "/status"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 100 {
			t.Fatal("chromedriver did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	profile := t.TempDir()
	sess := w.do("POST", "/session", map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{"binary": chromium, "args": []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
			"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
			"--user-data-dir=" + profile, "--window-size=1200,900"}},
	}}})
	w.sid = sess["value"].(map[string]any)["sessionId"].(string)
	t.Cleanup(func() { w.do("DELETE", "/session/"+w.sid, nil) })

	return w
}

func (w *webdriver) script(js string) any {
	w.t.Helper()
	return w.do("POST", "/session/"+w.sid+"/execute/sync", map[string]any{"script": js, "args": []any{}})["value"]
}

// TestBrowserUIEncodesAttributes: a queue named to break out of the
// link's quotes stays one link to that very queue, with no injected
// attribute (a delete from its page must hit it, not queue "x").
func TestBrowserUIEncodesAttributes(t *testing.T) {
	_, base := start(t)
	evil := `x'onmouseover='document.title="pwned"'"y`
	for _, q := range []string{"x", evil} {
		want(t, call(t, "PUT", base+"/api/queues/%2F/"+url.PathEscape(q), "guest", "guest", map[string]any{}), 201)
	}
	w := newBrowser(t)
	w.open(base + "/")
	w.typeInto("#user", "guest")
	w.typeInto("#pass", "guest")
	w.click("#loginBtn")
	w.waitText("#who", "guest")
	w.open(base + "/#queues")
	w.waitText("#main", "onmouseover")
	if n := w.script(`return document.querySelectorAll("[onmouseover]").length`); n != 0.0 {
		t.Fatalf("%v elements carry an injected onmouseover attribute", n)
	}
	link := w.script(`const a = Array.from(document.querySelectorAll("#main a")).find((a) => a.textContent.startsWith("x'")); a.click(); return a.textContent`)
	if link != evil {
		t.Fatalf("link text %q, want %q", link, evil)
	}
	w.waitText("#qname", evil)
	if got := w.text("#qname"); got != evil {
		t.Fatalf("the evil queue's link opened queue %q", got)
	}
}
