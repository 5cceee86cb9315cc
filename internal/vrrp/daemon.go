package vrrp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// Net is the OS layer the daemon drives (internal/vrrp/netlink implements
// it; tests can fake it).
type Net interface {
	// Primary returns the interface's first IPv4 address, or with v6
	// its IPv6 link-local address (RFC 5798 section 5.1.2.1).
	Primary(ifname string, v6 bool) (net.IP, error)
	// Send transmits a VRRP payload from src to dst (multicast group or
	// unicast peer) on the interface with TTL (IPv6: hop limit) 255.
	Send(ifname string, src, dst net.IP, payload []byte) error
	// Packets delivers received VRRP payloads.
	Packets() <-chan Received
	AddVIP(ifname string, v VIP) error
	DelVIP(ifname string, v VIP) error
	// GARP announces ip on the interface: a gratuitous ARP for IPv4, an
	// unsolicited neighbour advertisement for IPv6.
	GARP(ifname string, ip net.IP) error
}

// Received is one packet from the wire.
type Received struct {
	Payload  []byte
	Src, Dst net.IP
	TTL      int // IPv4 TTL or IPv6 hop limit
	IfIndex  int
}

// Daemon runs every instance of a configuration.
type Daemon struct {
	cfg   *Config
	net   Net
	log   *slog.Logger
	insts []*runner
	loops []*loop
	// RunNotify starts a notify script: cmdline is the configured command
	// (run by /bin/sh), args are appended as its arguments. Tests replace
	// it; the default starts the process and does not wait for it.
	RunNotify func(cmdline string, args ...string)
}

// A loop is one goroutine that owns some machines: one instance, or
// every member of a vrrp_sync_group, so that the group's members change
// state together without locks (keepalived is single-threaded too).
type loop struct {
	d       *Daemon
	runners []*runner
	group   *syncGroup
	events  chan event
}

// event is work for a runner, run on its loop's goroutine.
type event struct {
	r  *runner
	fn func(now time.Time) []Action
}

// syncGroup is a vrrp_sync_group at run time.
type syncGroup struct {
	cfg     *SyncGroup
	members []*runner
	state   State // Init until every member has left Init
	fault   bool  // some member has a fault of its own: all are in FAULT
}

type runner struct {
	d       *Daemon
	in      *Instance
	m       *Machine
	loop    *loop
	primary net.IP
	auth    [8]byte
	ifindex int
	scripts map[string]*scriptState
	ifDown  bool // a track_interface is down
	// noWeights: a sync group member without sync_group_tracking_weight:
	// a failing script means FAULT, whatever its weight (keepalived)
	noWeights bool
}

// post queues fn for r's loop, waiting for room unless ctx ends.
func (r *runner) post(ctx context.Context, fn func(now time.Time) []Action) bool {
	select {
	case r.loop.events <- event{r, fn}:
		return true
	case <-ctx.Done():
		return false
	}
}

// tryPost queues fn for r's loop if there is room.
func (r *runner) tryPost(fn func(now time.Time) []Action) bool {
	select {
	case r.loop.events <- event{r, fn}:
		return true
	default:
		return false
	}
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
	d.RunNotify = func(cmdline string, args ...string) {
		cmd := exec.Command("/bin/sh", append([]string{"-c", cmdline + ` "$@"`, "notify"}, args...)...)
		if err := cmd.Start(); err != nil {
			log.Warn("notify script failed to start", "script", cmdline, "err", err)
			return
		}
		go cmd.Wait()
	}
	groupOf := map[string]*SyncGroup{}
	for _, g := range cfg.SyncGroups {
		for _, name := range g.Group {
			groupOf[name] = g
		}
	}
	for _, in := range cfg.Instances {
		prim := in.UnicastSrc
		if prim == nil {
			p, err := nt.Primary(in.Interface, in.IPv6)
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
		g := groupOf[in.Name]
		r := &runner{d: d, in: in, primary: prim, ifindex: idx, scripts: map[string]*scriptState{}, noWeights: g != nil && !g.TrackingWeight}
		if in.AuthType == "PASS" {
			r.auth = PassAuth(in.AuthPass)
		}
		st := Backup
		if in.State == Master {
			st = Master
		}
		r.m = NewMachine(Params{VRID: uint8(in.VRID), Priority: uint8(in.Priority), Interval: in.AdvertInt, Version: in.Version,
			Preempt: !in.NoPreempt, PreemptDelay: in.PreemptDelay, Primary: prim, InitialState: st, Sync: g != nil})
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
	// one loop per sync group, one per other instance
	for _, g := range cfg.SyncGroups {
		if len(g.Group) == 0 {
			continue
		}
		l := &loop{d: d, group: &syncGroup{cfg: g}}
		for _, r := range d.insts {
			if groupOf[r.in.Name] == g {
				r.loop = l
				l.runners = append(l.runners, r)
			}
		}
		l.group.members = l.runners
		l.events = make(chan event, 64*len(l.runners))
		d.loops = append(d.loops, l)
	}
	for _, r := range d.insts {
		if r.loop == nil {
			r.loop = &loop{d: d, runners: []*runner{r}, events: make(chan event, 64)}
			d.loops = append(d.loops, r.loop)
		}
	}
	return d, nil
}

// Run runs until ctx ends, then stops gracefully (priority 0 handover).
func (d *Daemon) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, l := range d.loops {
		wg.Add(1)
		go func(l *loop) {
			defer wg.Done()
			l.run(ctx)
		}(l)
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

// Dump writes the state of every instance and sync group (SIGUSR1, like
// keepalived's /tmp/keepalived.data).
func (d *Daemon) Dump() string {
	out := "------< VRRP Topology >------\n"
	for _, r := range d.insts {
		done := make(chan string, 1)
		if !r.tryPost(func(time.Time) []Action {
			s := fmt.Sprintf(" VRRP Instance = %s\n   State = %s\n   Interface = %s\n   Virtual Router ID = %d\n   Priority = %d\n   Effective priority = %d\n   Advert interval = %v\n",
				r.in.Name, r.m.State(), r.in.Interface, r.in.VRID, r.in.Priority, r.m.Priority(), r.in.AdvertInt)
			if g := r.loop.group; g != nil {
				s += fmt.Sprintf("   Sync group = %s\n", g.cfg.Name)
			}
			done <- s
			return nil
		}) {
			continue
		}
		select {
		case s := <-done:
			out += s
		case <-time.After(time.Second):
		}
	}
	groups := ""
	for _, l := range d.loops {
		if l.group == nil {
			continue
		}
		g := l.group
		done := make(chan string, 1)
		if !l.runners[0].tryPost(func(time.Time) []Action {
			s := fmt.Sprintf(" VRRP Sync Group = %s, %s\n", g.cfg.Name, g.state)
			for _, m := range g.members {
				s += fmt.Sprintf("   monitor = %s (%s)\n", m.in.Name, m.m.State())
			}
			done <- s
			return nil
		}) {
			continue
		}
		select {
		case s := <-done:
			groups += s
		case <-time.After(time.Second):
		}
	}
	if groups != "" {
		out += "------< VRRP Sync groups >------\n" + groups
	}
	return out
}

// State returns each instance's state by name.
func (d *Daemon) State() map[string]string {
	res := map[string]string{}
	for _, r := range d.insts {
		done := make(chan string, 1)
		r.loop.events <- event{r, func(time.Time) []Action { done <- r.m.State().String(); return nil }}
		select {
		case s := <-done:
			res[r.in.Name] = s
		case <-time.After(time.Second):
		}
	}
	return res
}

// GroupState returns each vrrp_sync_group's state by name (INIT until
// every member has left INIT).
// StatusHandler serves the instances' states as JSON ({"VI_1":"MASTER"})
// and, at /sync_groups, the sync groups' states (warren-vrrp
// --status-addr).
func (d *Daemon) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/sync_groups" {
			json.NewEncoder(w).Encode(d.GroupState())
			return
		}
		json.NewEncoder(w).Encode(d.State())
	})
}

func (d *Daemon) GroupState() map[string]string {
	res := map[string]string{}
	for _, l := range d.loops {
		if l.group == nil {
			continue
		}
		g := l.group
		done := make(chan string, 1)
		l.events <- event{l.runners[0], func(time.Time) []Action { done <- g.state.String(); return nil }}
		select {
		case s := <-done:
			res[g.cfg.Name] = s
		case <-time.After(time.Second):
		}
	}
	return res
}

func (r *runner) receive(rcv Received) {
	if isV6(rcv.Src) != r.in.IPv6 {
		return // the other family's instances
	}
	if rcv.TTL != 0 && rcv.TTL != 255 {
		r.d.log.Debug("dropped advertisement with TTL (hop limit) != 255", "ttl", rcv.TTL, "src", rcv.Src)
		return
	}
	if r.in.IPv6 && rcv.Dst.IsMulticast() && !rcv.Src.IsLinkLocalUnicast() {
		// RFC 5798 section 5.1.2.1: the source is the sender's link-local address
		r.d.log.Debug("dropped IPv6 advertisement not from a link-local address", "src", rcv.Src)
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
	r.tryPost(func(now time.Time) []Action { return r.m.Advert(now, p, src) })
}

func (r *runner) logger() *slog.Logger { return r.d.log.With("instance", r.in.Name) }

// run drives the loop's machines until ctx ends.
func (l *loop) run(ctx context.Context) {
	for _, r := range l.runners {
		log := r.logger()
		log.Info("VRRP instance starting", "vrid", r.in.VRID, "priority", r.in.Priority, "interface", r.in.Interface, "version", r.in.Version)
		for name, st := range r.scripts {
			go r.runScript(ctx, name, st)
		}
		if len(r.in.TrackInterfaces) > 0 {
			go r.watchInterfaces(ctx, log)
		}
	}
	now := time.Now()
	for _, r := range l.runners {
		l.apply(now, r, r.m.Start(now))
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var next time.Time
		for _, r := range l.runners {
			if dl := r.m.NextDeadline(); !dl.IsZero() && (next.IsZero() || dl.Before(next)) {
				next = dl
			}
		}
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
			now := time.Now()
			for _, r := range l.runners {
				r.perform(r.m.Stop(now))
				r.notify("STOP", r.in.NotifyStop)
			}
			if l.group != nil {
				l.group.state = Init
				l.groupNotify("STOP")
			}
			return
		case <-timer.C:
			now := time.Now()
			for _, r := range l.runners {
				if dl := r.m.NextDeadline(); !dl.IsZero() && !now.Before(dl) {
					l.apply(now, r, r.m.Tick(now))
				}
			}
		case ev := <-l.events:
			now := time.Now()
			l.apply(now, ev.r, ev.fn(now))
		}
	}
}

// apply performs r's actions and lets its sync group react.
func (l *loop) apply(now time.Time, r *runner, acts []Action) {
	r.perform(acts)
	if l.group != nil {
		l.reconcile(now, r, acts)
	}
}

// reconcile keeps a sync group's members together, as keepalived's
// vrrp_sync.c: a member with a fault of its own puts every member in
// FAULT until all are healthy; a member that goes BACKUP takes the
// MASTER members to BACKUP; members become MASTER only together, once
// every member wants to. Then the group's state and notify scripts.
func (l *loop) reconcile(now time.Time, r *runner, acts []Action) {
	g := l.group
	type done struct {
		r    *runner
		acts []Action
	}
	queue := []done{{r, acts}}
	do := func(m *runner, acts []Action) {
		if len(acts) > 0 {
			m.perform(acts)
			queue = append(queue, done{m, acts})
		}
	}
	// every member changes state at most a few times per reconcile: the
	// bound only guards against a bug looping forever
	for i := 0; i < len(queue) && i < 16*len(g.members); i++ {
		fault := false
		for _, m := range g.members {
			fault = fault || m.ownFault()
		}
		if fault != g.fault {
			g.fault = fault
			if fault {
				l.d.log.Warn(fmt.Sprintf("VRRP_Group(%s) Syncing instances to FAULT state", g.cfg.Name))
			} else {
				l.d.log.Info(fmt.Sprintf("VRRP_Group(%s) Leaving FAULT state", g.cfg.Name))
			}
			for _, m := range g.members {
				do(m, m.recompute(now))
			}
		}
		cur := queue[i]
		for _, a := range cur.acts {
			switch {
			case a.Kind == Transition && a.State == Backup:
				for _, m := range g.members {
					if m != cur.r && m.m.State() == Master {
						do(m, m.m.SyncBackup(now))
					}
				}
			case a.Kind == WantMaster && !g.fault:
				all := true
				for _, m := range g.members {
					all = all && m.m.Wants()
				}
				if all {
					for _, m := range g.members {
						do(m, m.m.SyncMaster(now))
					}
				}
			}
		}
	}
	st := g.state
	anyFault, allMaster, allBackup := false, true, true
	for _, m := range g.members {
		s := m.m.State()
		anyFault = anyFault || s == Fault
		allMaster = allMaster && s == Master
		allBackup = allBackup && s == Backup
	}
	switch {
	case anyFault:
		st = Fault
	case allMaster:
		st = Master
	case allBackup:
		st = Backup
	}
	if st != g.state {
		g.state = st
		l.d.log.Info(fmt.Sprintf("VRRP_Group(%s) Entering %s STATE", g.cfg.Name, st))
		l.groupNotify(st.String())
	}
}

// groupNotify runs the group's notify scripts as keepalived does: the
// notify_<state> script without arguments, then the generic notify script
// with GROUP NAME STATE 0 (a group's priority is given as 0).
func (l *loop) groupNotify(state string) {
	g := l.group.cfg
	script := ""
	switch state {
	case "MASTER":
		script = g.NotifyMaster
	case "BACKUP":
		script = g.NotifyBackup
	case "FAULT":
		script = g.NotifyFault
	case "STOP":
		script = g.NotifyStop
	}
	if script != "" {
		l.d.RunNotify(script)
	}
	if g.Notify != "" {
		l.d.RunNotify(g.Notify, "GROUP", g.Name, state, "0")
	}
}

func (r *runner) perform(acts []Action) {
	log := r.logger()
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
			r.garp(log)
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
		case WantMaster:
			if r.loop.group != nil {
				log.Debug("would become MASTER; waiting for the sync group", "group", r.loop.group.cfg.Name)
			}
		case Transition:
			log.Info(fmt.Sprintf("(%s) Entering %s STATE", r.in.Name, a.State), "reason", a.Reason, "priority", r.m.Priority())
			switch a.State {
			case Master:
				r.notify("MASTER", r.in.NotifyMaster)
			case Backup:
				r.notify("BACKUP", r.in.NotifyBackup)
			case Fault:
				r.notify("FAULT", r.in.NotifyFault)
			}
		}
	}
}

func (r *runner) send(log *slog.Logger, prio uint8) {
	ips := make([]net.IP, 0, len(r.in.VIPs))
	// IPv6: a link-local virtual address goes first (RFC 5798 5.2.9)
	for _, v := range r.in.VIPs {
		if r.in.IPv6 && v.Addr.IsLinkLocalUnicast() {
			ips = append(ips, v.Addr)
		}
	}
	for _, v := range r.in.VIPs {
		if !r.in.IPv6 || !v.Addr.IsLinkLocalUnicast() {
			ips = append(ips, v.Addr)
		}
	}
	p := &Packet{Version: r.in.Version, VRID: uint8(r.in.VRID), Priority: prio, Interval: r.in.AdvertInt, IPs: ips}
	if r.in.AuthType == "PASS" {
		p.AuthType, p.AuthData = AuthPass, r.auth
	}
	dsts := r.in.UnicastPeers
	if len(dsts) == 0 {
		dsts = []net.IP{net.ParseIP(MulticastIPv4)}
		if r.in.IPv6 {
			dsts = []net.IP{net.ParseIP(MulticastIPv6)}
		}
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

// garp announces the addresses as keepalived does (gratuitous ARP, or
// unsolicited neighbour advertisements for IPv6): a burst at once, and
// another after garp_master_delay if still Master, each of
// vrrp_garp_master_repeat packets per address.
func (r *runner) garp(log *slog.Logger) {
	burst := func() {
		for i := 0; i < max(r.d.cfg.GarpRepeat, 1); i++ {
			for _, v := range r.in.VIPs {
				if err := r.d.net.GARP(r.in.Interface, v.Addr); err != nil {
					log.Debug("address announcement failed", "addr", v.Addr, "err", err)
				}
			}
		}
	}
	burst()
	if r.in.GarpDelay > 0 {
		time.AfterFunc(r.in.GarpDelay, func() {
			// on the loop, so the state is read where it is written; if
			// the loop has ended or is busy, the second burst is skipped
			r.tryPost(func(time.Time) []Action {
				if r.m.State() == Master {
					burst()
				}
				return nil
			})
		})
	}
}

// notify runs a notify script with keepalived's arguments, and the
// generic "notify" script with TYPE NAME STATE PRIORITY.
func (r *runner) notify(state, script string) {
	run := func(cmdline string, args ...string) {
		if cmdline != "" {
			r.d.RunNotify(cmdline, args...)
		}
	}
	run(script)
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
		posted := r.post(ctx, func(now time.Time) []Action {
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
		})
		if !posted {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ownFault reports a fault of the instance itself: a tracked interface
// down, or a failing script with weight 0 (any failing script for a sync
// group member without sync_group_tracking_weight, as keepalived).
func (r *runner) ownFault() bool {
	if r.ifDown {
		return true
	}
	for _, st := range r.scripts {
		if !st.ok && (st.weight == 0 || r.noWeights) {
			return true
		}
	}
	return false
}

// recompute applies script weights: effective priority = base + the sum
// of failing scripts' weights (clamped to 1..254); weight 0 means FAULT,
// and so does the sync group being in FAULT.
func (r *runner) recompute(now time.Time) []Action {
	prio := r.in.Priority
	fault := r.ownFault() || r.loop.group != nil && r.loop.group.fault
	if !r.noWeights {
		for _, st := range r.scripts {
			if !st.ok {
				prio += st.weight
			}
		}
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
			if !r.post(ctx, func(now time.Time) []Action { r.ifDown = d; return r.recompute(now) }) {
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
