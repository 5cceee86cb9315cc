package vrrp

import (
	"bytes"
	"net"
	"time"
)

// State of an instance (RFC 5798 section 6.4, plus keepalived's FAULT).
type State int

// The states.
const (
	Init State = iota
	Backup
	Master
	Fault
)

func (s State) String() string {
	return [...]string{"INIT", "BACKUP", "MASTER", "FAULT"}[s]
}

// ActionKind says what the I/O shell must do.
type ActionKind int

// Actions.
const (
	SendAdvert ActionKind = iota // send an advertisement with Priority
	AddVIPs                      // take the virtual addresses (then gratuitous ARP)
	RemoveVIPs
	Transition // state changed (notify scripts, logs)
	// WantMaster: a sync group member (Params.Sync) would become Master
	// (Master_Down_Interval passed, or it starts as owner or "state
	// MASTER") but leaves the decision to its group: the group makes all
	// members Master together with SyncMaster once every member wants to
	// (keepalived's vrrp_sync_can_goto_master: prefer BACKUP to thrashing).
	WantMaster
)

// Action is one instruction from the machine.
type Action struct {
	Kind     ActionKind
	Priority uint8
	State    State
	Reason   string
}

// Params configure an instance.
type Params struct {
	VRID         uint8
	Priority     uint8 // configured priority (1..255)
	Interval     time.Duration
	Version      int
	Preempt      bool
	PreemptDelay time.Duration
	Primary      net.IP // our address on the interface (tie breaking)
	InitialState State  // Backup or Master as configured (keepalived's "state"); the RFC decides
	// Sync: the instance is a member of a vrrp_sync_group. It never
	// becomes Master on its own: it emits WantMaster and waits for
	// SyncMaster.
	Sync bool
}

// Machine is the RFC 5798 state machine, without I/O: every method takes
// the current time and returns the actions to perform. Timers are kept as
// deadlines; the shell calls Tick when NextDeadline passes.
type Machine struct {
	p             Params
	state         State
	prio          uint8 // effective priority (after tracking weights)
	masterIntv    time.Duration
	masterDown    time.Time // Backup: when the master is presumed dead
	adverDue      time.Time // Master: when the next advertisement is due
	preemptAfter  time.Time // Backup with preempt_delay: earliest preemption
	startedBackup time.Time
	want          bool // Sync, Backup: would be Master (see WantMaster)
}

// NewMachine returns an instance in Init.
func NewMachine(p Params) *Machine {
	if p.Version == 0 {
		p.Version = 2
	}
	if p.Interval == 0 {
		p.Interval = time.Second
	}
	return &Machine{p: p, prio: p.Priority, masterIntv: p.Interval}
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Priority returns the effective priority.
func (m *Machine) Priority() uint8 { return m.prio }

// skew is Skew_Time: ((256 - priority) * Master_Adver_Interval) / 256.
func (m *Machine) skew() time.Duration {
	return time.Duration(256-int(m.prio)) * m.masterIntv / 256
}

// masterDownInterval is 3 * Master_Adver_Interval + Skew_Time.
func (m *Machine) masterDownInterval() time.Duration { return 3*m.masterIntv + m.skew() }

// NextDeadline returns when Tick must be called (zero: no timer).
func (m *Machine) NextDeadline() time.Time {
	switch m.state {
	case Backup:
		return m.masterDown
	case Master:
		return m.adverDue
	}
	return time.Time{}
}

func (m *Machine) become(s State, reason string, acts []Action) []Action {
	if m.state == s {
		return acts
	}
	m.state = s
	return append(acts, Action{Kind: Transition, State: s, Reason: reason})
}

func (m *Machine) toMaster(now time.Time, reason string, acts []Action) []Action {
	m.want = false
	acts = append(acts, Action{Kind: SendAdvert, Priority: m.prio}, Action{Kind: AddVIPs})
	m.adverDue = now.Add(m.p.Interval)
	return m.become(Master, reason, acts)
}

func (m *Machine) toBackup(now time.Time, reason string, acts []Action) []Action {
	if m.state == Master {
		acts = append(acts, Action{Kind: RemoveVIPs})
	}
	m.masterDown = now.Add(m.masterDownInterval())
	m.want = false
	if m.state != Backup {
		m.startedBackup = now
		if m.p.PreemptDelay > 0 {
			m.preemptAfter = now.Add(m.p.PreemptDelay)
		}
	}
	return m.become(Backup, reason, acts)
}

// Start leaves Init (RFC 5798 6.4.1): the address owner (priority 255)
// becomes Master at once; everyone else, "state MASTER" included, starts
// as Backup, as keepalived does.
func (m *Machine) Start(now time.Time) []Action {
	if m.state == Fault {
		return nil
	}
	if m.p.Sync {
		acts := m.toBackup(now, "startup", nil)
		if m.prio == 255 || m.p.InitialState == Master {
			acts = m.wantMaster(now, acts)
		}
		return acts
	}
	if m.prio == 255 {
		return m.toMaster(now, "address owner", nil)
	}
	// keepalived's "state MASTER" below priority 255 also starts as
	// Backup: it takes the addresses only when no better master speaks
	// within Master_Down_Interval, by which time its tracking scripts have
	// reported. Claiming at once would take the VIP from a working master
	// (and give it back), interrupting clients twice.
	return m.toBackup(now, "startup", nil)
}

// Tick handles expired timers.
func (m *Machine) Tick(now time.Time) []Action {
	switch m.state {
	case Backup:
		if !m.masterDown.IsZero() && !now.Before(m.masterDown) {
			if m.p.Sync {
				return m.wantMaster(now, nil)
			}
			return m.toMaster(now, "no advertisement within Master_Down_Interval", nil)
		}
	case Master:
		if !now.Before(m.adverDue) {
			m.adverDue = now.Add(m.p.Interval)
			return []Action{{Kind: SendAdvert, Priority: m.prio}}
		}
	}
	return nil
}

// higherAddr reports whether a is numerically greater than b.
func higherAddr(a, b net.IP) bool {
	a4, b4 := a.To4(), b.To4()
	if a4 != nil && b4 != nil {
		return bytes.Compare(a4, b4) > 0
	}
	return bytes.Compare(a.To16(), b.To16()) > 0
}

// Advert handles a valid advertisement for our VRID from src.
func (m *Machine) Advert(now time.Time, p *Packet, src net.IP) []Action {
	switch m.state {
	case Backup:
		if p.Priority == 0 {
			// the master resigned: take over after Skew_Time
			m.masterDown = now.Add(m.skew())
			return nil
		}
		if m.p.Version == 3 && p.Interval > 0 {
			m.masterIntv = p.Interval
		}
		preemptOK := m.p.Preempt && (m.preemptAfter.IsZero() || !now.Before(m.preemptAfter))
		if !preemptOK || p.Priority >= m.prio {
			m.masterDown = now.Add(m.masterDownInterval())
			m.want = false // a master we accept is alive
		}
		// else: a lower-priority master and we preempt: let the timer run out
		return nil
	case Master:
		if p.Priority == 0 {
			m.adverDue = now.Add(m.p.Interval)
			return []Action{{Kind: SendAdvert, Priority: m.prio}}
		}
		if p.Priority > m.prio || (p.Priority == m.prio && higherAddr(src, m.p.Primary)) {
			if m.p.Version == 3 && p.Interval > 0 {
				m.masterIntv = p.Interval
			}
			return m.toBackup(now, "higher priority advertisement", nil)
		}
		// keepalived answers a lower-priority master at once so it yields
		m.adverDue = now.Add(m.p.Interval)
		return []Action{{Kind: SendAdvert, Priority: m.prio}}
	}
	return nil
}

// wantMaster records that a sync group member would be Master and re-arms
// Master_Down_Interval (keepalived does the same while the group waits).
func (m *Machine) wantMaster(now time.Time, acts []Action) []Action {
	m.want = true
	m.masterDown = now.Add(m.masterDownInterval())
	return append(acts, Action{Kind: WantMaster, Priority: m.prio})
}

// Wants reports whether the instance is Master or, as a sync group
// member in Backup, wants to be.
func (m *Machine) Wants() bool {
	return m.state == Master || m.state == Backup && m.want
}

// SyncMaster makes a Backup sync group member Master because its whole
// group becomes Master (keepalived's vrrp_sync_master).
func (m *Machine) SyncMaster(now time.Time) []Action {
	if m.state != Backup {
		return nil
	}
	return m.toMaster(now, "sync group", nil)
}

// SyncBackup makes a Master sync group member Backup because another
// member left MASTER (keepalived's vrrp_sync_backup).
func (m *Machine) SyncBackup(now time.Time) []Action {
	if m.state != Master {
		return nil
	}
	return m.toBackup(now, "sync group", nil)
}

// SetPriority changes the effective priority (tracking scripts and
// interfaces); a Master re-advertises at once.
func (m *Machine) SetPriority(now time.Time, prio uint8) []Action {
	if prio == m.prio {
		return nil
	}
	m.prio = prio
	if m.state == Master {
		m.adverDue = now.Add(m.p.Interval)
		return []Action{{Kind: SendAdvert, Priority: m.prio}}
	}
	return nil
}

// SetFault enters or leaves FAULT (a tracked script with weight 0 failed,
// or a tracked interface went down).
func (m *Machine) SetFault(now time.Time, fault bool) []Action {
	if fault {
		if m.state == Fault {
			return nil
		}
		var acts []Action
		if m.state == Master {
			acts = append(acts, Action{Kind: SendAdvert, Priority: 0}, Action{Kind: RemoveVIPs})
		}
		return m.become(Fault, "tracked script or interface failed", acts)
	}
	if m.state != Fault {
		return nil
	}
	m.state = Init
	return m.Start(now)
}

// Stop is a graceful shutdown: a Master sends priority 0 so a Backup takes
// over after Skew_Time, and releases the addresses.
func (m *Machine) Stop(now time.Time) []Action {
	var acts []Action
	if m.state == Master {
		acts = append(acts, Action{Kind: SendAdvert, Priority: 0}, Action{Kind: RemoveVIPs})
	}
	m.state = Init
	return acts
}
