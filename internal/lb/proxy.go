package lb

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"log/syslog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Runtime runs a configuration: listeners, backends, health checks, stats.
// Apply may be called again to reload; established sessions continue.
type Runtime struct {
	// HAProxyChecks makes server health come from checks only, as in
	// HAProxy: live traffic errors count only for servers configured with
	// "observe layer4". Without it (the default) every checked server is
	// observed (see health.go). Set before Apply.
	HAProxyChecks bool

	log *slog.Logger

	mu        sync.Mutex
	listeners map[string]*listener // by bind address
	backends  map[string]*backend
	order     []*backend
	frontends []*frontend
	started   time.Time
	wg        sync.WaitGroup
	draining  atomic.Bool
	sock      *statsSocket // the runtime API (global "stats socket"), nil without one
}

// New returns an empty runtime.
func New(log *slog.Logger) *Runtime {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runtime{log: log, listeners: map[string]*listener{}, backends: map[string]*backend{}, started: time.Now()}
}

// frontend is what a listener hands sessions to.
type frontend struct {
	cfg     *Proxy
	backend *backend // nil for a pure stats listener
	stats   http.Handler
	cur     atomic.Int64
	total   atomic.Uint64
	max     atomic.Int64
	bin     atomic.Uint64
	bout    atomic.Uint64
	slots   chan struct{} // maxconn
	syslog  *syslog.Writer
}

type listener struct {
	addr string
	ln   net.Listener
	fe   atomic.Pointer[frontend]
	http *http.Server
}

// Apply starts cfg, or reloads to it: listeners on the same address are
// kept (their frontend swapped), new ones opened, missing ones closed.
func (rt *Runtime) Apply(cfg *Config) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	newBackends := map[string]*backend{}
	var order []*backend
	for _, px := range cfg.Proxies {
		if px.Kind == "frontend" || len(px.Servers) == 0 {
			continue
		}
		b := newBackend(px, rt.log)
		b.haproxyChecks = rt.HAProxyChecks
		newBackends[px.Name] = b
		order = append(order, b)
	}
	var fes []*frontend
	wanted := map[string]*frontend{}
	for _, px := range cfg.Proxies {
		if px.Kind == "backend" {
			continue
		}
		fe := &frontend{cfg: px}
		if px.Maxconn > 0 {
			fe.slots = make(chan struct{}, px.Maxconn)
		}
		switch {
		case len(px.UseBackends) > 0:
			fe.backend = newBackends[px.UseBackends[0]]
		case px.DefaultBackend != "":
			fe.backend = newBackends[px.DefaultBackend]
		default:
			fe.backend = newBackends[px.Name]
		}
		if px.Stats.Enable {
			fe.stats = rt.statsHandler(px)
		}
		if len(px.Log) >= 2 {
			w, err := dialSyslog(px.Log)
			if err != nil {
				rt.log.Warn("cannot reach the syslog target; session logs go to stdout", "proxy", px.Name, "target", px.Log, "err", err)
			} else {
				fe.syslog = w
			}
		}
		fes = append(fes, fe)
		for _, a := range px.Binds {
			wanted[a] = fe
		}
	}
	if err := rt.applyStatsSocket(cfg.Global.StatsSocket); err != nil {
		return err
	}
	// open new listeners first so a bad address fails the reload cleanly
	opened := map[string]*listener{}
	for a := range wanted {
		if rt.listeners[a] != nil {
			continue
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range opened {
				l.ln.Close()
			}
			return fmt.Errorf("cannot bind %s: %w", a, err)
		}
		opened[a] = &listener{addr: a, ln: ln}
	}
	for a, l := range opened {
		rt.listeners[a] = l
		l.fe.Store(wanted[a])
		rt.serve(l)
	}
	for a, l := range rt.listeners {
		fe, ok := wanted[a]
		if !ok {
			l.ln.Close()
			if l.http != nil {
				l.http.Close()
			}
			delete(rt.listeners, a)
			continue
		}
		l.fe.Store(fe)
	}
	old := rt.order
	rt.backends, rt.order, rt.frontends = newBackends, order, fes
	for _, b := range old {
		b.stop()
	}
	for _, b := range order {
		b.start()
	}
	return nil
}

// StatsSocketAddr is the runtime API's address (nil without one).
func (rt *Runtime) StatsSocketAddr() net.Addr {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.sock == nil {
		return nil
	}
	return rt.sock.ln.Addr()
}

// Addr returns the bound address of a bind line (for tests using port 0).
func (rt *Runtime) Addr(bind string) net.Addr {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if l := rt.listeners[bind]; l != nil {
		return l.ln.Addr()
	}
	return nil
}

func (rt *Runtime) serve(l *listener) {
	fe := l.fe.Load()
	if fe.stats != nil && fe.cfg.Mode == "http" {
		// an HTTP listener: the stats page (and metrics)
		l.http = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if cur := l.fe.Load(); cur.stats != nil {
				cur.stats.ServeHTTP(w, r)
				return
			}
			http.NotFound(w, r)
		}), ReadHeaderTimeout: 10 * time.Second}
		go l.http.Serve(l.ln)
		return
	}
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		for {
			c, err := l.ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				rt.log.Error("accept failed", "bind", l.addr, "err", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			fe := l.fe.Load()
			rt.wg.Add(1)
			go func() {
				defer rt.wg.Done()
				rt.session(fe, c.(*net.TCPConn))
			}()
		}
	}()
}

// session forwards one client connection.
func (rt *Runtime) session(fe *frontend, client *net.TCPConn) {
	start := time.Now()
	defer client.Close()
	if fe.slots != nil {
		select {
		case fe.slots <- struct{}{}:
			defer func() { <-fe.slots }()
		default:
			rt.log.Warn("frontend maxconn reached; connection refused", "frontend", fe.cfg.Name)
			return
		}
	}
	cur := fe.cur.Add(1)
	defer fe.cur.Add(-1)
	for {
		m := fe.max.Load()
		if cur <= m || fe.max.CompareAndSwap(m, cur) {
			break
		}
	}
	fe.total.Add(1)
	b := fe.backend
	if b == nil {
		return
	}
	srv, conn, retries, tc := b.connect(client.RemoteAddr())
	if srv == nil {
		rt.logSession(fe, b, nil, client, start, tc, 0, 0, retries, "SC")
		return
	}
	defer srv.release()
	if err := srv.sendProxyHeader(conn, client); err != nil {
		conn.Close()
		return
	}
	sess := srv.track(client, conn)
	defer srv.untrack(sess)
	var timedOut atomic.Value
	stopIdle := watchIdle(client, conn, fe.cfg.Timeouts.Client, b.cfg.Timeouts.Server, func(side string) { timedOut.Store(side) })
	in, out := pipe(client, conn)
	stopIdle()
	fe.bin.Add(uint64(in))
	fe.bout.Add(uint64(out))
	srv.bin.Add(uint64(in))
	srv.bout.Add(uint64(out))
	state := "--"
	switch {
	case sess.killed.Load():
		state = "SD"
	case timedOut.Load() == "client":
		state = "cD" // client-side timeout during data
	case timedOut.Load() == "server":
		state = "sD"
	}
	rt.logSession(fe, b, srv, client, start, tc, in, out, retries, state)
}

// pipe copies both ways until both directions end; io.Copy between two
// *net.TCPConn uses splice on Linux. Half-closes are forwarded.
func pipe(a, b *net.TCPConn) (int64, int64) {
	var in, out int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in, _ = io.Copy(b, a)
		b.CloseWrite()
	}()
	out, _ = io.Copy(a, b)
	a.CloseWrite()
	wg.Wait()
	return in, out
}

func (rt *Runtime) logSession(fe *frontend, b *backend, s *server, c net.Conn, start time.Time, tc time.Duration, in, out int64, retries int, term string) {
	if !fe.cfg.TCPLog && !fe.cfg.HTTPLog {
		return
	}
	if fe.cfg.DontLogNull && in == 0 && out == 0 && term == "--" {
		return
	}
	sname := "<NOSRV>"
	if s != nil {
		sname = s.cfg.Name
	}
	bname := "<NOSRV>"
	if b != nil {
		bname = b.cfg.Name
	}
	tt := time.Since(start)
	// HAProxy's tcplog: client [date] frontend backend/server Tw/Tc/Tt bytes term
	line := fmt.Sprintf("%s [%s] %s %s/%s %d/%d/%d %d %s %d/%d/%d/%d/%d 0/0",
		c.RemoteAddr(), start.Format("02/Jan/2006:15:04:05.000"), fe.cfg.Name, bname, sname, 0, tc.Milliseconds(), tt.Milliseconds(),
		out, term, fe.cur.Load(), fe.cur.Load(), 0, 0, retries)
	if fe.syslog != nil {
		_ = fe.syslog.Info(line)
		return
	}
	rt.log.Info(line)
}

// Close stops listening and health checking; with drain, it waits (bounded
// by ctx) for established sessions to end.
func (rt *Runtime) Close(ctx context.Context, drain bool) {
	rt.closeStatsSocket(ctx)
	rt.mu.Lock()
	for a, l := range rt.listeners {
		l.ln.Close()
		if l.http != nil {
			l.http.Close()
		}
		delete(rt.listeners, a)
	}
	for _, b := range rt.order {
		b.stop()
		if !drain {
			b.killAll()
		}
	}
	rt.mu.Unlock()
	done := make(chan struct{})
	go func() { rt.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		rt.mu.Lock()
		for _, b := range rt.order {
			b.killAll()
		}
		rt.mu.Unlock()
	}
}

// ---- backends and servers ----

type backend struct {
	cfg           *Proxy
	servers       []*server
	log           *slog.Logger
	haproxyChecks bool // Runtime.HAProxyChecks when the backend was built
	mu            sync.Mutex
	rrIdx         int
	cw            []int // smooth weighted round-robin current weights
	stopCh        chan struct{}
	wg            sync.WaitGroup
}

func newBackend(px *Proxy, log *slog.Logger) *backend {
	b := &backend{cfg: px, log: log.With("backend", px.Name), stopCh: make(chan struct{})}
	for _, sc := range px.Servers {
		s := &server{cfg: sc, b: b, sessions: map[*session]struct{}{}, lastChange: time.Now(), checkWake: make(chan struct{}, 1)}
		s.health = sc.Rise + sc.Fall - 1 // HAProxy starts a checked server UP
		s.up.Store(!sc.Disabled)
		s.maint = sc.Disabled
		s.wt.Store(int32(sc.Weight))
		s.checkStatus = "INI"
		if !sc.Check {
			s.checkStatus = "no check"
		}
		b.servers = append(b.servers, s)
	}
	b.cw = make([]int, len(b.servers))
	return b
}

func (b *backend) start() {
	for _, s := range b.servers {
		if s.cfg.Check {
			b.wg.Add(1)
			go func(s *server) {
				defer b.wg.Done()
				s.checker(b.stopCh)
			}(s)
		}
	}
}

func (b *backend) stop() {
	select {
	case <-b.stopCh:
	default:
		close(b.stopCh)
	}
	b.wg.Wait()
}

func (b *backend) killAll() {
	for _, s := range b.servers {
		s.shutdownSessions()
	}
}

// usable returns the servers eligible now: active ones that are up, or
// the backup ones when no active server is up.
func (b *backend) usable(exclude *server) []*server {
	var act, bak []*server
	for _, s := range b.servers {
		if s == exclude || !s.up.Load() || !s.takesNew() || s.weight() == 0 && b.cfg.Balance != "first" {
			continue
		}
		if s.cfg.Maxconn > 0 && s.cur.Load() >= int64(s.cfg.Maxconn) {
			continue
		}
		if s.cfg.Backup {
			bak = append(bak, s)
		} else {
			act = append(act, s)
		}
	}
	if len(act) > 0 {
		return act
	}
	if len(bak) > 0 {
		return bak[:1] // HAProxy uses the first backup unless allbackups
	}
	return nil
}

// pick chooses a server with the configured algorithm.
func (b *backend) pick(client net.Addr, exclude *server) *server {
	b.mu.Lock()
	defer b.mu.Unlock()
	cands := b.usable(exclude)
	if len(cands) == 0 {
		return nil
	}
	switch b.cfg.Balance {
	case "leastconn":
		best := cands[0]
		for _, s := range cands[1:] {
			// compare cur/weight without division
			if s.cur.Load()*int64(max(best.weight(), 1)) < best.cur.Load()*int64(max(s.weight(), 1)) {
				best = s
			}
		}
		return best
	case "source":
		host, _, _ := net.SplitHostPort(client.String())
		h := fnv.New32a()
		h.Write([]byte(host))
		total := 0
		for _, s := range cands {
			total += max(s.weight(), 1)
		}
		x := int(h.Sum32() % uint32(total))
		for _, s := range cands {
			x -= max(s.weight(), 1)
			if x < 0 {
				return s
			}
		}
		return cands[0]
	case "first":
		return cands[0]
	case "static-rr":
		b.rrIdx++
		return cands[b.rrIdx%len(cands)]
	}
	// roundrobin: smooth weighted round robin (nginx's), dynamic weights
	total := 0
	var best *server
	bestIdx := -1
	for _, s := range cands {
		i := b.index(s)
		w := max(s.weight(), 1)
		b.cw[i] += w
		total += w
		if best == nil || b.cw[i] > b.cw[bestIdx] {
			best, bestIdx = s, i
		}
	}
	b.cw[bestIdx] -= total
	return best
}

func (b *backend) index(s *server) int {
	for i, x := range b.servers {
		if x == s {
			return i
		}
	}
	return 0
}

// connect picks a server and connects, retrying up to `retries` times;
// with option redispatch a retry goes to another server. Failed connects
// feed the server's passive health (observe layer4, see health.go).
func (b *backend) connect(client net.Addr) (*server, *net.TCPConn, int, time.Duration) {
	start := time.Now()
	var last *server
	tries := b.cfg.Retries + 1
	for i := 0; i < tries; i++ {
		var s *server
		if last != nil && !b.cfg.Redispatch && last.up.Load() {
			s = last
		} else {
			s = b.pick(client, last)
			if s == nil {
				s = b.pick(client, nil)
			}
		}
		if s == nil && b.full() {
			// every usable server is at its maxconn: queue for a slot until
			// `timeout queue` (default: timeout connect), as HAProxy does
			s = b.waitSlot(client, start)
		}
		if s == nil {
			return nil, nil, i, time.Since(start)
		}
		s.acquire()
		to := b.cfg.Timeouts.Connect
		if to == 0 {
			to = 5 * time.Second
		}
		c, err := net.DialTimeout("tcp", s.cfg.Addr, to)
		if err == nil {
			tc := c.(*net.TCPConn)
			_ = tc.SetNoDelay(true)
			s.observeSuccess()
			return s, tc, i, time.Since(start)
		}
		s.release()
		s.connFail.Add(1)
		s.observeFailure(err)
		b.log.Warn("connect to server failed", "server", s.cfg.Name, "err", err, "retry", i+1 < tries)
		last = s
	}
	return nil, nil, tries, time.Since(start)
}

// full reports whether some server is up but every up server is at its
// maxconn.
func (b *backend) full() bool {
	up := false
	for _, s := range b.servers {
		if !s.up.Load() || !s.takesNew() {
			continue
		}
		up = true
		if s.cfg.Maxconn == 0 || s.cur.Load() < int64(s.cfg.Maxconn) {
			return false
		}
	}
	return up
}

func (b *backend) waitSlot(client net.Addr, start time.Time) *server {
	to := b.cfg.Timeouts.Queue
	if to == 0 {
		to = b.cfg.Timeouts.Connect
	}
	if to == 0 {
		to = 5 * time.Second
	}
	for time.Since(start) < to {
		time.Sleep(5 * time.Millisecond)
		if s := b.pick(client, nil); s != nil {
			return s
		}
	}
	return nil
}

type session struct {
	client, server *net.TCPConn
	killed         atomic.Bool
}

type server struct {
	cfg *Server
	b   *backend

	mu          sync.Mutex
	health      int
	maint       bool // MAINT: no traffic, no checks (disabled, or set by the runtime API)
	drain       bool // DRAIN: no new sessions, checks go on (runtime API)
	consecErr   int  // consecutive errors seen on live traffic (observe layer4)
	up          atomic.Bool
	wt          atomic.Int32 // current weight (the configured one until `set weight`)
	lastChange  time.Time
	downSince   time.Time
	downtime    time.Duration
	checkStatus string
	checkDur    time.Duration
	chkfail     uint64
	checkWake   chan struct{} // asks the checker for a check now (made once, never closed)

	cur, max atomic.Int64
	total    atomic.Uint64
	bin      atomic.Uint64
	bout     atomic.Uint64
	connFail atomic.Uint64

	smu      sync.Mutex
	sessions map[*session]struct{}
}

// weight is the server's current weight.
func (s *server) weight() int { return int(s.wt.Load()) }

// takesNew reports whether the server may get new sessions (not in
// maintenance, not draining).
func (s *server) takesNew() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.maint && !s.drain
}

func (s *server) acquire() {
	c := s.cur.Add(1)
	for {
		m := s.max.Load()
		if c <= m || s.max.CompareAndSwap(m, c) {
			break
		}
	}
	s.total.Add(1)
}

func (s *server) release() { s.cur.Add(-1) }

func (s *server) track(c, srv *net.TCPConn) *session {
	x := &session{client: c, server: srv}
	s.smu.Lock()
	s.sessions[x] = struct{}{}
	s.smu.Unlock()
	return x
}

func (s *server) untrack(x *session) {
	s.smu.Lock()
	delete(s.sessions, x)
	s.smu.Unlock()
}

// shutdownSessions closes every established session of the server, so
// clients reconnect at once (on-marked-down shutdown-sessions).
func (s *server) shutdownSessions() {
	s.smu.Lock()
	defer s.smu.Unlock()
	for x := range s.sessions {
		x.killed.Store(true)
		x.client.Close()
		x.server.Close()
	}
}
