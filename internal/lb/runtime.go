package lb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The runtime API ("stats socket" in the global section), with HAProxy
// 2.6's command syntax, answers and permission levels for what operators
// use to take a server out and put it back during a rolling restart:
//
//	echo "set server rabbitmq_cluster/A state drain" | socat - /run/warren-proxy.sock
//
// Each connection sends one line of commands separated by ';' and gets
// each command's answer followed by an empty line, then the connection
// closes; "prompt" keeps it open with a "> " prompt instead.

// StatsSocket is the global section's "stats socket" line.
type StatsSocket struct {
	Network string      // "unix" or "tcp"
	Addr    string      // socket path or host:port
	Mode    os.FileMode // unix socket permissions (mode 600); 0: umask
	Level   string      // user (HAProxy's default), operator, admin
	Timeout time.Duration
}

var levels = map[string]int{"user": 0, "operator": 1, "admin": 2}

// parseStatsSocket reads `stats socket <addr> [param value]...`.
func parseStatsSocket(w []string) (*StatsSocket, error) {
	if len(w) < 3 {
		return nil, errors.New("'stats socket' expects a path or an address")
	}
	s := &StatsSocket{Level: "user", Timeout: 10 * time.Second}
	a := w[2]
	switch {
	case strings.HasPrefix(a, "unix@"):
		s.Network, s.Addr = "unix", strings.TrimPrefix(a, "unix@")
	case strings.HasPrefix(a, "ipv4@"), strings.HasPrefix(a, "ipv6@"):
		s.Network, s.Addr = "tcp", a[5:]
	case strings.HasPrefix(a, "/") || strings.HasPrefix(a, "."):
		s.Network, s.Addr = "unix", a
	case strings.Contains(a, ":"):
		s.Network, s.Addr = "tcp", a
	default:
		return nil, fmt.Errorf("'stats socket %s': expected a socket path or ipv4@host:port", a)
	}
	if s.Network == "tcp" {
		if _, _, err := net.SplitHostPort(s.Addr); err != nil {
			return nil, fmt.Errorf("'stats socket %s': %v", a, err)
		}
	}
	for i := 3; i < len(w); i++ {
		switch w[i] {
		case "level":
			if i+1 >= len(w) {
				return nil, errors.New("'stats socket': 'level' expects user, operator or admin")
			}
			i++
			if _, ok := levels[w[i]]; !ok {
				return nil, fmt.Errorf("'stats socket': 'level' expects user, operator or admin, not '%s'", w[i])
			}
			s.Level = w[i]
		case "mode":
			if i+1 >= len(w) {
				return nil, errors.New("'stats socket': 'mode' expects an octal mode")
			}
			i++
			m, err := strconv.ParseUint(w[i], 8, 32)
			if err != nil || m > 0o777 {
				return nil, fmt.Errorf("'stats socket': 'mode' expects an octal mode such as 600, not '%s'", w[i])
			}
			s.Mode = os.FileMode(m)
		case "expose-fd":
			if i+1 < len(w) {
				i++ // "listeners": seamless reloads of HAProxy's master; warren-proxy reloads in place
			}
		case "user", "group", "uid", "gid":
			if i+1 < len(w) {
				i++
			}
		default:
			return nil, fmt.Errorf("'stats socket': unknown parameter '%s' (supported: level, mode, expose-fd, user, group, uid, gid)", w[i])
		}
	}
	return s, nil
}

// statsSocket serves the runtime API.
type statsSocket struct {
	rt  *Runtime
	cfg StatsSocket
	ln  net.Listener
	wg  sync.WaitGroup
}

func (rt *Runtime) openStatsSocket(cfg StatsSocket) (*statsSocket, error) {
	if cfg.Network == "unix" {
		// a socket file left by an earlier run: remove it only if it is a
		// socket nobody answers on
		if fi, err := os.Lstat(cfg.Addr); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("stats socket %s: the path exists and is not a socket; remove it or choose another path", cfg.Addr)
			}
			if c, err := net.DialTimeout("unix", cfg.Addr, time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("stats socket %s: another process is serving it", cfg.Addr)
			}
			os.Remove(cfg.Addr)
		}
	}
	ln, err := net.Listen(cfg.Network, cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("stats socket: %w", err)
	}
	if cfg.Network == "unix" && cfg.Mode != 0 {
		if err := os.Chmod(cfg.Addr, cfg.Mode); err != nil {
			ln.Close()
			return nil, fmt.Errorf("stats socket %s: %w", cfg.Addr, err)
		}
	}
	s := &statsSocket{rt: rt, cfg: cfg, ln: ln}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *statsSocket) close() {
	s.ln.Close() // a unix listener removes its file
	s.wg.Wait()
}

func (s *statsSocket) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.session(c)
		}()
	}
}

// session answers one client: one line of commands, or many in prompt
// mode. Lines are bounded to 64 KiB, and an idle client is dropped after
// the socket's timeout.
func (s *statsSocket) session(c net.Conn) {
	r := bufio.NewReaderSize(io.LimitReader(c, 1<<30), 64<<10)
	w := bufio.NewWriter(c)
	level := levels[s.cfg.Level]
	prompt := false
	for {
		c.SetReadDeadline(time.Now().Add(s.cfg.Timeout))
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			w.WriteString("Command line too long (the limit is 64 KiB).\n\n")
			w.Flush()
			return
		}
		if err != nil && len(line) == 0 {
			return
		}
		for _, cmd := range strings.Split(strings.TrimRight(string(line), "\r\n"), ";") {
			f := strings.Fields(cmd)
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case "prompt":
				prompt = !prompt
				continue
			case "quit":
				w.Flush()
				return
			case "user":
				level = min(level, levels["user"])
				continue
			case "operator":
				level = min(level, levels["operator"])
				continue
			}
			w.WriteString(s.rt.command(f, level))
			w.WriteString("\n")
		}
		if prompt {
			w.WriteString("> ")
		}
		w.Flush()
		if !prompt || err != nil {
			return
		}
	}
}

// runtimeHelp lists the commands, as `help` prints them.
const runtimeHelp = `The following commands are valid at this level:
  disable server (DEPRECATED)             : disable a server for maintenance (use 'set server' instead)
  enable server  (DEPRECATED)             : enable a disabled server (use 'set server' instead)
  get weight <bk>/<srv>                   : report a server's current weight
  help                                    : list the commands
  prompt                                  : toggle interactive mode with prompt
  quit                                    : disconnect
  set server <bk>/<srv> state|weight ...  : change a server's state (ready, drain, maint) or weight
  set weight <bk>/<srv>  (DEPRECATED)     : change a server's weight (use 'set server' instead)
  show info                               : report information about the running process
  show servers state [<backend>]          : dump volatile server information (all or for a single backend)
  show stat                               : report counters for each proxy and server
`

// command runs one runtime API command and returns its answer, without
// the final empty line.
func (rt *Runtime) command(f []string, level int) string {
	admin := func() bool { return level >= levels["admin"] }
	denied := "Permission denied\n"
	switch {
	case f[0] == "help":
		return runtimeHelp
	case f[0] == "show" && len(f) >= 2 && f[1] == "stat":
		return rt.showStat()
	case f[0] == "show" && len(f) >= 2 && f[1] == "info":
		return rt.showInfo()
	case f[0] == "show" && len(f) >= 3 && f[1] == "servers" && f[2] == "state":
		be := ""
		if len(f) > 3 {
			be = f[3]
		}
		return rt.showServersState(be)
	case f[0] == "get" && len(f) >= 2 && f[1] == "weight":
		if len(f) < 3 {
			return "Require 'backend/server'.\n"
		}
		s, msg := rt.lookupServer(f[2])
		if s == nil {
			return msg
		}
		return fmt.Sprintf("%d (initial %d)\n", s.weight(), s.cfg.Weight)
	case f[0] == "disable" && len(f) >= 2 && f[1] == "server", f[0] == "enable" && len(f) >= 2 && f[1] == "server":
		if !admin() {
			return denied
		}
		if len(f) < 3 {
			return "Require 'backend/server'.\n"
		}
		s, msg := rt.lookupServer(f[2])
		if s == nil {
			return msg
		}
		if f[0] == "disable" {
			s.setAdmin("maint")
		} else {
			s.setAdmin("ready")
		}
		return ""
	case f[0] == "set" && len(f) >= 2 && f[1] == "weight":
		if !admin() {
			return denied
		}
		if len(f) < 4 {
			return "Require 'backend/server' and 'weight' or 'weight%'.\n"
		}
		s, msg := rt.lookupServer(f[2])
		if s == nil {
			return msg
		}
		return s.setWeight(f[3])
	case f[0] == "set" && len(f) >= 2 && f[1] == "server":
		if !admin() {
			return denied
		}
		if len(f) < 4 {
			return "'set server <srv>' only supports 'state' and 'weight'.\n"
		}
		s, msg := rt.lookupServer(f[2])
		if s == nil {
			return msg
		}
		switch f[3] {
		case "state":
			if len(f) < 5 || (f[4] != "ready" && f[4] != "drain" && f[4] != "maint") {
				return "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n"
			}
			s.setAdmin(f[4])
			return ""
		case "weight":
			if len(f) < 5 {
				return "Require 'backend/server' and 'weight' or 'weight%'.\n"
			}
			return s.setWeight(f[4])
		}
		return "'set server <srv>' only supports 'state' and 'weight'.\n"
	}
	return "Unknown command. Please enter one of the following commands only:\n" + strings.TrimPrefix(runtimeHelp, "The following commands are valid at this level:\n")
}

func (rt *Runtime) lookupServer(arg string) (*server, string) {
	be, sv, ok := strings.Cut(arg, "/")
	if !ok || be == "" || sv == "" {
		return nil, "Require 'backend/server'.\n"
	}
	rt.mu.Lock()
	b := rt.backends[be]
	rt.mu.Unlock()
	if b == nil {
		return nil, "No such backend.\n"
	}
	for _, s := range b.servers {
		if s.cfg.Name == sv {
			return s, ""
		}
	}
	return nil, "No such server.\n"
}

// setAdmin applies a runtime state: maint (no traffic, no checks), drain
// (no new sessions, checks go on) or ready.
func (s *server) setAdmin(state string) {
	s.mu.Lock()
	was := s.maint
	s.maint, s.drain = state == "maint", state == "drain"
	s.lastChange = time.Now()
	s.mu.Unlock()
	switch {
	case !was && state == "maint":
		s.b.log.Warn(fmt.Sprintf("Server %s/%s is going DOWN for maintenance.", s.b.cfg.Name, s.cfg.Name))
	case was && state != "maint":
		s.b.log.Warn(fmt.Sprintf("Server %s/%s is UP/READY (leaving forced maintenance).", s.b.cfg.Name, s.cfg.Name))
		s.wakeChecker() // check at once rather than after inter
	case state == "drain":
		s.b.log.Warn(fmt.Sprintf("Server %s/%s is UP/DRAIN (forced drain).", s.b.cfg.Name, s.cfg.Name))
	}
}

// setWeight applies `set weight`: an absolute weight 0-256 or a
// percentage of the configured weight.
func (s *server) setWeight(arg string) string {
	pct := strings.HasSuffix(arg, "%")
	n, err := strconv.Atoi(strings.TrimSuffix(arg, "%"))
	if err != nil || n < 0 {
		return "Require a non-negative integer weight, or a percentage.\n"
	}
	if pct {
		if n > 100 {
			return "Relative weight must be positive and at most 100%.\n"
		}
		n = s.cfg.Weight * n / 100
	} else if n > 256 {
		return "Absolute weight can only be between 0 and 256 inclusive.\n"
	}
	s.wt.Store(int32(n))
	return ""
}

func (rt *Runtime) showStat() string {
	var b strings.Builder
	b.WriteString("# " + strings.Join(csvHeader, ",") + ",\n")
	for _, r := range rt.Rows() {
		b.WriteString(strings.Join(r.csv(), ",") + ",\n")
	}
	return b.String()
}

func (rt *Runtime) showInfo() string {
	up := time.Since(rt.started)
	var cur, cum int64
	rt.mu.Lock()
	for _, fe := range rt.frontends {
		cur += fe.cur.Load()
		cum += int64(fe.total.Load())
	}
	rt.mu.Unlock()
	s := int64(up.Seconds())
	return fmt.Sprintf("Name: warren-proxy\nVersion: %s\nPid: %d\nUptime: %dd %dh%02dm%02ds\nUptime_sec: %d\nCurrConns: %d\nCumConns: %d\n",
		Version, os.Getpid(), s/86400, s%86400/3600, s%3600/60, s%60, s, cur, cum)
}

// Version is warren-proxy's version, as `show info` and -v print it.
const Version = "0.1.0"

// checkStatusCode is HAProxy's numeric check status (show servers state).
var checkStatusCode = map[string]int{"INI": 1, "no check": 1, "L4OK": 6, "L4TOUT": 7, "L4CON": 8, "L7TOUT": 12, "L7RSP": 13, "L7OK": 14}

// showServersState prints HAProxy's "show servers state" format version 1
// (the columns a state file or an operator's script reads).
func (rt *Runtime) showServersState(only string) string {
	rt.mu.Lock()
	bes := append([]*backend(nil), rt.order...)
	rt.mu.Unlock()
	var b strings.Builder
	found := only == ""
	b.WriteString("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n")
	for bi, be := range bes {
		if only != "" && be.cfg.Name != only {
			continue
		}
		found = true
		for si, s := range be.servers {
			host, port, _ := net.SplitHostPort(s.cfg.Addr)
			s.mu.Lock()
			op := 0
			if s.up.Load() {
				op = 2
			}
			admin := 0
			if s.maint {
				admin |= 0x01
			}
			if s.drain {
				admin |= 0x08
			}
			result, state := 0, 0
			if s.cfg.Check {
				state = 6 // configured and enabled
				result = 3
				if s.checkStatus == "L4CON" || s.checkStatus == "L4TOUT" || s.checkStatus == "L7RSP" || s.checkStatus == "L7TOUT" {
					result = 2
				}
			}
			fmt.Fprintf(&b, "%d %s %d %s %s %d %d %d %d %d %d %d %d %d 0 0 0 - %s - 0 0 - - 0\n",
				bi+1, be.cfg.Name, si+1, s.cfg.Name, host, op, admin, s.weight(), s.cfg.Weight,
				int64(time.Since(s.lastChange).Seconds()), checkStatusCode[s.checkStatus], result, s.health, state, port)
			s.mu.Unlock()
		}
	}
	if !found {
		return "Can't find backend.\n"
	}
	return b.String()
}

// applyStatsSocket opens, keeps or closes the runtime API socket for a
// (re)loaded configuration. Called with rt.mu held.
func (rt *Runtime) applyStatsSocket(cfg *StatsSocket) error {
	if rt.sock != nil && cfg != nil && rt.sock.cfg == *cfg {
		return nil
	}
	if rt.sock != nil {
		rt.sock.close()
		rt.sock = nil
	}
	if cfg == nil {
		return nil
	}
	s, err := rt.openStatsSocket(*cfg)
	if err != nil {
		return err
	}
	rt.sock = s
	return nil
}

// closeStatsSocket is part of Close.
func (rt *Runtime) closeStatsSocket(context.Context) {
	rt.mu.Lock()
	s := rt.sock
	rt.sock = nil
	rt.mu.Unlock()
	if s != nil {
		s.close()
	}
}
