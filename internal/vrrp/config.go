package vrrp

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is a parsed keepalived.conf (the VRRP subset).
type Config struct {
	RouterID    string
	Version     int // vrrp_version, default 2
	GarpDelay   time.Duration
	GarpRepeat  int
	GarpRefresh time.Duration
	Scripts     map[string]*Script
	Instances   []*Instance
	SyncGroups  []*SyncGroup
	Warnings    []string
}

// Script is a vrrp_script.
type Script struct {
	Name     string
	Command  string
	Interval time.Duration
	Timeout  time.Duration
	Weight   int
	Rise     int
	Fall     int
	User     string
}

// Track refers to a script with an optional weight override.
type Track struct {
	Script    string
	Weight    int
	HasWeight bool
}

// VIP is one virtual address.
type VIP struct {
	Addr  net.IP
	Net   *net.IPNet
	Dev   string
	Label string
}

// Instance is a vrrp_instance.
type Instance struct {
	Name            string
	State           State
	Interface       string
	VRID            int
	Priority        int
	AdvertInt       time.Duration
	AuthType        string
	AuthPass        string
	Tracks          []Track
	TrackInterfaces []string
	VIPs            []VIP
	VIPsExcluded    []VIP
	NoPreempt       bool
	PreemptDelay    time.Duration
	UnicastSrc      net.IP
	UnicastPeers    []net.IP
	GarpDelay       time.Duration
	NotifyMaster    string
	NotifyBackup    string
	NotifyFault     string
	NotifyStop      string
	Notify          string
	Version         int
	// IPv6: the virtual addresses are IPv6 (one family per instance, as
	// keepalived): VRRPv3 over IPv6 to ff02::12 from the link-local address
	IPv6 bool
	File string
	Line int
	// versionSet: "version" was given in the instance
	versionSet bool
	vipLines   []token
}

// SyncGroup is a vrrp_sync_group.
type SyncGroup struct {
	Name                                                        string
	Group                                                       []string
	NotifyMaster, NotifyBackup, NotifyFault, NotifyStop, Notify string
	// TrackingWeight is sync_group_tracking_weight: without it, as in
	// keepalived, a member's failing track_script puts it (and so the
	// group) in FAULT whatever the script's weight.
	TrackingWeight bool
	// Tracks and TrackInterfaces are the group's own track_script and
	// track_interface: one failing puts every member in FAULT.
	Tracks          []Track
	TrackInterfaces []string
	File            string
	Line            int
}

type token struct {
	s    string
	file string
	line int
}

// lex reads words and braces, dropping ! and # comments, following include.
func lex(path string, depth int) ([]token, error) {
	if depth > 8 {
		return nil, fmt.Errorf("%s: include nesting too deep", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open %s: %w", path, err)
	}
	defer f.Close()
	return lexReader(f, path, depth)
}

// MaxWords bounds a configuration's size (words plus lines, includes
// counted), so a huge file is refused instead of taking the memory.
const MaxWords = 1 << 20

// lexReader is lex over r, named path (includes are relative to its
// directory).
func lexReader(r io.Reader, path string, depth int) ([]token, error) {
	var toks []token
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		var words []string
		var cur strings.Builder
		inQ := false
		flush := func() {
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		}
	scan:
		for i := 0; i < len(text); i++ {
			c := text[i]
			switch {
			case inQ:
				if c == '"' {
					inQ = false
					words = append(words, cur.String())
					cur.Reset()
				} else {
					cur.WriteByte(c)
				}
			case c == '"':
				flush()
				inQ = true
			case c == '!' || c == '#':
				break scan
			case c == '{' || c == '}':
				flush()
				words = append(words, string(c))
			case c == ' ' || c == '\t' || c == '\r':
				flush()
			default:
				cur.WriteByte(c)
			}
		}
		if inQ {
			return nil, fmt.Errorf("%s:%d: unterminated quote", path, line)
		}
		flush()
		if len(words) >= 2 && words[0] == "include" {
			pattern := words[1]
			if !filepath.IsAbs(pattern) {
				pattern = filepath.Join(filepath.Dir(path), pattern)
			}
			matches, _ := filepath.Glob(pattern)
			for _, m := range matches {
				sub, err := lex(m, depth+1)
				if err != nil {
					return nil, err
				}
				toks = append(toks, sub...)
				if len(toks) > MaxWords {
					return nil, fmt.Errorf("%s:%d: configuration too large (more than %d words and lines)", path, line, MaxWords)
				}
			}
			continue
		}
		for _, w := range words {
			toks = append(toks, token{w, path, line})
		}
		toks = append(toks, token{"\n", path, line})
		if len(toks) > MaxWords {
			return nil, fmt.Errorf("%s:%d: configuration too large (more than %d words and lines)", path, line, MaxWords)
		}
	}
	return toks, sc.Err()
}

type cparser struct {
	toks []token
	i    int
	cfg  *Config
}

func (p *cparser) errf(t token, format string, a ...any) error {
	return fmt.Errorf("%s:%d: %s", t.file, t.line, fmt.Sprintf(format, a...))
}

func (p *cparser) warnf(t token, format string, a ...any) {
	p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s:%d: %s", t.file, t.line, fmt.Sprintf(format, a...)))
}

// statement returns the next line's words; a trailing "{" opens a block.
func (p *cparser) statement() ([]token, bool) {
	var out []token
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		p.i++
		if t.s == "\n" {
			if len(out) > 0 {
				return out, true
			}
			continue
		}
		out = append(out, t)
		if t.s == "{" || t.s == "}" {
			// "name {" and "}" end a statement
			return out, true
		}
	}
	return out, len(out) > 0
}

// block reads statements until the matching "}", calling fn for each.
func (p *cparser) block(open token, fn func(words []token) error) error {
	for {
		st, ok := p.statement()
		if !ok {
			return p.errf(open, "block opened here is not closed with '}'")
		}
		if st[0].s == "}" {
			return nil
		}
		if err := fn(st); err != nil {
			return err
		}
	}
}

// MaxNesting bounds how deep blocks nest (keepalived's own configs nest
// three or four deep); deeper input is refused instead of recursing
// without bound.
const MaxNesting = 32

// skip skips a nested block after "{".
func (p *cparser) skip(open token) error { return p.skipAt(open, 2) }

func (p *cparser) skipAt(open token, depth int) error {
	if depth > MaxNesting {
		return p.errf(open, "blocks nested deeper than %d levels", MaxNesting)
	}
	return p.block(open, func(st []token) error {
		if st[len(st)-1].s == "{" {
			return p.skipAt(st[len(st)-1], depth+1)
		}
		return nil
	})
}

func opens(st []token) bool { return len(st) > 0 && st[len(st)-1].s == "{" }

// Parse reads a keepalived.conf file.
func Parse(path string) (*Config, error) {
	toks, err := lex(path, 0)
	if err != nil {
		return nil, err
	}
	return parseTokens(toks)
}

// ParseReader reads keepalived.conf text from r; name is used in messages
// and includes are resolved relative to its directory.
func ParseReader(r io.Reader, name string) (*Config, error) {
	toks, err := lexReader(r, name, 0)
	if err != nil {
		return nil, err
	}
	return parseTokens(toks)
}

func parseTokens(toks []token) (*Config, error) {
	var err error
	p := &cparser{toks: toks, cfg: &Config{Version: 2, Scripts: map[string]*Script{}, GarpDelay: 5 * time.Second, GarpRepeat: 5}}
	for {
		st, ok := p.statement()
		if !ok {
			break
		}
		kw := st[0]
		// "vrrp_script chk_haproxy{" is one word followed by a brace: split it
		if strings.HasSuffix(kw.s, "{") && len(kw.s) > 1 {
			st = append([]token{{s: strings.TrimSuffix(kw.s, "{"), file: kw.file, line: kw.line}}, st[1:]...)
		}
		name := ""
		if len(st) >= 3 {
			name = st[1].s
		}
		switch st[0].s {
		case "global_defs":
			err = p.globalDefs(st)
		case "vrrp_script":
			err = p.script(st, name)
		case "vrrp_instance":
			err = p.instance(st, name)
		case "vrrp_sync_group":
			err = p.syncGroup(st, name)
		case "virtual_server", "virtual_server_group":
			p.warnf(kw, "'%s' (LVS) is parsed and ignored: warren-proxy covers the load balancer role", st[0].s)
			if opens(st) {
				err = p.skip(st[len(st)-1])
			}
		case "static_ipaddress", "static_routes", "static_rules", "vrrp_track_process", "track_file", "linkbeat_interfaces":
			p.warnf(kw, "'%s' is not supported by warren-vrrp and is ignored", st[0].s)
			if opens(st) {
				err = p.skip(st[len(st)-1])
			}
		default:
			return nil, p.errf(kw, "unknown top-level keyword '%s' (global_defs, vrrp_script, vrrp_instance, vrrp_sync_group)", kw.s)
		}
		if err != nil {
			return nil, err
		}
	}
	return p.cfg, p.check()
}

func (p *cparser) needBlock(st []token) (token, error) {
	if !opens(st) {
		return st[0], p.errf(st[0], "'%s' expects a block: %s ... {", st[0].s, st[0].s)
	}
	return st[len(st)-1], nil
}

// MaxDelay bounds every delay and interval (keepalived reads them as
// unsigned seconds up to INT_MAX / TIMER_HZ, about 2147 s).
const MaxDelay = 2147 * time.Second

// parseDur reads a number of seconds (fractions allowed), at most MaxDelay.
func parseDur(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("expected a number of seconds, got %q", s)
	}
	if f > MaxDelay.Seconds() {
		return 0, fmt.Errorf("%q seconds is out of range (at most %d)", s, int(MaxDelay.Seconds()))
	}
	return time.Duration(f * float64(time.Second)), nil
}

// atoiIn reads an integer between lo and hi.
func atoiIn(s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("expected an integer between %d and %d, got %q", lo, hi, s)
	}
	return n, nil
}

func (p *cparser) globalDefs(st []token) error {
	open, err := p.needBlock(st)
	if err != nil {
		return err
	}
	return p.block(open, func(w []token) error {
		arg := func() (string, error) {
			if len(w) < 2 {
				return "", p.errf(w[0], "'%s' expects a value", w[0].s)
			}
			return w[1].s, nil
		}
		switch w[0].s {
		case "router_id":
			v, err := arg()
			p.cfg.RouterID = v
			return err
		case "vrrp_version":
			v, err := arg()
			if err != nil {
				return err
			}
			if v != "2" && v != "3" {
				return p.errf(w[0], "vrrp_version must be 2 or 3")
			}
			p.cfg.Version, _ = strconv.Atoi(v)
		case "vrrp_garp_master_delay":
			v, err := arg()
			if err != nil {
				return err
			}
			d, err := parseDur(v)
			if err != nil {
				return p.errf(w[0], "%v", err)
			}
			p.cfg.GarpDelay = d
		case "vrrp_garp_master_repeat":
			v, err := arg()
			if err != nil {
				return err
			}
			n, err := atoiIn(v, 0, 1<<31-1)
			if err != nil {
				return p.errf(w[0], "%v", err)
			}
			p.cfg.GarpRepeat = n
		case "vrrp_garp_master_refresh":
			v, err := arg()
			if err != nil {
				return err
			}
			d, err := parseDur(v)
			if err != nil {
				return p.errf(w[0], "%v", err)
			}
			p.cfg.GarpRefresh = d
		case "enable_script_security", "script_user", "notification_email", "notification_email_from", "smtp_server", "smtp_connect_timeout", "vrrp_skip_check_adv_addr", "vrrp_strict", "vrrp_iptables", "lvs_id":
			p.warnf(w[0], "'%s' is accepted but not applied", w[0].s)
			if opens(w) {
				return p.skip(w[len(w)-1])
			}
		default:
			return p.errf(w[0], "unknown keyword '%s' in global_defs", w[0].s)
		}
		return nil
	})
}

func (p *cparser) script(st []token, name string) error {
	open, err := p.needBlock(st)
	if err != nil {
		return err
	}
	if name == "" || name == "{" {
		return p.errf(st[0], "vrrp_script needs a name")
	}
	s := &Script{Name: name, Interval: time.Second, Rise: 1, Fall: 1}
	err = p.block(open, func(w []token) error {
		if len(w) < 2 {
			return p.errf(w[0], "'%s' expects a value", w[0].s)
		}
		switch w[0].s {
		case "script":
			parts := make([]string, 0, len(w)-1)
			for _, x := range w[1:] {
				parts = append(parts, x.s)
			}
			s.Command = strings.Join(parts, " ")
		case "interval", "timeout":
			d, err := parseDur(w[1].s)
			if err != nil {
				return p.errf(w[0], "%v", err)
			}
			if w[0].s == "interval" {
				if d <= 0 {
					return p.errf(w[0], "interval must be above 0 seconds")
				}
				s.Interval = d
			} else {
				s.Timeout = d
			}
		case "weight", "rise", "fall":
			n, err := strconv.Atoi(w[1].s)
			if err != nil {
				return p.errf(w[0], "'%s' expects an integer, got '%s'", w[0].s, w[1].s)
			}
			if w[0].s != "weight" && (n < 1 || n > 1<<31-1) {
				return p.errf(w[0], "'%s' must be between 1 and %d", w[0].s, 1<<31-1)
			}
			switch w[0].s {
			case "weight":
				if n < -253 || n > 253 {
					return p.errf(w[0], "weight must be between -253 and 253")
				}
				s.Weight = n
			case "rise":
				s.Rise = n
			default:
				s.Fall = n
			}
		case "user":
			s.User = w[1].s
		default:
			return p.errf(w[0], "unknown keyword '%s' in vrrp_script", w[0].s)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if s.Command == "" {
		return p.errf(st[0], "vrrp_script %s has no 'script' line", name)
	}
	p.cfg.Scripts[name] = s
	return nil
}

func parseVIP(w []token) (VIP, error) {
	a := w[0].s
	var v VIP
	if strings.Contains(a, "/") {
		ip, n, err := net.ParseCIDR(a)
		if err != nil {
			return v, fmt.Errorf("invalid address %q", a)
		}
		v.Addr, v.Net = ip, &net.IPNet{IP: ip, Mask: n.Mask}
	} else {
		ip := net.ParseIP(a)
		if ip == nil {
			return v, fmt.Errorf("invalid address %q", a)
		}
		bits := 32
		if ip.To4() == nil {
			bits = 128
		}
		v.Addr, v.Net = ip, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}
	}
	if ip4 := v.Addr.To4(); ip4 != nil {
		v.Addr, v.Net.IP = ip4, ip4
	}
	for i := 1; i+1 < len(w); i += 2 {
		switch w[i].s {
		case "dev":
			v.Dev = w[i+1].s
		case "label":
			v.Label = w[i+1].s
		case "brd", "scope":
		default:
			return v, fmt.Errorf("unknown address option %q", w[i].s)
		}
	}
	return v, nil
}

func (p *cparser) instance(st []token, name string) error {
	open, err := p.needBlock(st)
	if err != nil {
		return err
	}
	in := &Instance{Name: name, State: Backup, Priority: 100, AdvertInt: time.Second, File: st[0].file, Line: st[0].line, GarpDelay: p.cfg.GarpDelay}
	err = p.block(open, func(w []token) error {
		kw := w[0]
		arg := func() (string, error) {
			if len(w) < 2 {
				return "", p.errf(kw, "'%s' expects a value", kw.s)
			}
			return w[1].s, nil
		}
		intArg := func(lo, hi int) (int, error) {
			v, err := arg()
			if err != nil {
				return 0, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < lo || n > hi {
				return 0, p.errf(kw, "'%s' must be an integer between %d and %d, got '%s'", kw.s, lo, hi, v)
			}
			return n, nil
		}
		var err error
		switch kw.s {
		case "state":
			v, e := arg()
			if e != nil {
				return e
			}
			switch v {
			case "MASTER":
				in.State = Master
			case "BACKUP":
				in.State = Backup
			default:
				return p.errf(kw, "state must be MASTER or BACKUP")
			}
		case "interface":
			in.Interface, err = arg()
		case "virtual_router_id":
			in.VRID, err = intArg(1, 255)
		case "priority":
			in.Priority, err = intArg(1, 255)
		case "advert_int":
			v, e := arg()
			if e != nil {
				return e
			}
			in.AdvertInt, err = parseDur(v)
			if err != nil {
				return p.errf(kw, "%v", err)
			}
		case "authentication":
			if !opens(w) {
				return p.errf(kw, "authentication expects a block")
			}
			return p.block(w[len(w)-1], func(a []token) error {
				if len(a) < 2 {
					return p.errf(a[0], "'%s' expects a value", a[0].s)
				}
				switch a[0].s {
				case "auth_type":
					if a[1].s != "PASS" && a[1].s != "AH" {
						return p.errf(a[0], "auth_type must be PASS or AH")
					}
					if a[1].s == "AH" {
						return p.errf(a[0], "auth_type AH is not supported by warren-vrrp; use PASS or none")
					}
					in.AuthType = a[1].s
				case "auth_pass":
					in.AuthPass = a[1].s
					if len(in.AuthPass) > 8 {
						p.warnf(a[0], "auth_pass longer than 8 characters: only the first 8 are used, as keepalived does")
					}
				default:
					return p.errf(a[0], "unknown keyword '%s' in authentication", a[0].s)
				}
				return nil
			})
		case "track_script":
			if !opens(w) {
				return p.errf(kw, "track_script expects a block")
			}
			return p.block(w[len(w)-1], func(a []token) error {
				t := Track{Script: a[0].s}
				if len(a) >= 3 && a[1].s == "weight" {
					n, err := atoiIn(a[2].s, -253, 253)
					if err != nil {
						return p.errf(a[0], "weight must be an integer between -253 and 253")
					}
					t.Weight, t.HasWeight = n, true
				}
				in.Tracks = append(in.Tracks, t)
				return nil
			})
		case "track_interface":
			if !opens(w) {
				return p.errf(kw, "track_interface expects a block")
			}
			return p.block(w[len(w)-1], func(a []token) error {
				in.TrackInterfaces = append(in.TrackInterfaces, a[0].s)
				return nil
			})
		case "virtual_ipaddress", "virtual_ipaddress_excluded":
			if !opens(w) {
				return p.errf(kw, "%s expects a block", kw.s)
			}
			return p.block(w[len(w)-1], func(a []token) error {
				v, err := parseVIP(a)
				if err != nil {
					return p.errf(a[0], "%v", err)
				}
				if kw.s == "virtual_ipaddress" {
					in.VIPs = append(in.VIPs, v)
					in.vipLines = append(in.vipLines, a[0])
				} else {
					in.VIPsExcluded = append(in.VIPsExcluded, v)
				}
				return nil
			})
		case "unicast_peer":
			if !opens(w) {
				return p.errf(kw, "unicast_peer expects a block")
			}
			return p.block(w[len(w)-1], func(a []token) error {
				ip := net.ParseIP(a[0].s)
				if ip == nil {
					return p.errf(a[0], "invalid unicast peer %q", a[0].s)
				}
				in.UnicastPeers = append(in.UnicastPeers, ip)
				return nil
			})
		case "unicast_src_ip":
			v, e := arg()
			if e != nil {
				return e
			}
			if in.UnicastSrc = net.ParseIP(v); in.UnicastSrc == nil {
				return p.errf(kw, "invalid address %q", v)
			}
		case "nopreempt":
			in.NoPreempt = true
		case "preempt":
		case "preempt_delay":
			v, e := arg()
			if e != nil {
				return e
			}
			in.PreemptDelay, err = parseDur(v)
		case "garp_master_delay":
			v, e := arg()
			if e != nil {
				return e
			}
			in.GarpDelay, err = parseDur(v)
		case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify":
			parts := []string{}
			for _, x := range w[1:] {
				parts = append(parts, x.s)
			}
			cmd := strings.Join(parts, " ")
			switch kw.s {
			case "notify_master":
				in.NotifyMaster = cmd
			case "notify_backup":
				in.NotifyBackup = cmd
			case "notify_fault":
				in.NotifyFault = cmd
			case "notify_stop":
				in.NotifyStop = cmd
			default:
				in.Notify = cmd
			}
		case "smtp_alert", "dont_track_primary", "debug", "use_vmac", "vmac_xmit_base", "native_ipv6", "accept", "no_accept", "lvs_sync_daemon_interface":
			p.warnf(kw, "'%s' is accepted but not applied", kw.s)
		case "version":
			v, e := arg()
			if e != nil {
				return e
			}
			if v != "2" && v != "3" {
				return p.errf(kw, "version must be 2 or 3")
			}
			in.Version, _ = strconv.Atoi(v)
			in.versionSet = true
		default:
			return p.errf(kw, "unknown keyword '%s' in vrrp_instance", kw.s)
		}
		return err
	})
	if err != nil {
		return err
	}
	p.cfg.Instances = append(p.cfg.Instances, in)
	return nil
}

func (p *cparser) syncGroup(st []token, name string) error {
	open, err := p.needBlock(st)
	if err != nil {
		return err
	}
	g := &SyncGroup{Name: name, File: st[0].file, Line: st[0].line}
	err = p.block(open, func(w []token) error {
		switch w[0].s {
		case "group":
			if !opens(w) {
				return p.errf(w[0], "group expects a block")
			}
			return p.block(w[len(w)-1], func(a []token) error {
				g.Group = append(g.Group, a[0].s)
				return nil
			})
		case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify":
			parts := []string{}
			for _, x := range w[1:] {
				parts = append(parts, x.s)
			}
			cmd := strings.Join(parts, " ")
			switch w[0].s {
			case "notify_master":
				g.NotifyMaster = cmd
			case "notify_backup":
				g.NotifyBackup = cmd
			case "notify_fault":
				g.NotifyFault = cmd
			case "notify_stop":
				g.NotifyStop = cmd
			default:
				g.Notify = cmd
			}
		case "sync_group_tracking_weight":
			g.TrackingWeight = true
		case "track_script":
			if !opens(w) {
				return p.errf(w[0], "track_script expects a block")
			}
			return p.block(w[len(w)-1], func(a []token) error {
				if len(a) > 1 {
					p.warnf(a[1], "a sync group's track_script puts the group in FAULT when it fails; '%s' is ignored", a[1].s)
				}
				g.Tracks = append(g.Tracks, Track{Script: a[0].s, HasWeight: true})
				return nil
			})
		case "track_interface":
			if !opens(w) {
				return p.errf(w[0], "track_interface expects a block")
			}
			return p.block(w[len(w)-1], func(a []token) error {
				g.TrackInterfaces = append(g.TrackInterfaces, a[0].s)
				return nil
			})
		case "smtp_alert", "global_tracking":
			p.warnf(w[0], "'%s' in vrrp_sync_group is accepted but not applied", w[0].s)
			if opens(w) {
				return p.skip(w[len(w)-1])
			}
		default:
			return p.errf(w[0], "unknown keyword '%s' in vrrp_sync_group", w[0].s)
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.cfg.SyncGroups = append(p.cfg.SyncGroups, g)
	return nil
}

func (p *cparser) check() error {
	inGroup := map[string]string{}
	for _, g := range p.cfg.SyncGroups {
		where := fmt.Sprintf("%s:%d: vrrp_sync_group %s", g.File, g.Line, g.Name)
		var members []string
		for _, name := range g.Group {
			found := false
			for _, in := range p.cfg.Instances {
				found = found || in.Name == name
			}
			switch {
			case !found:
				// keepalived: "doesn't exist - ignoring"
				p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s: member %s is not a vrrp_instance; ignored", where, name))
			case inGroup[name] != "":
				return fmt.Errorf("%s: vrrp_instance %s is already in vrrp_sync_group %s (an instance can be in one sync group only)", where, name, inGroup[name])
			default:
				inGroup[name] = g.Name
				members = append(members, name)
			}
		}
		g.Group = members
		switch len(members) {
		case 0:
			p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s: no member instances; the group is ignored", where))
		case 1:
			p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s: only one member instance; this probably isn't what you want", where))
		}
		if !g.TrackingWeight {
			for _, in := range p.cfg.Instances {
				if inGroup[in.Name] == g.Name && len(in.Tracks) > 0 {
					p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s: vrrp_instance %s is in a sync group: a failing track_script puts it in FAULT, its weight is ignored (set sync_group_tracking_weight to apply weights)", where, in.Name))
				}
			}
		}
		for _, t := range g.Tracks {
			if _, ok := p.cfg.Scripts[t.Script]; !ok {
				return fmt.Errorf("%s: track_script refers to '%s', which is not defined by a vrrp_script", where, t.Script)
			}
		}
		// the group's own tracking applies to every member, as weight 0
		// (FAULT when failing)
		for _, in := range p.cfg.Instances {
			if inGroup[in.Name] != g.Name {
				continue
			}
			in.Tracks = append(in.Tracks, g.Tracks...)
			for _, ifn := range g.TrackInterfaces {
				if !slices.Contains(in.TrackInterfaces, ifn) {
					in.TrackInterfaces = append(in.TrackInterfaces, ifn)
				}
			}
		}
	}
	for _, in := range p.cfg.Instances {
		where := fmt.Sprintf("%s:%d: vrrp_instance %s", in.File, in.Line, in.Name)
		if in.Interface == "" {
			return fmt.Errorf("%s: no 'interface'", where)
		}
		if in.VRID == 0 {
			return fmt.Errorf("%s: no 'virtual_router_id'", where)
		}
		if len(in.VIPs) == 0 {
			return fmt.Errorf("%s: no 'virtual_ipaddress'", where)
		}
		// one address family per instance (keepalived: "address family
		// must match VRRP instance"); the first address decides
		in.IPv6 = in.VIPs[0].Addr.To4() == nil
		family := map[bool]string{false: "IPv4", true: "IPv6"}
		for i, v := range in.VIPs {
			if (v.Addr.To4() == nil) != in.IPv6 {
				t := in.vipLines[i]
				return fmt.Errorf("%s:%d: vrrp_instance %s: virtual_ipaddress %s is %s but the instance's first address %s is %s: an instance has one address family (use a second vrrp_instance)",
					t.file, t.line, in.Name, v.Addr, family[!in.IPv6], in.VIPs[0].Addr, family[in.IPv6])
			}
		}
		for _, peer := range in.UnicastPeers {
			if (peer.To4() == nil) != in.IPv6 {
				return fmt.Errorf("%s: unicast_peer %s is not %s like the virtual addresses", where, peer, family[in.IPv6])
			}
		}
		if in.UnicastSrc != nil && (in.UnicastSrc.To4() == nil) != in.IPv6 {
			return fmt.Errorf("%s: unicast_src_ip %s is not %s like the virtual addresses", where, in.UnicastSrc, family[in.IPv6])
		}
		if in.Version == 0 {
			in.Version = p.cfg.Version
		}
		if in.IPv6 && in.Version != 3 {
			// keepalived: VRRPv2 has no IPv6 (RFC 3768); it uses version 3
			if in.versionSet {
				p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s: IPv6 needs VRRP version 3; using version 3", where))
			}
			in.Version = 3
		}
		if in.IPv6 && in.AuthType != "" {
			p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s: VRRPv3 has no authentication; 'authentication' is ignored", where))
			in.AuthType = ""
		}
		// the advertisement field: 8 bits of seconds (v2), 12 bits of
		// centiseconds (v3); 0 would make the timers spin
		if in.Version == 2 && (in.AdvertInt < time.Second || in.AdvertInt > 255*time.Second) {
			return fmt.Errorf("%s: advert_int %v must be between 1 and 255 seconds with VRRP version 2", where, in.AdvertInt)
		}
		if in.Version == 3 && (in.AdvertInt < 10*time.Millisecond || in.AdvertInt > 40950*time.Millisecond) {
			return fmt.Errorf("%s: advert_int %v must be between 0.01 and 40.95 seconds with VRRP version 3", where, in.AdvertInt)
		}
		if in.Version == 2 && in.AdvertInt%time.Second != 0 {
			return fmt.Errorf("%s: advert_int %v must be whole seconds with VRRP version 2 (set vrrp_version 3 for fractions)", where, in.AdvertInt)
		}
		for _, t := range in.Tracks {
			if p.cfg.Scripts[t.Script] == nil {
				return fmt.Errorf("%s: track_script refers to '%s', which is not defined by a vrrp_script", where, t.Script)
			}
		}
	}
	return nil
}
