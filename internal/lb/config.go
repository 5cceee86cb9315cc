// Package lb is warren-proxy, the load balancer in front of the nodes
// (HAProxy's role): it reads the haproxy.cfg subset the classic setup uses,
// balances TCP sessions over backend servers with HAProxy's health-check
// semantics (inter/rise/fall/fastinter/downinter), retries and redispatches
// failed connects, copies bytes with splice, and serves HAProxy's stats
// page, CSV and JSON, and Prometheus metrics. It imports no broker package.
//
//	cfg, warnings, err := lb.ParseFiles([]string{"haproxy.cfg"})
//	p := lb.New(logger)
//	err = p.Apply(cfg)   // start or reload
//	defer p.Close()
package lb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is a parsed configuration.
type Config struct {
	Global   Global
	Proxies  []*Proxy // listen, frontend and backend sections, in order
	Warnings []string
}

// Global holds the global section.
type Global struct {
	Daemon      bool
	Maxconn     int
	Log         []string
	PidFile     string       // pidfile: written by warren-proxy at start, removed at exit
	StatsSocket *StatsSocket // stats socket: the runtime API (runtime.go)
}

// Timeouts of a proxy.
type Timeouts struct {
	Connect, Client, Server, Check, Queue time.Duration
}

// Proxy is a listen, frontend or backend section.
type Proxy struct {
	Kind           string // listen, frontend, backend
	Name           string
	Mode           string // tcp or http
	Binds          []string
	Balance        string
	Servers        []*Server
	Timeouts       Timeouts
	Retries        int
	Redispatch     bool
	Maxconn        int
	TCPLog         bool
	HTTPLog        bool
	DontLogNull    bool
	TCPCheck       bool
	DefaultBackend string
	UseBackends    []string
	Stats          Stats
	Log            []string // syslog target: address, facility [, level]
	File           string
	Line           int
}

// Stats is the stats page configuration.
type Stats struct {
	Enable      bool
	URI         string
	Refresh     time.Duration
	Auth        []string // user:password
	Realm       string
	HideVersion bool
}

// Server is one backend server line.
type Server struct {
	Name                   string
	Addr                   string
	Check                  bool
	CheckAMQP              bool
	Inter                  time.Duration
	FastInter              time.Duration
	DownInter              time.Duration
	Rise, Fall             int
	Weight                 int
	Backup                 bool
	Disabled               bool
	Maxconn                int
	ShutdownSessionsOnDown bool
	ShutdownBackupOnUp     bool
	SendProxy              bool
	SendProxyV2            bool
	// Passive health: Observe is "layer4", "layer7" (treated as layer4:
	// warren-proxy sees no layer 7 traffic) or "" (not set: warren-proxy
	// observes checked servers anyway unless run with --haproxy-checks).
	Observe    string
	ErrorLimit int    // error-limit: consecutive errors before OnError (0: default)
	OnError    string // on-error: fastinter, fail-check, sudden-death, mark-down
}

// ParseError carries file and line.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// ParseFiles parses one or more files (-f may be repeated), in order.
func ParseFiles(paths []string) (*Config, error) {
	c := &Config{}
	p := &parser{cfg: c, defaults: defaultProxy()}
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("cannot open configuration file %s: %w", path, err)
		}
		err = p.parse(f, path)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return c, p.finish()
}

// Parse parses one configuration from r; name is used in messages.
func Parse(r io.Reader, name string) (*Config, error) {
	c := &Config{}
	p := &parser{cfg: c, defaults: defaultProxy()}
	if err := p.parse(r, name); err != nil {
		return nil, err
	}
	return c, p.finish()
}

func defaultProxy() Proxy {
	return Proxy{Mode: "tcp", Balance: "roundrobin", Retries: 3, Timeouts: Timeouts{Connect: 5 * time.Second}}
}

type parser struct {
	cfg          *Config
	defaults     Proxy
	cur          *Proxy
	inDef        bool
	inGlobal     bool
	file         string
	line         int
	statsTimeout time.Duration // global "stats timeout", for the stats socket
}

func (p *parser) errf(format string, a ...any) error {
	return &ParseError{File: p.file, Line: p.line, Msg: fmt.Sprintf(format, a...)}
}

func (p *parser) warnf(format string, a ...any) {
	p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s:%d: %s", p.file, p.line, fmt.Sprintf(format, a...)))
}

// fields splits a line into words, honouring quotes and backslash escapes,
// and dropping a trailing comment.
func fields(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			} else if ch == '\\' && quote == '"' && i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			} else {
				cur.WriteByte(ch)
			}
		case ch == '#':
			i = len(s)
		case ch == '"' || ch == '\'':
			quote, inWord = ch, true
		case ch == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case ch == ' ' || ch == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote")
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// MaxTime is HAProxy's largest timer: 2147483647 ms (~24.8 days).
const MaxTime = 2147483647 * time.Millisecond

// MaxInt bounds integer arguments (maxconn, retries, rise, fall, ...),
// HAProxy's C int.
const MaxInt = 1<<31 - 1

// ParseTime reads HAProxy time values: a number (milliseconds) or with a
// unit us, ms, s, m, h, d, at most MaxTime (HAProxy: "timer overflow").
func ParseTime(s string) (time.Duration, error) {
	units := []struct {
		suf string
		d   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}, {"d", 24 * time.Hour}}
	num, unit := s, time.Millisecond
	for _, u := range units {
		if strings.HasSuffix(s, u.suf) {
			num, unit = strings.TrimSuffix(s, u.suf), u.d
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil && errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(num, "-") {
		return 0, fmt.Errorf("timer overflow in argument '%s', maximum value is 2147483647 ms (~24.8 days)", s)
	}
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid time value %q (expected e.g. 5000, 5s, 100ms)", s)
	}
	if n > int64(MaxTime/unit) {
		return 0, fmt.Errorf("timer overflow in argument '%s', maximum value is 2147483647 ms (~24.8 days)", s)
	}
	return time.Duration(n) * unit, nil
}

func (p *parser) parse(r io.Reader, name string) error {
	p.file, p.line = name, 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p.line++
		w, err := fields(sc.Text())
		if err != nil {
			return p.errf("%v", err)
		}
		if len(w) == 0 {
			continue
		}
		if err := p.directive(w); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (p *parser) directive(w []string) error {
	kw := w[0]
	switch kw {
	case "global":
		p.cur, p.inDef, p.inGlobal = nil, false, true
		return nil
	case "defaults":
		p.cur, p.inDef, p.inGlobal = nil, true, false
		return nil
	case "listen", "frontend", "backend":
		if len(w) < 2 {
			return p.errf("'%s' expects a name", kw)
		}
		for _, x := range p.cfg.Proxies {
			if x.Name == w[1] {
				return p.errf("%s '%s' has the same name as another proxy (line %d)", kw, w[1], x.Line)
			}
		}
		px := p.defaults
		px.Servers, px.Binds, px.UseBackends = nil, nil, nil
		px.Kind, px.Name, px.File, px.Line = kw, w[1], p.file, p.line
		p.cur, p.inDef, p.inGlobal = &px, false, false
		p.cfg.Proxies = append(p.cfg.Proxies, &px)
		if len(w) > 2 && kw != "backend" { // "listen name addr:port" shorthand
			px.Binds = append(px.Binds, w[2])
		}
		return nil
	}
	if p.inGlobal {
		return p.global(w)
	}
	if p.inDef {
		return p.proxyDirective(&p.defaults, w, true)
	}
	if p.cur == nil {
		return p.errf("'%s' outside of a section (global, defaults, listen, frontend, backend)", kw)
	}
	return p.proxyDirective(p.cur, w, false)
}

func (p *parser) global(w []string) error {
	switch w[0] {
	case "daemon":
		p.cfg.Global.Daemon = true
	case "maxconn":
		n, err := p.intArg(w, 1)
		if err != nil {
			return err
		}
		p.cfg.Global.Maxconn = n
	case "log":
		if len(w) < 3 {
			return p.errf("'log' expects an address and a facility, e.g. 'log 127.0.0.1 local0 info'")
		}
		if _, err := Facility(w[2]); err != nil {
			return p.errf("%v", err)
		}
		p.cfg.Global.Log = w[1:]
	case "pidfile":
		if len(w) != 2 {
			return p.errf("'pidfile' expects a file path")
		}
		p.cfg.Global.PidFile = w[1]
	case "stats":
		switch {
		case len(w) >= 2 && w[1] == "socket":
			s, err := parseStatsSocket(w)
			if err != nil {
				return p.errf("%v", err)
			}
			if p.cfg.Global.StatsSocket != nil {
				p.warnf("only the first 'stats socket' is served; this one is ignored")
				return nil
			}
			if p.statsTimeout > 0 {
				s.Timeout = p.statsTimeout
			}
			p.cfg.Global.StatsSocket = s
		case len(w) >= 2 && w[1] == "timeout":
			d, err := p.timeArg(w, 2)
			if err != nil {
				return err
			}
			p.statsTimeout = d
			if p.cfg.Global.StatsSocket != nil {
				p.cfg.Global.StatsSocket.Timeout = d
			}
		case len(w) >= 2 && (w[1] == "maxconn" || w[1] == "bind-process"):
			p.warnf("'stats %s' is accepted but not applied", w[1])
		default:
			return p.errf("'stats' in 'global' expects 'socket' or 'timeout'")
		}
	case "chroot", "user", "group", "uid", "gid", "nbproc", "nbthread", "tune.ssl.default-dh-param", "ulimit-n", "quiet", "node", "description", "ssl-default-bind-ciphers", "ssl-default-bind-options", "cpu-map":
		p.warnf("'%s' is understood but not applied by warren-proxy (it runs as the invoking user, in one process)", w[0])
	default:
		return p.errf("unknown keyword '%s' in 'global' section (warren-proxy supports daemon, maxconn, log; chroot, user, group, uid, gid, nbproc... are accepted with a warning)", w[0])
	}
	return nil
}

func (p *parser) intArg(w []string, i int) (int, error) {
	if len(w) <= i {
		return 0, p.errf("'%s' expects an integer argument", w[0])
	}
	n, err := strconv.Atoi(w[i])
	if err != nil || n < 0 || n > MaxInt {
		return 0, p.errf("'%s' expects a non-negative integer (at most %d), got '%s'", w[0], MaxInt, w[i])
	}
	return n, nil
}

func (p *parser) timeArg(w []string, i int) (time.Duration, error) {
	if len(w) <= i {
		return 0, p.errf("'%s' expects a time argument", strings.Join(w[:i], " "))
	}
	d, err := ParseTime(w[i])
	if err != nil {
		return 0, p.errf("%v", err)
	}
	return d, nil
}

func (p *parser) proxyDirective(px *Proxy, w []string, defaults bool) error {
	switch w[0] {
	case "mode":
		if len(w) < 2 || (w[1] != "tcp" && w[1] != "http" && w[1] != "health") {
			return p.errf("'mode' expects tcp or http")
		}
		px.Mode = w[1]
	case "bind":
		if defaults {
			return p.errf("'bind' is not allowed in 'defaults'")
		}
		if len(w) < 2 {
			return p.errf("'bind' expects an address:port")
		}
		for _, a := range strings.Split(w[1], ",") {
			if !strings.Contains(a, ":") {
				return p.errf("'bind %s': missing port (expected address:port)", a)
			}
			px.Binds = append(px.Binds, a)
		}
		if len(w) > 2 {
			p.warnf("bind options %v are not applied", w[2:])
		}
	case "balance":
		if len(w) < 2 {
			return p.errf("'balance' expects an algorithm")
		}
		switch w[1] {
		case "roundrobin", "static-rr", "leastconn", "source", "first":
			px.Balance = w[1]
		default:
			return p.errf("unknown balance algorithm '%s' (supported: roundrobin, static-rr, leastconn, source, first)", w[1])
		}
	case "server":
		if defaults {
			return p.errf("'server' is not allowed in 'defaults'")
		}
		s, err := p.server(w)
		if err != nil {
			return err
		}
		px.Servers = append(px.Servers, s)
	case "retries":
		n, err := p.intArg(w, 1)
		if err != nil {
			return err
		}
		px.Retries = n
	case "maxconn":
		n, err := p.intArg(w, 1)
		if err != nil {
			return err
		}
		px.Maxconn = n
	case "timeout":
		if len(w) < 3 {
			return p.errf("'timeout' expects a name and a value, e.g. 'timeout connect 5s'")
		}
		d, err := p.timeArg(w, 2)
		if err != nil {
			return err
		}
		switch w[1] {
		case "connect":
			px.Timeouts.Connect = d
		case "client":
			px.Timeouts.Client = d
		case "server":
			px.Timeouts.Server = d
		case "check":
			px.Timeouts.Check = d
		case "queue":
			px.Timeouts.Queue = d
		case "http-request", "http-keep-alive", "tunnel", "client-fin", "server-fin":
			p.warnf("'timeout %s' is not applied", w[1])
		default:
			return p.errf("unknown timeout '%s' (connect, client, server, check, queue)", w[1])
		}
	case "contimeout", "clitimeout", "srvtimeout":
		d, err := p.timeArg(w, 1)
		if err != nil {
			return err
		}
		switch w[0] {
		case "contimeout":
			px.Timeouts.Connect = d
		case "clitimeout":
			px.Timeouts.Client = d
		default:
			px.Timeouts.Server = d
		}
	case "option":
		if len(w) < 2 {
			return p.errf("'option' expects a name")
		}
		switch w[1] {
		case "tcplog":
			px.TCPLog = true
		case "httplog":
			px.HTTPLog = true
		case "dontlognull":
			px.DontLogNull = true
		case "redispatch":
			px.Redispatch = true
		case "tcp-check":
			px.TCPCheck = true
		case "tcpka", "clitcpka", "srvtcpka", "abortonclose", "log-health-checks", "forwardfor", "httpclose", "http-server-close", "splice-auto", "splice-request", "splice-response":
			p.warnf("'option %s' is accepted but not applied", w[1])
		default:
			return p.errf("unknown option '%s'", w[1])
		}
	case "log":
		// "log global" uses the global section's target; "log ADDR FACILITY
		// [LEVEL]" its own; session lines go to that syslog, else stdout
		if len(w) < 2 {
			return p.errf("'log' expects 'global' or an address and a facility")
		}
		if w[1] == "global" {
			px.Log = p.cfg.Global.Log
		} else {
			if len(w) < 3 {
				return p.errf("'log %s' expects a facility (e.g. local0)", w[1])
			}
			if _, err := Facility(w[2]); err != nil {
				return p.errf("%v", err)
			}
			px.Log = w[1:]
		}
	case "default_backend":
		if len(w) < 2 {
			return p.errf("'default_backend' expects a backend name")
		}
		px.DefaultBackend = w[1]
	case "use_backend":
		if len(w) < 2 {
			return p.errf("'use_backend' expects a backend name")
		}
		if len(w) > 2 {
			p.warnf("use_backend conditions (%s) are not supported: the backend is always used", strings.Join(w[2:], " "))
		}
		px.UseBackends = append(px.UseBackends, w[1])
	case "stats":
		return p.stats(px, w)
	case "description", "id", "balance-url-param", "hash-type", "fullconn", "grace":
		p.warnf("'%s' is accepted but not applied", w[0])
	default:
		return p.errf("unknown keyword '%s' in '%s' section", w[0], map[bool]string{true: "defaults", false: px.Kind}[defaults])
	}
	return nil
}

func (p *parser) stats(px *Proxy, w []string) error {
	if len(w) < 2 {
		return p.errf("'stats' expects a sub-keyword (enable, uri, refresh, auth, realm, hide-version)")
	}
	switch w[1] {
	case "enable":
		px.Stats.Enable = true
		if px.Stats.URI == "" {
			px.Stats.URI = "/haproxy?stats"
		}
	case "uri":
		if len(w) < 3 {
			return p.errf("'stats uri' expects a path")
		}
		px.Stats.Enable, px.Stats.URI = true, w[2]
	case "refresh":
		d, err := p.timeArg(w, 2)
		if err != nil {
			return err
		}
		px.Stats.Refresh = d
	case "auth":
		if len(w) < 3 || !strings.Contains(w[2], ":") {
			return p.errf("'stats auth' expects user:password")
		}
		px.Stats.Enable = true
		px.Stats.Auth = append(px.Stats.Auth, w[2])
	case "realm":
		if len(w) < 3 {
			return p.errf("'stats realm' expects a name")
		}
		px.Stats.Realm = strings.Join(w[2:], " ")
	case "hide-version":
		px.Stats.HideVersion = true
	case "show-legends", "show-node", "admin", "scope":
		p.warnf("'stats %s' is accepted but not applied", w[1])
	default:
		return p.errf("unknown stats keyword '%s'", w[1])
	}
	return nil
}

func (p *parser) server(w []string) (*Server, error) {
	if len(w) < 3 {
		return nil, p.errf("'server' expects a name and an address:port")
	}
	s := &Server{Name: w[1], Addr: w[2], Inter: 2 * time.Second, Rise: 2, Fall: 3, Weight: 1}
	if !strings.Contains(s.Addr, ":") {
		return nil, p.errf("server '%s': address '%s' has no port", s.Name, s.Addr)
	}
	for i := 3; i < len(w); i++ {
		opt := w[i]
		needInt := func() (int, error) {
			if i+1 >= len(w) {
				return 0, p.errf("server '%s': '%s' expects an integer", s.Name, opt)
			}
			i++
			n, err := strconv.Atoi(w[i])
			if err != nil || n < 0 || n > MaxInt {
				return 0, p.errf("server '%s': '%s' expects a non-negative integer (at most %d), got '%s'", s.Name, opt, MaxInt, w[i])
			}
			return n, nil
		}
		needTime := func() (time.Duration, error) {
			if i+1 >= len(w) {
				return 0, p.errf("server '%s': '%s' expects a time", s.Name, opt)
			}
			i++
			d, err := ParseTime(w[i])
			if err != nil {
				return 0, p.errf("server '%s': %v", s.Name, err)
			}
			if d <= 0 { // HAProxy: a check interval must be positive
				return 0, p.errf("invalid value %s for argument '%s' of server %s", w[i], opt, s.Name)
			}
			return d, nil
		}
		var err error
		switch opt {
		case "check":
			s.Check = true
		case "check-amqp":
			s.Check, s.CheckAMQP = true, true
		case "inter":
			s.Inter, err = needTime()
		case "fastinter":
			s.FastInter, err = needTime()
		case "downinter":
			s.DownInter, err = needTime()
		case "rise":
			s.Rise, err = needInt()
			if err == nil && s.Rise < 1 {
				err = p.errf("server '%s': rise must be at least 1", s.Name)
			}
		case "fall":
			s.Fall, err = needInt()
			if err == nil && s.Fall < 1 {
				err = p.errf("server '%s': fall must be at least 1", s.Name)
			}
		case "weight":
			s.Weight, err = needInt()
			if err == nil && s.Weight > 256 {
				err = p.errf("server '%s': weight must be between 0 and 256", s.Name)
			}
		case "maxconn":
			s.Maxconn, err = needInt()
		case "backup":
			s.Backup = true
		case "disabled":
			s.Disabled = true
		case "send-proxy":
			s.SendProxy = true
		case "send-proxy-v2":
			s.SendProxyV2 = true
		case "on-marked-down":
			if i+1 >= len(w) || w[i+1] != "shutdown-sessions" {
				return nil, p.errf("server '%s': 'on-marked-down' supports only 'shutdown-sessions'", s.Name)
			}
			i++
			s.ShutdownSessionsOnDown = true
		case "on-marked-up":
			if i+1 >= len(w) || w[i+1] != "shutdown-backup-sessions" {
				return nil, p.errf("server '%s': 'on-marked-up' supports only 'shutdown-backup-sessions'", s.Name)
			}
			i++
			s.ShutdownBackupOnUp = true
		case "observe":
			if i+1 >= len(w) || (w[i+1] != "layer4" && w[i+1] != "layer7") {
				return nil, p.errf("server '%s': 'observe' expects 'layer4' or 'layer7'", s.Name)
			}
			i++
			s.Observe = w[i]
			if s.Observe == "layer7" {
				p.warnf("server '%s': 'observe layer7' is applied as 'observe layer4' (warren-proxy forwards TCP and sees no HTTP responses)", s.Name)
			}
		case "error-limit":
			s.ErrorLimit, err = needInt()
			if err == nil && (s.ErrorLimit < 1 || s.ErrorLimit > 1000000) {
				err = p.errf("server '%s': error-limit must be between 1 and 1000000", s.Name)
			}
		case "on-error":
			if i+1 >= len(w) {
				return nil, p.errf("server '%s': 'on-error' expects fastinter, fail-check, sudden-death or mark-down", s.Name)
			}
			i++
			switch w[i] {
			case "fastinter", "fail-check", "sudden-death", "mark-down":
				s.OnError = w[i]
			default:
				return nil, p.errf("server '%s': 'on-error' expects fastinter, fail-check, sudden-death or mark-down, not '%s'", s.Name, w[i])
			}
		case "port", "addr", "cookie", "id", "slowstart":
			if i+1 < len(w) {
				i++
			}
			p.warnf("server '%s': '%s' is accepted but not applied", s.Name, opt)
		default:
			return nil, p.errf("server '%s': unknown option '%s'", s.Name, opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (p *parser) finish() error {
	names := map[string]*Proxy{}
	for _, px := range p.cfg.Proxies {
		names[px.Name] = px
	}
	for _, px := range p.cfg.Proxies {
		for _, b := range append(append([]string{}, px.UseBackends...), px.DefaultBackend) {
			if b == "" {
				continue
			}
			t := names[b]
			if t == nil || t.Kind == "frontend" {
				return &ParseError{px.File, px.Line, fmt.Sprintf("%s '%s' refers to backend '%s', which does not exist", px.Kind, px.Name, b)}
			}
		}
		if px.Kind != "backend" && len(px.Binds) == 0 {
			return &ParseError{px.File, px.Line, fmt.Sprintf("%s '%s' has no 'bind' line", px.Kind, px.Name)}
		}
		if px.Kind == "frontend" && px.DefaultBackend == "" && len(px.UseBackends) == 0 && !px.Stats.Enable {
			return &ParseError{px.File, px.Line, fmt.Sprintf("frontend '%s' has no default_backend", px.Name)}
		}
		if px.Mode == "http" && len(px.Servers) > 0 {
			p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s:%d: '%s' uses mode http with servers: warren-proxy forwards it as TCP", px.File, px.Line, px.Name))
		}
	}
	return nil
}
