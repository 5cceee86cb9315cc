package lb

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"go/build"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/testenv"
)

// guideFile is the guide's file <name>, kept in the repository as the
// user's configuration (examples/guide).
func guideFile(t *testing.T, name string) string {
	return filepath.Join(testenv.RepoRoot(t), "examples", "guide", name)
}

func TestGuideConfigVerbatim(t *testing.T) {
	cfg, err := ParseFiles([]string{guideFile(t, "haproxy.cfg")})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Global.Daemon || cfg.Global.Maxconn != 4096 {
		t.Fatalf("global %+v", cfg.Global)
	}
	if len(cfg.Proxies) != 2 {
		t.Fatalf("%d proxies", len(cfg.Proxies))
	}
	rc := cfg.Proxies[0]
	if rc.Name != "rabbitmq_cluster" || rc.Mode != "tcp" || rc.Balance != "roundrobin" || rc.Binds[0] != "172.16.150.132:5672" ||
		rc.Retries != 3 || rc.Timeouts.Connect != 5*time.Second || rc.Timeouts.Client != 30*time.Second || rc.Timeouts.Server != 15*time.Second || !rc.TCPLog || !rc.DontLogNull || rc.Maxconn != 2000 {
		t.Fatalf("rabbitmq_cluster %+v", rc)
	}
	if len(rc.Servers) != 2 {
		t.Fatal("servers")
	}
	a := rc.Servers[0]
	if a.Name != "A" || a.Addr != "172.16.150.130:5672" || !a.Check || a.Inter != 5*time.Second || a.Rise != 2 || a.Fall != 3 {
		t.Fatalf("server A %+v", a)
	}
	mon := cfg.Proxies[1]
	if mon.Mode != "http" || !mon.Stats.Enable || mon.Stats.URI != "/monitor" || mon.Stats.Refresh != 5*time.Second || !mon.HTTPLog {
		t.Fatalf("monitor %+v", mon)
	}
	var chroot bool
	for _, w := range cfg.Warnings {
		if strings.Contains(w, "haproxy.cfg:8: 'chroot'") {
			chroot = true
		}
	}
	if !chroot {
		t.Fatalf("no warning with line number for chroot: %v", cfg.Warnings)
	}
}

func TestParseErrorsHaveLines(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"global\n  bogus 1\n", "x.cfg:2: unknown keyword 'bogus' in 'global'"},
		{"listen a\n  bind :1\n  balance magic\n", "x.cfg:3: unknown balance algorithm 'magic'"},
		{"listen a\n  bind :1\n  server s 1.2.3.4:5 check rise x\n", "x.cfg:3: server 's': 'rise' expects a non-negative integer"},
		{"listen a\n  bind :1\n  timeout connect 5x\n", "x.cfg:3: invalid time value"},
		{"listen a\n  server s 1.2.3.4\n", "x.cfg:2: server 's': address '1.2.3.4' has no port"},
		{"frontend f\n  bind :1\n  default_backend nope\n", "x.cfg:1: frontend 'f' refers to backend 'nope'"},
		{"  mode tcp\n", "x.cfg:1: 'mode' outside of a section"},
		{"listen a\n  bind :1\n  option \"unterminated\n", "x.cfg:3: unterminated quote"},
	} {
		_, err := Parse(strings.NewReader(tc.in), "x.cfg")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.want)
		}
	}
}

// echoServer answers each connection with its name, then echoes.
type echoServer struct {
	name string
	ln   net.Listener
	mu   sync.Mutex
	conn []net.Conn
	hdrs []string // first line received when expectProxy
	exp  bool
}

func newEcho(t *testing.T, name string) *echoServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{name: name, ln: ln}
	go e.serve()
	t.Cleanup(e.kill)
	return e
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

func (e *echoServer) serve() {
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		e.mu.Lock()
		e.conn = append(e.conn, c)
		exp := e.exp
		e.mu.Unlock()
		go func() {
			r := bufio.NewReader(c)
			if exp {
				if line, err := readProxyHeader(r); err == nil {
					e.mu.Lock()
					e.hdrs = append(e.hdrs, line)
					e.mu.Unlock()
				}
			}
			fmt.Fprintf(c, "%s\n", e.name)
			io.Copy(c, r)
			c.Close()
		}()
	}
}

func readProxyHeader(r *bufio.Reader) (string, error) {
	b, err := r.Peek(12)
	if err != nil {
		return "", err
	}
	if string(b) == string(v2sig) {
		h := make([]byte, 16)
		io.ReadFull(r, h)
		n := int(h[14])<<8 | int(h[15])
		body := make([]byte, n)
		io.ReadFull(r, body)
		src := net.IP(body[0:4])
		return fmt.Sprintf("v2 %s:%d", src, int(body[8])<<8|int(body[9])), nil
	}
	line, err := r.ReadString('\n')
	return strings.TrimSpace(line), err
}

// stop closes the listener (new connections refused) but keeps sessions.
func (e *echoServer) stop() { e.ln.Close() }

func (e *echoServer) kill() {
	e.ln.Close()
	e.mu.Lock()
	for _, c := range e.conn {
		c.Close()
	}
	e.mu.Unlock()
}

func startLB(t *testing.T, text string) (*Runtime, string) {
	t.Helper()
	cfg, err := Parse(strings.NewReader(text), "test.cfg")
	if err != nil {
		t.Fatal(err)
	}
	rt := New(slog.New(slog.DiscardHandler))
	if err := rt.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		rt.Close(ctx, false)
	})
	return rt, rt.Addr(cfg.Proxies[0].Binds[0]).String()
}

func hello(t *testing.T, addr string) (string, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return "", nil
	}
	return strings.TrimSpace(line), c
}

func cfgText(extra string, servers ...string) string {
	var b strings.Builder
	b.WriteString("defaults\n  mode tcp\n  timeout connect 1s\n  retries 3\n  option redispatch\nlisten test\n  bind 127.0.0.1:0\n" + extra)
	for _, s := range servers {
		b.WriteString("  server " + s + "\n")
	}
	return b.String()
}

func TestRoundRobinDistribution(t *testing.T) {
	a, b, c := newEcho(t, "A"), newEcho(t, "B"), newEcho(t, "C")
	_, addr := startLB(t, cfgText("  balance roundrobin\n", "A "+a.addr(), "B "+b.addr(), "C "+c.addr()))
	count := map[string]int{}
	for i := 0; i < 30; i++ {
		name, conn := hello(t, addr)
		count[name]++
		conn.Close()
	}
	if count["A"] != 10 || count["B"] != 10 || count["C"] != 10 {
		t.Fatalf("distribution %v", count)
	}
}

func TestWeightedRoundRobin(t *testing.T) {
	a, b := newEcho(t, "A"), newEcho(t, "B")
	_, addr := startLB(t, cfgText("  balance roundrobin\n", "A "+a.addr()+" weight 3", "B "+b.addr()+" weight 1"))
	count := map[string]int{}
	for i := 0; i < 40; i++ {
		name, conn := hello(t, addr)
		count[name]++
		conn.Close()
	}
	if count["A"] != 30 || count["B"] != 10 {
		t.Fatalf("weighted distribution %v", count)
	}
}

func waitStatus(t *testing.T, rt *Runtime, server, want string, d time.Duration) Row {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, r := range rt.Rows() {
			if r.SvName == server && r.Status == want {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %s never reached %q: %+v", server, want, rt.Rows())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFallAndRiseExactly(t *testing.T) {
	a := newEcho(t, "A")
	addr := a.addr()
	rt, _ := startLB(t, cfgText("", "A "+addr+" check inter 150ms rise 2 fall 3"))
	waitStatus(t, rt, "A", "UP", time.Second)
	a.kill()
	// going down shows the fall progress, then DOWN after exactly 3 failures
	waitStatus(t, rt, "A", "UP 1/3", 2*time.Second)
	r := waitStatus(t, rt, "A", "DOWN", 2*time.Second)
	if r.Chkfail != 3 {
		t.Fatalf("marked down after %d failed checks, want fall=3", r.Chkfail)
	}
	// bring it back on the same address: UP after exactly rise=2 successes
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot rebind %s: %v", addr, err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	waitStatus(t, rt, "A", "DOWN 1/2", 2*time.Second)
	waitStatus(t, rt, "A", "UP", 2*time.Second)
	if r := waitStatus(t, rt, "A", "UP", 0); r.Chkfail != 3 {
		t.Fatalf("failures counted while coming up: %d", r.Chkfail)
	}
}

func TestNoClientFailureWhileOneBackendUp(t *testing.T) {
	a, b := newEcho(t, "A"), newEcho(t, "B")
	_, addr := startLB(t, cfgText("", "A "+a.addr()+" check inter 10s", "B "+b.addr()+" check inter 10s"))
	a.kill() // checks will not notice for 10s: only retries/redispatch save clients
	for i := 0; i < 40; i++ {
		name, conn := hello(t, addr)
		if name != "B" {
			t.Fatalf("connection %d got %q", i, name)
		}
		conn.Close()
	}
}

func TestShutdownSessionsOnMarkedDown(t *testing.T) {
	a := newEcho(t, "A")
	rt, addr := startLB(t, cfgText("", "A "+a.addr()+" check inter 30ms fall 2 on-marked-down shutdown-sessions"))
	name, conn := hello(t, addr)
	if name != "A" {
		t.Fatal(name)
	}
	defer conn.Close()
	a.stop() // the session stays open on A; checks start failing
	waitStatus(t, rt, "A", "DOWN", 2*time.Second)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("session not shut down when the server went down: %v", err)
	}
}

func TestBackupServer(t *testing.T) {
	a, bk := newEcho(t, "A"), newEcho(t, "BK")
	rt, addr := startLB(t, cfgText("", "A "+a.addr()+" check inter 20ms fall 1", "BK "+bk.addr()+" backup"))
	for i := 0; i < 5; i++ {
		if name, c := hello(t, addr); name != "A" {
			t.Fatalf("backup used while the active server is up: %s", name)
		} else {
			c.Close()
		}
	}
	a.kill()
	waitStatus(t, rt, "A", "DOWN", 2*time.Second)
	if name, c := hello(t, addr); name != "BK" {
		t.Fatalf("backup not used: %q", name)
	} else {
		c.Close()
	}
}

func TestLeastConn(t *testing.T) {
	a, b := newEcho(t, "A"), newEcho(t, "B")
	rt, addr := startLB(t, cfgText("  balance leastconn\n", "A "+a.addr(), "B "+b.addr()))
	first, c1 := hello(t, addr)
	defer c1.Close()
	second, c2 := hello(t, addr)
	defer c2.Close()
	if first == second {
		t.Fatalf("leastconn sent both to %s", first)
	}
	c2.Close()
	// wait until the proxy has seen the second session end
	deadline := time.Now().Add(5 * time.Second)
	for {
		cur := int64(0)
		for _, r := range rt.Rows() {
			if r.SvName == second {
				cur = r.Scur
			}
		}
		if cur == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	third, c3 := hello(t, addr)
	defer c3.Close()
	if third != second {
		t.Fatalf("leastconn chose %s, the server with one session", third)
	}
}

func TestStatsCSVAndPage(t *testing.T) {
	a := newEcho(t, "A")
	text := cfgText("", "A "+a.addr()+" check inter 50ms") + "listen monitor\n  bind localhost:0\n  mode http\n  stats enable\n  stats uri /monitor\n  stats refresh 5s\n"
	cfg, err := Parse(strings.NewReader(text), "t.cfg")
	if err != nil {
		t.Fatal(err)
	}
	rt := New(slog.New(slog.DiscardHandler))
	if err := rt.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background(), false)
	_, c := hello(t, rt.Addr(cfg.Proxies[0].Binds[0]).String())
	c.Write([]byte("ping\n"))
	c.Close()
	mon := "http://" + rt.Addr(cfg.Proxies[1].Binds[0]).String()
	time.Sleep(100 * time.Millisecond)
	resp, err := http.Get(mon + "/monitor;csv")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(resp.Body).ReadAll()
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[strings.TrimPrefix(h, "# ")] = i
	}
	for _, c := range []string{"pxname", "svname", "qcur", "scur", "smax", "slim", "stot", "bin", "bout", "status", "chkfail", "downtime", "check_status"} {
		if _, ok := col[c]; !ok {
			t.Fatalf("CSV lacks column %s", c)
		}
	}
	var found bool
	for _, r := range recs[1:] {
		if r[col["pxname"]] == "test" && r[col["svname"]] == "A" {
			found = true
			if r[col["status"]] != "UP" || r[col["stot"]] != "1" || r[col["check_status"]] != "L4OK" {
				t.Fatalf("server row %v", r)
			}
		}
	}
	if !found {
		t.Fatalf("no row for test/A: %v", recs)
	}
	resp, _ = http.Get(mon + "/monitor")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Refresh") != "5" || !strings.Contains(string(body), "rabbitmq") && !strings.Contains(string(body), "test") {
		t.Fatalf("stats page: refresh %q", resp.Header.Get("Refresh"))
	}
	resp, _ = http.Get(mon + "/metrics")
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `haproxy_server_status{proxy="test",server="A"} 1`) {
		t.Fatalf("metrics: %s", body)
	}
}

func TestProxyProtocolHeaders(t *testing.T) {
	for _, v := range []string{"send-proxy", "send-proxy-v2"} {
		e := newEcho(t, "A")
		e.mu.Lock()
		e.exp = true
		e.mu.Unlock()
		_, addr := startLB(t, cfgText("", "A "+e.addr()+" "+v))
		name, c := hello(t, addr)
		if name != "A" {
			t.Fatal(name)
		}
		local := c.LocalAddr().(*net.TCPAddr)
		c.Close()
		e.mu.Lock()
		h := e.hdrs
		e.mu.Unlock()
		if len(h) != 1 {
			t.Fatalf("%s: no header", v)
		}
		want := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d ", local.Port)
		if v == "send-proxy-v2" {
			want = fmt.Sprintf("v2 127.0.0.1:%d", local.Port)
		}
		if !strings.HasPrefix(h[0], want) {
			t.Fatalf("%s: header %q, want prefix %q", v, h[0], want)
		}
	}
}

func TestReloadKeepsEstablishedSession(t *testing.T) {
	a, b := newEcho(t, "A"), newEcho(t, "B")
	text := cfgText("", "A "+a.addr())
	cfg, _ := Parse(strings.NewReader(text), "t.cfg")
	rt := New(slog.New(slog.DiscardHandler))
	if err := rt.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background(), false)
	addr := rt.Addr(cfg.Proxies[0].Binds[0]).String()
	name, c := hello(t, addr)
	if name != "A" {
		t.Fatal(name)
	}
	defer c.Close()
	// reload: same bind, the server list now only has B
	cfg2, _ := Parse(strings.NewReader(cfgText("", "B "+b.addr())), "t.cfg")
	if err := rt.Apply(cfg2); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	c.Write([]byte("still there\n"))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "still there\n" {
		t.Fatalf("established session broken by reload: %q %v", line, err)
	}
	if name2, c2 := hello(t, addr); name2 != "B" {
		t.Fatalf("new sessions after reload go to %q", name2)
	} else {
		c2.Close()
	}
}

// TestImportsNoBrokerPackage enforces the architecture rule.
func TestImportsNoBrokerPackage(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "github.com/warrenmq/warren/") {
			t.Errorf("internal/lb imports %s; it must not import broker packages", imp)
		}
	}
}

func TestIdleTimeouts(t *testing.T) {
	a := newEcho(t, "A")
	_, addr := startLB(t, "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 10s\nlisten test\n  bind 127.0.0.1:0\n  server A "+a.addr()+"\n")
	name, c := hello(t, addr)
	if name != "A" {
		t.Fatal(name)
	}
	defer c.Close()
	// active: keep talking for a second, the session stays up
	r := bufio.NewReader(c)
	for i := 0; i < 10; i++ {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "x%d\n", i)
		if l, err := r.ReadString('\n'); err != nil || l != fmt.Sprintf("x%d\n", i) {
			t.Fatalf("active session cut: %q %v", l, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// idle: closed after timeout client
	start := time.Now()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("idle session not closed")
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("closed after %v, far beyond timeout client 1s", el)
	}
}

func TestSessionLogToSyslog(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	a := newEcho(t, "A")
	text := fmt.Sprintf("global\n  log %s local0 info\ndefaults\n  log global\n  mode tcp\n  option tcplog\n  timeout connect 1s\nlisten logged\n  bind 127.0.0.1:0\n  server A %s\n", pc.LocalAddr(), a.addr())
	_, addr := startLB(t, text)
	_, c := hello(t, addr)
	c.Write([]byte("ping\n"))
	c.Close()
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no syslog datagram: %v", err)
	}
	msg := string(buf[:n])
	// <134> = local0 (16*8) + info (6)
	if !strings.HasPrefix(msg, "<134>") || !strings.Contains(msg, "logged logged/A") {
		t.Fatalf("syslog line %q", msg)
	}
}

func TestServerMaxconnQueues(t *testing.T) {
	a := newEcho(t, "A")
	_, addr := startLB(t, "defaults\n  mode tcp\n  timeout connect 1s\n  timeout queue 3s\nlisten q\n  bind 127.0.0.1:0\n  server A "+a.addr()+" maxconn 1\n")
	name, first := hello(t, addr)
	if name != "A" {
		t.Fatal(name)
	}
	got := make(chan string, 1)
	go func() {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			got <- "dial: " + err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			got <- "read: " + err.Error()
			return
		}
		got <- strings.TrimSpace(line)
	}()
	select {
	case g := <-got:
		t.Fatalf("second session served while the server is at maxconn 1: %q", g)
	case <-time.After(300 * time.Millisecond):
	}
	first.Close() // frees the slot: the queued session proceeds
	select {
	case g := <-got:
		if g != "A" {
			t.Fatalf("queued session: %q", g)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("queued session never served")
	}
}
