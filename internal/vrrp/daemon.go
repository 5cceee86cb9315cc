package vrrp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// Net is the OS layer the daemon drives (internal/vrrp/netlink implements
// it; tests can fake it).
type Net interface {
	// Primary returns the interface's first IPv4 address.
	Primary(ifname string) (net.IP, error)
	// Send transmits a VRRP payload from src to dst (multicast group or
	// unicast peer) on the interface with TTL 255.
	Send(ifname string, src, dst net.IP, payload []byte) error
	// Packets delivers received VRRP payloads.
	Packets() <-chan Received
	AddVIP(ifname string, v VIP) error
	DelVIP(ifname string, v VIP) error
	// GARP sends gratuitous ARP for ip on the interface.
	GARP(ifname string, ip net.IP) error
}

// Received is one packet from the wire.
type Received struct {
	Payload  []byte
	Src, Dst net.IP
	TTL      int
	IfIndex  int
}

// Daemon runs every instance of a configuration.
type Daemon struct {
	cfg   *Config
	net   Net
	log   *slog.Logger
	insts []*runner
}

type runner struct {
	d       *Daemon
	in      *Instance
	m       *Machine
	primary net.IP
	auth    [8]byte
	mu      sync.Mutex
	ifindex int
	scripts map[string]*scriptState
	events  chan func(now time.Time) []Action
	ifDown  bool // a track_interface is down
}

type scriptState struct {
	s       *Script
	weight  int
	ok      bool
	succ    int
	fail    int
	started bool
}

// NewDaemon prepares the instances of cfg on nt.
func NewDaemon(cfg *Config, nt Net, log *slog.Logger) (*Daemon, error) {
	d := &Daemon{cfg: cfg, net: nt, log: log}
	for _, in := range cfg.Instances {
		prim := in.UnicastSrc
		if prim == nil {
			p, err := nt.Primary(in.Interface)
			if err != nil {
				return nil, fmt.Errorf("vrrp_instance %s: interface %s: %w", in.Name, in.Interface, err)
			}
			prim = p
		}
		ifi, err := net.InterfaceByName(in.Interface)
		idx := 0
		if err == nil {
			idx = ifi.Index
		}
		r := &runner{d: d, in: in, primary: prim, ifindex: idx, scripts: map[string]*scriptState{}, events: make(chan func(time.Time) []Action, 64)}
		if in.AuthType == "PASS" {
			r.auth = PassAuth(in.AuthPass)
		}
		st := Backup
		if in.State == Master {
			st = Master
		}
		r.m = NewMachine(Params{VRID: uint8(in.VRID), Priority: uint8(in.Priority), Interval: in.AdvertInt, Version: in.Version,
			Preempt: !in.NoPreempt, PreemptDelay: in.PreemptDelay, Primary: prim, InitialState: st})
		for _, t := range in.Tracks {
			s := cfg.Scripts[t.Script]
			w := s.Weight
			if t.HasWeight {
				w = t.Weight
			}
			// keepalived: a script is considered OK until it fails (fall)
			r.scripts[t.Script] = &scriptState{s: s, weight: w, ok: true}
		}
		d.insts = append(d.insts, r)
	}
	return d, nil
}

// Run runs until ctx ends, then stops gracefully (priority 0 handover).
func (d *Daemon) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range d.insts {
		wg.Add(1)
		go func(r *runner) {
			defer wg.Done()
			r.run(ctx)
		}(r)
	}
	go d.dispatch(ctx)
	wg.Wait()
	return nil
}

// dispatch hands received packets to their instance.
func (d *Daemon) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case rcv, ok := <-d.net.Packets():
			if !ok {
				return
			}
			for _, r := range d.insts {
				r.receive(rcv)
			}
		}
	}
}

// Dump writes the state of every instance (SIGUSR1, like keepalived's
// /tmp/keepalived.data).
func (d *Daemon) Dump() string {
	out := "------< VRRP Topology >------\n"
	for _, r := range d.insts {
		done := make(chan string, 1)
		select {
		case r.events <- func(time.Time) []Action {
			done <- fmt.Sprintf(" VRRP Instance = %s\n   State = %s\n   Interface = %s\n   Virtual Router ID = %d\n   Priority = %d\n   Effective priority = %d\n   Advert interval = %v\n",
				r.in.Name, r.m.State(), r.in.Interface, r.in.VRID, r.in.Priority, r.m.Priority(), r.in.AdvertInt)
			return nil
		}:
			select {
			case s := <-done:
				out += s
			case <-time.After(time.Second):
			}
		default:
		}
	}
	return out
}

// State returns each instance's state by name.
func (d *Daemon) State() map[string]string {
	res := map[string]string{}
	for _, r := range d.insts {
		done := make(chan string, 1)
		r.events <- func(time.Time) []Action { done <- r.m.State().String(); return nil }
		select {
		case s := <-done:
			res[r.in.Name] = s
		case <-time.After(time.Second):
		}
	}
	return res
}

func (r *runner) receive(rcv Received) {
	if rcv.TTL != 0 && rcv.TTL != 255 {
		r.d.log.Debug("dropped advertisement with TTL != 255", "ttl", rcv.TTL, "src", rcv.Src)
		return
	}
	if r.ifindex != 0 && rcv.IfIndex != 0 && rcv.IfIndex != r.ifindex {
		return
	}
	p, err := Unmarshal(rcv.Payload, rcv.Src, rcv.Dst)
	if err != nil || int(p.VRID) != r.in.VRID {
		return
	}
	if rcv.Src.Equal(r.primary) {
		return // our own multicast looped back
	}
	if p.Version != r.in.Version {
		r.d.log.Warn("advertisement with another VRRP version ignored", "instance", r.in.Name, "version", p.Version)
		return
	}
	if p.Version == 2 {
		if r.in.AuthType == "PASS" && (p.AuthType != AuthPass || p.AuthData != r.auth) {
			r.d.log.Warn("advertisement with wrong authentication ignored", "instance", r.in.Name, "src", rcv.Src)
			return
		}
		if p.Interval != r.in.AdvertInt {
			r.d.log.Warn("advertisement interval mismatch; ignored (RFC 3768)", "instance", r.in.Name, "src", rcv.Src, "theirs", p.Interval, "ours", r.in.AdvertInt)
			return
		}
	}
	src := rcv.Src
	select {
	case r.events <- func(now time.Time) []Action { return r.m.Advert(now, p, src) }:
	default:
	}
}

func (r *runner) run(ctx context.Context) {
	log := r.d.log.With("instance", r.in.Name)
	log.Info("VRRP instance starting", "vrid", r.in.VRID, "priority", r.in.Priority, "interface", r.in.Interface, "version", r.in.Version)
	for name, st := range r.scripts {
		go r.runScript(ctx, name, st)
	}
	if len(r.in.TrackInterfaces) > 0 {
		go r.watchInterfaces(ctx, log)
	}
	r.perform(log, r.m.Start(time.Now()))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := r.m.NextDeadline()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), 0))
		}
		select {
		case <-ctx.Done():
			r.perform(log, r.m.Stop(time.Now()))
			r.notify(log, "STOP", "notify_stop")
			return
		case <-timer.C:
			r.perform(log, r.m.Tick(time.Now()))
		case ev := <-r.events:
			r.perform(log, ev(time.Now()))
		}
	}
}

func (r *runner) perform(log *slog.Logger, acts []Action) {
	for _, a := range acts {
		switch a.Kind {
		case SendAdvert:
			r.send(log, a.Priority)
		case AddVIPs:
			for _, v := range r.in.VIPs {
				dev := r.in.Interface
				if v.Dev != "" {
					dev = v.Dev
				}
				if err := r.d.net.AddVIP(dev, v); err != nil {
					log.Error("cannot add virtual address", "addr", v.Addr, "err", err)
				}
			}
			go r.garp(log)
		case RemoveVIPs:
			for _, v := range r.in.VIPs {
				dev := r.in.Interface
				if v.Dev != "" {
					dev = v.Dev
				}
				if err := r.d.net.DelVIP(dev, v); err != nil {
					log.Debug("removing virtual address", "addr", v.Addr, "err", err)
				}
			}
		case Transition:
			log.Info(fmt.Sprintf("(%s) Entering %s STATE", r.in.Name, a.State), "reason", a.Reason, "priority", r.m.Priority())
			switch a.State {
			case Master:
				r.notify(log, "MASTER", r.in.NotifyMaster)
			case Backup:
				r.notify(log, "BACKUP", r.in.NotifyBackup)
			case Fault:
				r.notify(log, "FAULT", r.in.NotifyFault)
			}
		}
	}
}

func (r *runner) send(log *slog.Logger, prio uint8) {
	ips := make([]net.IP, 0, len(r.in.VIPs))
	for _, v := range r.in.VIPs {
		ips = append(ips, v.Addr)
	}
	p := &Packet{Version: r.in.Version, VRID: uint8(r.in.VRID), Priority: prio, Interval: r.in.AdvertInt, IPs: ips}
	if r.in.AuthType == "PASS" {
		p.AuthType, p.AuthData = AuthPass, r.auth
	}
	dsts := r.in.UnicastPeers
	if len(dsts) == 0 {
		dsts = []net.IP{net.ParseIP(MulticastIPv4)}
	}
	for _, dst := range dsts {
		b, err := p.Marshal(r.primary, dst)
		if err != nil {
			log.Error("cannot encode advertisement", "err", err)
			return
		}
		if err := r.d.net.Send(r.in.Interface, r.primary, dst, b); err != nil {
			log.Warn("cannot send advertisement", "dst", dst, "err", err)
		}
	}
}

// garp sends gratuitous ARPs as keepalived does: a burst at once, another
// after garp_master_delay, each of vrrp_garp_master_repeat packets.
func (r *runner) garp(log *slog.Logger) {
	burst := func() {
		for i := 0; i < max(r.d.cfg.GarpRepeat, 1); i++ {
			for _, v := range r.in.VIPs {
				if err := r.d.net.GARP(r.in.Interface, v.Addr); err != nil {
					log.Debug("gratuitous ARP failed", "addr", v.Addr, "err", err)
				}
			}
		}
	}
	burst()
	if r.in.GarpDelay > 0 {
		time.Sleep(r.in.GarpDelay)
		if r.m.State() == Master {
			burst()
		}
	}
}

// notify runs a notify script with keepalived's arguments, and the
// generic "notify" script with TYPE NAME STATE PRIORITY.
func (r *runner) notify(log *slog.Logger, state, script string) {
	run := func(cmdline string, args ...string) {
		if cmdline == "" {
			return
		}
		cmd := exec.Command("/bin/sh", append([]string{"-c", cmdline + ` "$@"`, "notify"}, args...)...)
		if err := cmd.Start(); err != nil {
			log.Warn("notify script failed to start", "script", cmdline, "err", err)
			return
		}
		go cmd.Wait()
	}
	if state != "STOP" {
		run(script)
	} else {
		run(r.in.NotifyStop)
	}
	run(r.in.Notify, "INSTANCE", r.in.Name, state, strconv.Itoa(int(r.m.Priority())))
}

// runScript runs a tracking script every interval; after `fall`
// consecutive failures its weight applies (weight 0: FAULT), after `rise`
// successes it is lifted.
func (r *runner) runScript(ctx context.Context, name string, st *scriptState) {
	log := r.d.log.With("instance", r.in.Name, "script", name)
	t := time.NewTicker(st.s.Interval)
	defer t.Stop()
	for {
		to := st.s.Timeout
		if to <= 0 {
			to = st.s.Interval
		}
		cctx, cancel := context.WithTimeout(ctx, to)
		err := exec.CommandContext(cctx, "/bin/sh", "-c", st.s.Command).Run()
		cancel()
		if ctx.Err() != nil {
			return
		}
		ok := err == nil
		r.events <- func(now time.Time) []Action {
			changed := false
			if ok {
				st.fail = 0
				st.succ++
				if !st.ok && st.succ >= max(st.s.Rise, 1) {
					st.ok, changed = true, true
					log.Info("VRRP_Script succeeded")
				}
			} else {
				st.succ = 0
				st.fail++
				if st.ok && st.fail >= max(st.s.Fall, 1) {
					st.ok, changed = false, true
					log.Warn("VRRP_Script failed", "err", err)
				}
			}
			if !changed {
				return nil
			}
			return r.recompute(now)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recompute applies script weights: effective priority = base + the sum
// of failing scripts' weights (clamped to 1..254); weight 0 means FAULT.
func (r *runner) recompute(now time.Time) []Action {
	prio := r.in.Priority
	fault := r.ifDown
	for _, st := range r.scripts {
		if st.ok {
			continue
		}
		if st.weight == 0 {
			fault = true
			continue
		}
		prio += st.weight
	}
	if r.in.Priority != 255 {
		prio = min(max(prio, 1), 254)
	}
	var acts []Action
	acts = append(acts, r.m.SetFault(now, fault)...)
	acts = append(acts, r.m.SetPriority(now, uint8(prio))...)
	return acts
}

// watchInterfaces puts the instance in FAULT while a track_interface is
// down (keepalived's behaviour without a weight), and out of it when all
// are up again.
func (r *runner) watchInterfaces(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := false
	for {
		down := false
		for _, name := range r.in.TrackInterfaces {
			ifi, err := net.InterfaceByName(name)
			if err != nil || ifi.Flags&net.FlagUp == 0 {
				down = true
			}
		}
		if down != last {
			last = down
			if down {
				log.Warn("tracked interface down: entering FAULT", "interfaces", r.in.TrackInterfaces)
			} else {
				log.Info("tracked interfaces up again")
			}
			d := down
			select {
			case r.events <- func(now time.Time) []Action { r.ifDown = d; return r.recompute(now) }:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// CheckCapabilities tells whether the process may open raw sockets and
// change addresses (CAP_NET_RAW, CAP_NET_ADMIN).
func CheckCapabilities() error {
	if os.Geteuid() == 0 {
		return nil
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	var eff uint64
	for _, l := range splitLines(string(b)) {
		if len(l) > 7 && l[:7] == "CapEff:" {
			eff, _ = strconv.ParseUint(trimSpace(l[7:]), 16, 64)
		}
	}
	const netAdmin, netRaw = 12, 13
	if eff&(1<<netAdmin) == 0 || eff&(1<<netRaw) == 0 {
		return fmt.Errorf("warren-vrrp needs CAP_NET_ADMIN and CAP_NET_RAW (run as root, or: setcap cap_net_admin,cap_net_raw+ep warren-vrrp)")
	}
	return nil
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}
