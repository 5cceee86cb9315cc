// Package consensus runs many Raft groups on one node (go.etcd.io/raft/v3
// RawNode): one event loop drives every group, their log entries share one
// write-ahead log (internal/wal) so a single fsync covers every group's
// appends (group commit across groups), and their messages travel over
// one Transport per node. A group's state machine is the caller's: the
// cluster metadata, or one mirrored queue.
//
//	h, _ := consensus.Open(consensus.Options{ID: 1, Dir: dir, Transport: tr})
//	h.AddGroup(7, []uint64{1, 2, 3}, fsm)
//	res, err := h.Propose(ctx, 7, cmd) // applied on a majority's disk and here
//
// Transports: TCPTransport (one connection per pair of nodes, cookie
// checked) and MemNetwork (in-process, partitionable, for tests).
//
// Membership: founding members bootstrap a group with the same list;
// AddMember / RemoveMember change it one node at a time, and a new node
// starts its replica with JoinGroup and learns the log from the leader.
//
// Snapshots: a state machine that implements Snapshotter is saved every
// SnapshotEvery entries (and right after a member is added, so a joiner
// is never sent a snapshot from before it joined); log segments no group
// needs any more are deleted. One that does not is rebuilt by replaying
// its whole log at start, and its log is kept.
//
// Status: a foundation for clustering, not yet used by the broker.
package consensus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/warrenmq/warren/internal/wal"
)

// StateMachine is what a group replicates. Apply runs on the host's loop,
// in log order, on every member; its result goes back to the proposer.
type StateMachine interface {
	Apply(index uint64, cmd []byte) any
}

// Restorer is a StateMachine that can take its whole state from a
// snapshot's data (sent by a leader to a member far behind).
type Restorer interface {
	Restore(data []byte) error
}

// Snapshotter is a StateMachine whose state can be saved whole: the host
// then snapshots it every Options.SnapshotEvery entries and drops the log
// before the snapshot. Snapshot runs on the host's loop between Applies.
type Snapshotter interface {
	Restorer
	Snapshot() ([]byte, error)
}

// Envelope is one Raft message of one group.
type Envelope struct {
	Group uint64
	Msg   pb.Message
}

// Transport carries envelopes to other hosts. Send must not block for
// long; Raft tolerates lost messages.
type Transport interface {
	Send(to uint64, envs []Envelope)
}

// Options configure a host.
type Options struct {
	ID        uint64 // this node's id in every group, not 0
	Dir       string // where the host's log lives
	Transport Transport
	// Tick is the Raft tick (default 10 ms); elections time out after 10
	// ticks without a leader's heartbeat (randomised up to 20).
	Tick   time.Duration
	NoSync bool // tests only
	// SnapshotEvery is how many applied entries trigger a snapshot of a
	// group whose state machine is a Snapshotter (default 10,000).
	SnapshotEvery uint64
	SegmentSize   int64 // of the host's log (default 64 MiB)
	// ProposalTimeout bounds a ProposeAsync (default 10 s).
	ProposalTimeout time.Duration
	Logger          *slog.Logger
}

// Errors.
var (
	ErrUnknownGroup = errors.New("consensus: unknown group")
	ErrClosed       = errors.New("consensus: host closed")
	ErrDropped      = errors.New("consensus: proposal dropped (no leader reachable)")
)

type group struct {
	id      uint64
	rn      *raft.RawNode
	ms      *raft.MemoryStorage
	sm      StateMachine
	lead    atomic.Uint64
	applied atomic.Uint64

	// owned by the loop
	cs        pb.ConfState // membership as of the last applied entry
	snapIndex uint64       // Raft index of the last snapshot taken
	forceSnap bool         // take one now (a member was added)
	pin       uint64       // first WAL index this group still needs (0: none yet)
	recs      []walRec     // records holding entries past the last snapshot
}

type proposal struct {
	group   uint64
	id      uint64
	data    []byte
	cc      *pb.ConfChange // a membership change instead of data
	done    chan result
	async   bool
	retried bool
}

type result struct {
	v   any
	err error
}

// waiter is a local proposer: a blocked Propose (ch) or a callback.
type waiter struct {
	ch chan result
	fn func(any, error)
}

type asyncWait struct {
	id       uint64
	deadline time.Time
}

// Host is one node's multi-raft engine. Safe for concurrent use.
type Host struct {
	opts Options
	lg   *slog.Logger
	log  *wal.Log

	mu       sync.Mutex
	groups   map[uint64]*group
	restored map[uint64]*restoredGroup // state found in the log, by group
	waiting  map[uint64]*waiter        // proposal id → proposer
	async    []asyncWait               // ProposeAsync deadlines, oldest first (loop)
	closed   bool

	inbox  chan []Envelope
	props  chan proposal
	adds   chan *group
	stop   chan struct{}
	done   chan struct{}
	nextID atomic.Uint64
	fsyncs atomic.Uint64
	retry  []proposal // owned by the loop
}

// Log record kinds in the host's WAL.
const (
	recSnapshot = 'S' // a group's initial state (its members)
	recReady    = 'R' // a group's hard state and new entries
)

// Open recovers the host's log and starts its loop.
func Open(o Options) (*Host, error) {
	h, err := open(o)
	if err != nil {
		return nil, err
	}
	go h.loop()
	return h, nil
}

// open recovers the host without starting its loop (tests drive it).
func open(o Options) (*Host, error) {
	if o.ID == 0 {
		return nil, errors.New("consensus: node id 0 is reserved")
	}
	if o.Tick <= 0 {
		o.Tick = 10 * time.Millisecond
	}
	if o.ProposalTimeout <= 0 {
		o.ProposalTimeout = 10 * time.Second
	}
	if o.SnapshotEvery == 0 {
		o.SnapshotEvery = 10000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l, err := wal.Open(wal.Options{Dir: o.Dir, NoSync: o.NoSync, Logger: o.Logger, SegmentSize: o.SegmentSize})
	if err != nil {
		return nil, err
	}
	h := &Host{
		opts: o, lg: o.Logger, log: l,
		groups: map[uint64]*group{}, restored: map[uint64]*restoredGroup{}, waiting: map[uint64]*waiter{},
		inbox: make(chan []Envelope, 1024), props: make(chan proposal, 1024), adds: make(chan *group),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	h.nextID.Store(o.ID << 40)
	if err := h.replay(); err != nil {
		l.Close()
		return nil, err
	}
	return h, nil
}

// replay rebuilds every group's storage from the log in two passes: the
// latest snapshot of each group first, then the entries and hard states
// written after it (some entries past a snapshot may sit in records
// written just before it).
func (h *Host) replay() error {
	snaps := map[uint64]pb.Snapshot{}
	snapAt := map[uint64]uint64{}
	err := h.log.Replay(0, func(widx uint64, rec []byte) error {
		if len(rec) < 9 || rec[0] != recSnapshot {
			return nil
		}
		gid := binary.BigEndian.Uint64(rec[1:9])
		var sn pb.Snapshot
		if err := sn.Unmarshal(rec[9:]); err != nil {
			return fmt.Errorf("consensus: group %d snapshot: %w", gid, err)
		}
		if sn.Metadata.Index >= snaps[gid].Metadata.Index {
			snaps[gid], snapAt[gid] = sn, widx
		}
		return nil
	})
	if err != nil {
		return err
	}
	rg := func(gid uint64) *restoredGroup {
		r := h.restored[gid]
		if r == nil {
			r = &restoredGroup{ms: raft.NewMemoryStorage()}
			if sn, ok := snaps[gid]; ok {
				if err := r.ms.ApplySnapshot(sn); err != nil {
					return nil
				}
				r.pin = snapAt[gid]
			}
			h.restored[gid] = r
		}
		return r
	}
	for gid := range snaps {
		if rg(gid) == nil {
			return fmt.Errorf("consensus: group %d: bad snapshot", gid)
		}
	}
	err = h.log.Replay(0, func(widx uint64, rec []byte) error {
		if len(rec) < 9 {
			return fmt.Errorf("consensus: short log record")
		}
		if rec[0] != recReady {
			return nil
		}
		gid := binary.BigEndian.Uint64(rec[1:9])
		r := rg(gid)
		hs, ents, err := decodeReady(rec[9:])
		if err != nil {
			return fmt.Errorf("consensus: group %d: %w", gid, err)
		}
		snapIndex := snaps[gid].Metadata.Index
		if n := len(ents); n > 0 && ents[n-1].Index > snapIndex {
			last, _ := r.ms.LastIndex()
			first := ents[0].Index
			if first > last+1 && first > snapIndex+1 {
				return fmt.Errorf("consensus: group %d: log entries %d.. missing before %d", gid, last+1, first)
			}
			if err := r.ms.Append(ents); err != nil {
				return err
			}
			r.recs = append(r.recs, walRec{idx: widx, last: ents[n-1].Index})
			if r.pin == 0 || widx < r.pin {
				r.pin = widx
			}
		}
		if hs != nil {
			return r.ms.SetHardState(*hs)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// a snapshot covers only committed entries: the hard state's commit
	// is at least its index even if the record saying so was dropped
	for gid, sn := range snaps {
		r := h.restored[gid]
		hs, _, _ := r.ms.InitialState()
		if hs.Commit < sn.Metadata.Index {
			hs.Commit = sn.Metadata.Index
			hs.Term = max(hs.Term, sn.Metadata.Term)
			_ = r.ms.SetHardState(hs)
		}
	}
	return nil
}

type restoredGroup struct {
	ms   *raft.MemoryStorage
	recs []walRec
	pin  uint64
}

// walRec is a log record holding a group's entries up to last.
type walRec struct{ idx, last uint64 }

func decodeReady(b []byte) (*pb.HardState, []pb.Entry, error) {
	hsb, rest, err := chunk(b)
	if err != nil {
		return nil, nil, err
	}
	var ents []pb.Entry
	for len(rest) > 0 {
		var eb []byte
		if eb, rest, err = chunk(rest); err != nil {
			return nil, nil, err
		}
		var e pb.Entry
		if err := e.Unmarshal(eb); err != nil {
			return nil, nil, fmt.Errorf("entry: %w", err)
		}
		ents = append(ents, e)
	}
	if len(hsb) == 0 {
		return nil, ents, nil
	}
	var hs pb.HardState
	if err := hs.Unmarshal(hsb); err != nil {
		return nil, nil, err
	}
	return &hs, ents, nil
}

func chunk(b []byte) ([]byte, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, fmt.Errorf("consensus: truncated log record")
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// AddGroup starts (or, after a restart, resumes) group id with the given
// founding members; every founding member must be created with the same
// list.
func (h *Host) AddGroup(id uint64, members []uint64, sm StateMachine) error {
	if len(members) == 0 {
		return fmt.Errorf("consensus: group %d needs members", id)
	}
	return h.addGroup(id, members, sm)
}

// JoinGroup starts (or resumes) this host's replica of an existing group
// that a member adds it to with AddMember: it starts empty and learns the
// log, membership included, from the group's leader.
func (h *Host) JoinGroup(id uint64, sm StateMachine) error { return h.addGroup(id, nil, sm) }

func (h *Host) addGroup(id uint64, members []uint64, sm StateMachine) error {
	g, err := h.newGroup(id, members, sm)
	if err != nil {
		return err
	}
	select {
	case h.adds <- g:
		return nil
	case <-h.done:
		return ErrClosed
	}
}

// newGroup builds a group's Raft node from what the log holds for it, or
// fresh (bootstrapped with members, or empty to join).
func (h *Host) newGroup(id uint64, members []uint64, sm StateMachine) (*group, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	if _, ok := h.groups[id]; ok {
		h.mu.Unlock()
		return nil, fmt.Errorf("consensus: group %d exists", id)
	}
	r := h.restored[id]
	delete(h.restored, id)
	h.mu.Unlock()
	fresh := r == nil
	if fresh {
		r = &restoredGroup{ms: raft.NewMemoryStorage()}
	}
	ms := r.ms
	snap, _ := ms.Snapshot()
	if snap.Metadata.Index > 0 {
		rs, ok := sm.(Restorer)
		if !ok {
			return nil, fmt.Errorf("consensus: group %d starts from a snapshot but its state machine cannot restore one", id)
		}
		if err := rs.Restore(snap.Data); err != nil {
			return nil, fmt.Errorf("consensus: group %d: restoring its snapshot: %w", id, err)
		}
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID: h.opts.ID, ElectionTick: 10, HeartbeatTick: 1, Storage: ms,
		MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256, CheckQuorum: true, PreVote: true,
		Logger: &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)},
	})
	if err != nil {
		return nil, err
	}
	if fresh && len(members) > 0 {
		// the founding members write the same first entries: one
		// membership change per member (persisted by the first Ready)
		peers := make([]raft.Peer, len(members))
		for i, m := range members {
			peers[i] = raft.Peer{ID: m}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return nil, err
		}
	}
	g := &group{id: id, rn: rn, ms: ms, sm: sm, cs: snap.Metadata.ConfState, snapIndex: snap.Metadata.Index, pin: r.pin, recs: r.recs}
	g.applied.Store(snap.Metadata.Index)
	return g, nil
}

func record(kind byte, gid uint64, body []byte) []byte {
	b := make([]byte, 9, 9+len(body))
	b[0] = kind
	binary.BigEndian.PutUint64(b[1:], gid)
	return append(b, body...)
}

// Deliver hands envelopes received from another host to the loop.
func (h *Host) Deliver(envs []Envelope) {
	select {
	case h.inbox <- envs:
	case <-h.done:
	default: // overloaded: drop, Raft retries
	}
}

// Propose replicates cmd in group gid and returns the state machine's
// result once the command is committed (on a majority of the members'
// disks) and applied here. Proposals on a follower are forwarded to the
// leader; without a reachable leader they fail when ctx ends with
// ErrDropped, and then the outcome is unknown (the command may still be
// committed later): callers retry with commands that are safe to apply
// twice.
func (h *Host) Propose(ctx context.Context, gid uint64, cmd []byte) (any, error) {
	id := h.nextID.Add(1)
	data := make([]byte, 8+len(cmd))
	binary.BigEndian.PutUint64(data, id)
	copy(data[8:], cmd)
	return h.submit(ctx, proposal{group: gid, id: id, data: data, done: make(chan result, 1)})
}

// AddMember adds node to group gid (the node then runs JoinGroup) and
// returns once the change is applied here. Add one node at a time.
func (h *Host) AddMember(ctx context.Context, gid, node uint64) error {
	return h.changeMembers(ctx, gid, pb.ConfChangeAddNode, node)
}

// RemoveMember removes node from group gid.
func (h *Host) RemoveMember(ctx context.Context, gid, node uint64) error {
	return h.changeMembers(ctx, gid, pb.ConfChangeRemoveNode, node)
}

func (h *Host) changeMembers(ctx context.Context, gid uint64, t pb.ConfChangeType, node uint64) error {
	id := h.nextID.Add(1)
	c := make([]byte, 8)
	binary.BigEndian.PutUint64(c, id)
	_, err := h.submit(ctx, proposal{group: gid, id: id, cc: &pb.ConfChange{Type: t, NodeID: node, Context: c}, done: make(chan result, 1)})
	return err
}

func (h *Host) submit(ctx context.Context, p proposal) (any, error) {
	id := p.id
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	h.waiting[id] = &waiter{ch: p.done}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.waiting, id)
		h.mu.Unlock()
	}()
	select {
	case h.props <- p:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-h.done:
		return nil, ErrClosed
	}
	select {
	case r := <-p.done:
		return r.v, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrDropped, ctx.Err())
	case <-h.done:
		return nil, ErrClosed
	}
}

// ProposeAsync submits cmd to group gid without waiting. done runs on the
// host's loop (it must be quick and must not call the host) with the
// state machine's result once the command is applied here, or with
// ErrDropped when it is not within Options.ProposalTimeout (the outcome
// is then unknown, as with Propose). Commands proposed one after another
// on the group's leader are applied in that order.
func (h *Host) ProposeAsync(gid uint64, cmd []byte, done func(any, error)) {
	id := h.nextID.Add(1)
	data := make([]byte, 8+len(cmd))
	binary.BigEndian.PutUint64(data, id)
	copy(data[8:], cmd)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		done(nil, ErrClosed)
		return
	}
	h.waiting[id] = &waiter{fn: done}
	h.mu.Unlock()
	select {
	case h.props <- proposal{group: gid, id: id, data: data, async: true}:
	case <-h.done:
		h.resolve(id, result{err: ErrClosed})
	}
}

// Leader returns the group's current leader as this host knows it (0:
// none or unknown group).
func (h *Host) Leader(gid uint64) uint64 {
	return h.read(gid, func(g *group) uint64 { return g.lead.Load() })
}

// Applied returns the group's last applied index here.
func (h *Host) Applied(gid uint64) uint64 {
	return h.read(gid, func(g *group) uint64 { return g.applied.Load() })
}

func (h *Host) read(gid uint64, fn func(*group) uint64) uint64 {
	h.mu.Lock()
	g := h.groups[gid]
	h.mu.Unlock()
	if g == nil {
		return 0
	}
	return fn(g)
}

// LogSegments returns how many segment files the host's log has.
func (h *Host) LogSegments() int { return h.log.Segments() }

// Fsyncs counts the log syncs the host waited for (one per loop round
// with new entries, whatever the number of groups).
func (h *Host) Fsyncs() uint64 { return h.fsyncs.Load() }

// Close stops the loop and closes the log.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	close(h.stop)
	<-h.done
	return h.log.Close()
}

func (h *Host) loop() {
	defer close(h.done)
	t := time.NewTicker(h.opts.Tick)
	defer t.Stop()
	groups := map[uint64]*group{}
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			for _, g := range groups {
				g.rn.Tick()
			}
			h.expireAsync(now)
			// proposals made while no leader was known are retried
			retry := h.retry
			h.retry = nil
			for _, p := range retry {
				h.mu.Lock()
				_, waiting := h.waiting[p.id]
				h.mu.Unlock()
				if waiting {
					h.propose(groups, p)
				}
			}
		case g := <-h.adds:
			groups[g.id] = g
			h.mu.Lock()
			h.groups[g.id] = g
			h.mu.Unlock()
		case envs := <-h.inbox:
			h.step(groups, envs)
		case p := <-h.props:
			h.propose(groups, p)
		}
		// take whatever else is queued before paying for one fsync
	drain:
		for i := 0; i < 256; i++ {
			select {
			case envs := <-h.inbox:
				h.step(groups, envs)
			case p := <-h.props:
				h.propose(groups, p)
			default:
				break drain
			}
		}
		h.ready(groups)
	}
}

func (h *Host) step(groups map[uint64]*group, envs []Envelope) {
	for _, e := range envs {
		if g := groups[e.Group]; g != nil {
			_ = g.rn.Step(e.Msg)
		}
	}
}

func (h *Host) propose(groups map[uint64]*group, p proposal) {
	g := groups[p.group]
	var err error
	if p.async && !p.retried {
		p.retried = true // registered once, however often it is retried
		h.async = append(h.async, asyncWait{id: p.id, deadline: time.Now().Add(h.opts.ProposalTimeout)})
	}
	if g == nil {
		err = ErrUnknownGroup
	} else if err = g.propose(p); errors.Is(err, raft.ErrProposalDropped) {
		// not appended anywhere (no leader known yet): safe to try again
		h.retry = append(h.retry, p)
		return
	} else if err != nil {
		err = fmt.Errorf("%w: %w", ErrDropped, err)
	}
	if err != nil {
		if p.async {
			h.resolve(p.id, result{err: err})
		} else {
			p.done <- result{err: err}
		}
	}
}

// ready persists, sends and applies what every group has ready: all
// groups' entries go to the log first and share one fsync.
func (h *Host) ready(groups map[uint64]*group) {
	type rg struct {
		g  *group
		rd raft.Ready
	}
	var rds []rg
	var last uint64
	for _, g := range groups {
		if !g.rn.HasReady() {
			continue
		}
		rd := g.rn.Ready()
		rds = append(rds, rg{g, rd})
		if !raft.IsEmptySnap(rd.Snapshot) {
			sb, _ := rd.Snapshot.Marshal()
			idx, err := h.log.Append(record(recSnapshot, g.id, sb))
			if err != nil {
				h.lg.Error("consensus: log append failed; stopping the host's progress", "err", err)
				return
			}
			last = idx
			g.pin = idx
		}
		if len(rd.Entries) == 0 && raft.IsEmptyHardState(rd.HardState) {
			continue
		}
		var body []byte
		if !raft.IsEmptyHardState(rd.HardState) {
			hs, _ := rd.HardState.Marshal()
			body = binary.AppendUvarint(body, uint64(len(hs)))
			body = append(body, hs...)
		} else {
			body = binary.AppendUvarint(body, 0)
		}
		for _, e := range rd.Entries {
			eb, _ := e.Marshal()
			body = binary.AppendUvarint(body, uint64(len(eb)))
			body = append(body, eb...)
		}
		idx, err := h.log.Append(record(recReady, g.id, body))
		if err != nil {
			h.lg.Error("consensus: log append failed; stopping the host's progress", "err", err)
			return
		}
		last = idx
		if n := len(rd.Entries); n > 0 {
			g.recs = append(g.recs, walRec{idx: idx, last: rd.Entries[n-1].Index})
		}
		if g.pin == 0 {
			g.pin = idx
		}
	}
	if len(rds) == 0 {
		return
	}
	if last > 0 {
		if err := h.log.WaitDurable(last); err != nil {
			h.lg.Error("consensus: log sync failed", "err", err)
			return
		}
		h.fsyncs.Add(1)
	}
	out := map[uint64][]Envelope{}
	for _, r := range rds {
		if !raft.IsEmptySnap(r.rd.Snapshot) {
			_ = r.g.ms.ApplySnapshot(r.rd.Snapshot)
			r.g.cs = r.rd.Snapshot.Metadata.ConfState
			r.g.snapIndex = r.rd.Snapshot.Metadata.Index
			r.g.applied.Store(r.g.snapIndex)
			r.g.recs = nil // the snapshot supersedes every earlier record
			if rs, ok := r.g.sm.(Restorer); ok {
				if err := rs.Restore(r.rd.Snapshot.Data); err != nil {
					h.lg.Error("consensus: restoring a snapshot failed", "group", r.g.id, "err", err)
				}
			}
		}
		if !raft.IsEmptyHardState(r.rd.HardState) {
			_ = r.g.ms.SetHardState(r.rd.HardState)
		}
		if len(r.rd.Entries) > 0 {
			_ = r.g.ms.Append(r.rd.Entries)
		}
		for _, m := range r.rd.Messages {
			out[m.To] = append(out[m.To], Envelope{Group: r.g.id, Msg: m})
		}
		if r.rd.SoftState != nil {
			r.g.lead.Store(r.rd.SoftState.Lead)
		}
	}
	for to, envs := range out {
		h.opts.Transport.Send(to, envs)
	}
	snapped := false
	for _, r := range rds {
		h.apply(r.g, r.rd.CommittedEntries)
		if h.maybeSnapshot(r.g) {
			snapped = true
		}
		r.g.rn.Advance(r.rd)
	}
	if snapped {
		h.compactLog(groups)
	}
}

// maybeSnapshot saves a Snapshotter group's state once enough entries
// were applied since the last snapshot, or at once after a member was
// added (a new member must not be sent a snapshot from before it joined:
// Raft would refuse it). The log before the snapshot is then dropped
// from memory; compactLog drops it from disk.
func (h *Host) maybeSnapshot(g *group) bool {
	sn, ok := g.sm.(Snapshotter)
	applied := g.applied.Load()
	if !ok || applied <= g.snapIndex || (!g.forceSnap && applied-g.snapIndex < h.opts.SnapshotEvery) {
		return false
	}
	g.forceSnap = false
	data, err := sn.Snapshot()
	if err != nil {
		h.lg.Error("consensus: snapshot failed", "group", g.id, "err", err)
		return false
	}
	cs := g.cs
	snap, err := g.ms.CreateSnapshot(applied, &cs, data)
	if err != nil {
		h.lg.Error("consensus: snapshot failed", "group", g.id, "err", err)
		return false
	}
	sb, _ := snap.Marshal()
	idx, err := h.log.Append(record(recSnapshot, g.id, sb))
	if err == nil {
		err = h.log.WaitDurable(idx)
	}
	if err != nil {
		h.lg.Error("consensus: writing a snapshot failed", "group", g.id, "err", err)
		return false
	}
	_ = g.ms.Compact(applied)
	g.snapIndex, g.pin = applied, idx
	// records with entries past the snapshot are still needed, even those
	// written before it
	k := 0
	for _, r := range g.recs {
		if r.last > applied {
			g.recs[k] = r
			k++
			g.pin = min(g.pin, r.idx)
		}
	}
	g.recs = g.recs[:k]
	return true
}

// compactLog deletes the log segments no group needs any more.
func (h *Host) compactLog(groups map[uint64]*group) {
	upTo := h.log.LastIndex() + 1
	for _, g := range groups {
		if g.pin > 0 {
			upTo = min(upTo, g.pin)
		}
	}
	h.mu.Lock()
	for _, r := range h.restored { // groups found in the log but not started
		if r.pin > 0 {
			upTo = min(upTo, r.pin)
		}
	}
	h.mu.Unlock()
	if err := h.log.TruncateFront(upTo); err != nil {
		h.lg.Error("consensus: log clean-up failed", "err", err)
	}
}

func (g *group) propose(p proposal) error {
	if p.cc != nil {
		return g.rn.ProposeConfChange(*p.cc)
	}
	return g.rn.Propose(p.data)
}

// resolve hands a result to the local proposer of id, if any.
func (h *Host) resolve(id uint64, r result) {
	h.mu.Lock()
	w := h.waiting[id]
	if w != nil && w.fn != nil {
		delete(h.waiting, id)
	}
	h.mu.Unlock()
	switch {
	case w == nil:
	case w.fn != nil:
		w.fn(r.v, r.err)
	default:
		select {
		case w.ch <- r:
		default:
		}
	}
}

// expireAsync fails asynchronous proposals past their deadline.
func (h *Host) expireAsync(now time.Time) {
	for len(h.async) > 0 && now.After(h.async[0].deadline) {
		id := h.async[0].id
		h.async = h.async[1:]
		h.resolve(id, result{err: fmt.Errorf("%w: not applied within %v", ErrDropped, h.opts.ProposalTimeout)})
	}
	if len(h.async) == 0 {
		h.async = nil
	}
}

func (h *Host) apply(g *group, ents []pb.Entry) {
	for _, e := range ents {
		switch e.Type {
		case pb.EntryNormal:
			if len(e.Data) >= 8 {
				v := g.sm.Apply(e.Index, e.Data[8:])
				h.resolve(binary.BigEndian.Uint64(e.Data), result{v: v})
			}
		case pb.EntryConfChange:
			var cc pb.ConfChange
			if err := cc.Unmarshal(e.Data); err == nil {
				g.cs = *g.rn.ApplyConfChange(cc)
				g.forceSnap = cc.Type == pb.ConfChangeAddNode && g.snapIndex > 0
				if len(cc.Context) == 8 {
					h.resolve(binary.BigEndian.Uint64(cc.Context), result{})
				}
			}
		case pb.EntryConfChangeV2:
			var cc pb.ConfChangeV2
			if err := cc.Unmarshal(e.Data); err == nil {
				g.cs = *g.rn.ApplyConfChange(cc)
			}
		}
		g.applied.Store(e.Index)
	}
}
