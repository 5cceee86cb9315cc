// Package consensus runs many Raft groups on one node (go.etcd.io/raft/v3
// RawNode): one event loop drives every group, their log entries share one
// write-ahead log (internal/wal) so a single fsync covers every group's
// appends (group commit across groups), and their messages travel over
// one Transport per node. A group's state machine is the caller's: the
// cluster metadata, or one mirrored queue.
//
// Three goroutines share the work, so that neither a slow fsync nor a
// slow state machine stalls ticks, heartbeats and elections (raft's
// AsyncStorageWrites pipeline, etcd-io/raft README "Usage with
// asynchronous storage writes"):
//   - the loop owns every RawNode: ticks, inbound messages, proposals;
//     it appends each Ready's entries and hard state to the WAL (buffered)
//     and sends the messages raft allows before persistence;
//   - the persister waits for the fsync covering a batch of appends, then
//     updates the groups' in-memory Raft storage and delivers the
//     messages that had to wait for it (votes, append acks);
//   - each group's applier applies committed entries in log order, off
//     the loop, and hands results to proposers (a state machine may take
//     locks that a proposer holds: see docs/lock-order.md).
//
// Any storage error stops the host (fail-stop): it is logged with its
// cause, every waiting proposal fails, Options.OnFail runs and Failed is
// closed; the owner stops the node and clients move to the others.
//
// Idle groups go quiet (CockroachDB's quiescence, docs/adr/0007): a leader
// whose group has nothing in flight tells its followers so, and none of
// them ticks the group until a message or proposal wakes it; one
// node-level heartbeat per pair of hosts keeps watch for a leader's node
// dying (its quiet groups then wake and elect).
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

// StateMachine is what a group replicates. Apply runs on the group's
// applier goroutine (never the host's loop), in log order, on every
// member; its result goes back to the proposer.
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
// before the snapshot. Snapshot runs on the group's applier between
// Applies.
type Snapshotter interface {
	Restorer
	Snapshot() ([]byte, error)
}

// Envelope is one Raft message of one group. Group 0 is the node-level
// heartbeat between two hosts. Quiesce marks the heartbeat with which a
// leader puts its followers' replicas of an idle group to sleep.
type Envelope struct {
	Group   uint64
	Msg     pb.Message
	Quiesce bool
}

// Transport carries envelopes to other hosts. Send must not block for
// long; Raft tolerates lost messages. A transport that drops an envelope
// (queue full, no connection, too large) tells the sending host, with
// Host.ReportUnreachable and, for a snapshot (MsgSnap), Host.ReportSnapshot,
// so that Raft sends again; a delivered snapshot is reported too.
type Transport interface {
	Send(to uint64, envs []Envelope)
}

// Options configure a host.
type Options struct {
	ID        uint64 // this node's id in every group, not 0
	Dir       string // where the host's log lives
	Transport Transport
	// Tick is the Raft tick (default 100 ms). A leader heartbeats every
	// HeartbeatTicks (default 1) and followers call an election after
	// ElectionTicks (default 10, randomised up to twice that) without one.
	// The defaults come from the fsync latency measured on the test
	// machine (bench/fsync: p99 32 ms, p99.9 101 ms, max 139 ms under
	// load): an election timeout of 1-2 s stays well above a slow fsync
	// plus a network round trip, and fsyncs run on the persister, not the
	// loop, so they do not hold ticks back anyway.
	Tick           time.Duration
	HeartbeatTicks int
	ElectionTicks  int
	// NoQuiesce keeps every group ticking and heartbeating while idle (to
	// measure the cost quiescence saves).
	NoQuiesce bool
	NoSync    bool   // tests only
	FS        wal.FS // the log's file system (nil: the OS; tests inject faults)
	// OnFail runs once, on its own goroutine, when a storage error stopped
	// the host; the owner then stops the node.
	OnFail func(error)
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
	// ErrStopped wraps the storage error that stopped the host.
	ErrStopped = errors.New("consensus: host stopped after a storage failure; restart the node once its disk is fixed")
)

type group struct {
	id        uint64
	rn        *raft.RawNode
	ms        *raft.MemoryStorage // safe for concurrent use
	sm        StateMachine
	lead      atomic.Uint64
	applied   atomic.Uint64 // by the applier
	snapIndex atomic.Uint64 // Raft index of the last snapshot taken or installed

	// owned by the loop
	cs        pb.ConfState // membership as of the last entry handed to the applier
	pin       uint64       // first WAL index this group still needs (0: none yet)
	recs      []walRec     // records holding entries past the last snapshot
	quiesced  bool         // asleep: not ticked (see quiesce.go)
	appending int          // MsgStorageAppend handed to the persister, not answered
	applying  int          // MsgStorageApply handed to the applier, not answered
	idle      int          // ticks the leader saw it quiescable

	// the applier's queue (see apply.go)
	apMu      sync.Mutex
	apQ       []applyTask
	apRunning bool
	dd        dedup // proposal ids applied lately (the applier's; see retry.go)
}

type proposal struct {
	group   uint64
	id      uint64
	data    []byte
	cc      *pb.ConfChange // a membership change instead of data
	async   bool
	retried bool
}

type result struct {
	v   any
	err error
}

// waiter is a local proposer: a blocked Propose (ch) or a callback.
type waiter struct {
	ch   chan result
	fn   func(any, error)
	done bool // answered (under Host.mu): not retried any more
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
	closed   bool
	err      error // the storage error that stopped the host

	inbox    chan []Envelope
	props    chan proposal
	adds     chan *group
	persistq chan *persistBatch // loop → persister, in WAL order
	local    mailbox            // persister, appliers, transport → loop
	stop     chan struct{}
	done     chan struct{} // the loop ended
	failed   chan struct{} // closed by fail
	failOnce sync.Once
	wg       sync.WaitGroup // persister and appliers
	nextID   atomic.Uint64
	fsyncs   atomic.Uint64
	sent     atomic.Uint64 // envelopes handed to the transport
	ticked   atomic.Uint64 // group ticks
	awake    atomic.Int64  // groups not quiet
	wakes    atomic.Uint64 // quiet groups woken
	retried  atomic.Uint64 // proposals proposed again (retry.go)
	dups     atomic.Uint64 // duplicate entries skipped (retry.go)

	// owned by the loop
	async   []asyncWait // ProposeAsync deadlines, oldest first
	retry   []proposal
	pending map[uint64]*pendingProp // handed to raft, not answered (retry.go)
	all     map[uint64]*group
	active  map[uint64]*group // not quiesced: ticked
	dirty   map[uint64]*group // may have a Ready
	nodes   map[uint64]*nodeState
	ticks   uint64
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
	if o.ID >= 1<<16 {
		return nil, fmt.Errorf("consensus: node id %d too large (at most %d)", o.ID, 1<<16-1)
	}
	if o.Tick <= 0 {
		o.Tick = 100 * time.Millisecond
	}
	if o.HeartbeatTicks <= 0 {
		o.HeartbeatTicks = 1
	}
	if o.ElectionTicks <= 0 {
		o.ElectionTicks = 10
	}
	if o.ElectionTicks <= o.HeartbeatTicks {
		return nil, fmt.Errorf("consensus: ElectionTicks (%d) must exceed HeartbeatTicks (%d)", o.ElectionTicks, o.HeartbeatTicks)
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
	l, err := wal.Open(wal.Options{Dir: o.Dir, FS: o.FS, NoSync: o.NoSync, Logger: o.Logger, SegmentSize: o.SegmentSize})
	if err != nil {
		return nil, err
	}
	h := &Host{
		opts: o, lg: o.Logger, log: l,
		groups: map[uint64]*group{}, restored: map[uint64]*restoredGroup{}, waiting: map[uint64]*waiter{},
		inbox: make(chan []Envelope, 1024), props: make(chan proposal, 1024), adds: make(chan *group),
		persistq: make(chan *persistBatch, 4096), local: newMailbox(),
		stop: make(chan struct{}), done: make(chan struct{}), failed: make(chan struct{}),
		all: map[uint64]*group{}, active: map[uint64]*group{}, dirty: map[uint64]*group{}, nodes: map[uint64]*nodeState{},
	}
	var maxSeen uint64
	if err := h.replay(&maxSeen); err != nil {
		l.Close()
		return nil, err
	}
	h.nextID.Store(firstID(o.ID, time.Now(), maxSeen))
	return h, nil
}

// replay rebuilds every group's storage from the log in two passes: the
// latest snapshot of each group first, then the entries and hard states
// written after it (some entries past a snapshot may sit in records
// written just before it).
func (h *Host) replay(maxSeen *uint64) error {
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
			for _, e := range ents {
				if id, ok := proposalID(e); ok && id>>48 == h.opts.ID {
					*maxSeen = max(*maxSeen, id)
				}
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
	if id == 0 {
		return errors.New("consensus: group id 0 is reserved (node heartbeats)")
	}
	g, err := h.newGroup(id, members, sm)
	if err != nil {
		return err
	}
	select {
	case h.adds <- g:
		return nil
	case <-h.done:
		return h.closedErr()
	}
}

// newGroup builds a group's Raft node from what the log holds for it, or
// fresh (bootstrapped with members, or empty to join).
func (h *Host) newGroup(id uint64, members []uint64, sm StateMachine) (*group, error) {
	h.mu.Lock()
	if h.closed || h.err != nil {
		h.mu.Unlock()
		return nil, h.closedErr()
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
	g := &group{id: id, ms: ms, sm: sm, cs: snap.Metadata.ConfState, pin: r.pin, recs: r.recs}
	if snap.Metadata.Index > 0 {
		if _, ok := sm.(Restorer); !ok {
			return nil, fmt.Errorf("consensus: group %d starts from a snapshot but its state machine cannot restore one", id)
		}
		if err := restoreSnapshot(g, snap.Data); err != nil {
			return nil, fmt.Errorf("consensus: group %d: restoring its snapshot: %w", id, err)
		}
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID: h.opts.ID, ElectionTick: h.opts.ElectionTicks, HeartbeatTick: h.opts.HeartbeatTicks, Storage: ms,
		Applied:       snap.Metadata.Index,
		MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256, CheckQuorum: true, PreVote: true,
		AsyncStorageWrites: true,
		// a leader removed from its group (warrenctl reset on it) steps
		// down, so the others elect one of them and commit its removal
		StepDownOnRemoval: true,
		Logger:            &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)},
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
	g.rn = rn
	g.applied.Store(snap.Metadata.Index)
	g.snapIndex.Store(snap.Metadata.Index)
	return g, nil
}

func record(kind byte, gid uint64, body []byte) []byte {
	b := make([]byte, 9, 9+len(body))
	b[0] = kind
	binary.BigEndian.PutUint64(b[1:], gid)
	return append(b, body...)
}

// Deliver hands envelopes received from another host to the loop; it
// reports whether they were taken (false: the host is overloaded or
// stopped and dropped them, which Raft tolerates).
func (h *Host) Deliver(envs []Envelope) bool {
	select {
	case h.inbox <- envs:
		return true
	case <-h.done:
		return false
	default: // overloaded: drop, Raft retries
		return false
	}
}

// DeliverWait is Deliver for what must not be dropped lightly (a
// snapshot): it waits up to d for room in the inbox.
func (h *Host) DeliverWait(envs []Envelope, d time.Duration) bool {
	if h.Deliver(envs) {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case h.inbox <- envs:
		return true
	case <-h.done:
		return false
	case <-t.C:
		return false
	}
}

// Propose replicates cmd in group gid and returns the state machine's
// result once the command is committed (on a majority of the members'
// disks) and applied here. Proposals on a follower are forwarded to the
// leader. Until ctx ends the host proposes the command again, under the
// same id, whenever the leader changes and every two election timeouts,
// and applies it once however many copies commit (retry.go). Without a
// reachable leader it fails when ctx ends with ErrDropped, and then the
// outcome is unknown (the command may still be committed later): callers
// that retry make a new proposal, so they retry with commands that are
// safe to apply twice.
func (h *Host) Propose(ctx context.Context, gid uint64, cmd []byte) (any, error) {
	id := h.nextID.Add(1)
	data := make([]byte, 8+len(cmd))
	binary.BigEndian.PutUint64(data, id)
	copy(data[8:], cmd)
	return h.submit(ctx, proposal{group: gid, id: id, data: data})
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
	_, err := h.submit(ctx, proposal{group: gid, id: id, cc: &pb.ConfChange{Type: t, NodeID: node, Context: c}})
	return err
}

func (h *Host) submit(ctx context.Context, p proposal) (any, error) {
	id := p.id
	ch := make(chan result, 1)
	h.mu.Lock()
	if h.closed || h.err != nil {
		h.mu.Unlock()
		return nil, h.closedErr()
	}
	h.waiting[id] = &waiter{ch: ch}
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
		return nil, h.closedErr()
	}
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrDropped, ctx.Err())
	case <-h.done:
		return nil, h.closedErr()
	}
}

// ProposeAsync submits cmd to group gid without waiting. done runs on a
// goroutine of the host (the group's applier; the loop for a proposal
// that failed before reaching the log): it must be quick and must not
// call the host. It gets the state machine's result once the command is
// applied here, or ErrDropped when it is not within
// Options.ProposalTimeout (the outcome is then unknown, as with Propose),
// or the error that stopped the host. Commands proposed one after another
// on the group's leader are applied in that order while it stays leader
// (a retry after a leader change can land after later commands).
func (h *Host) ProposeAsync(gid uint64, cmd []byte, done func(any, error)) {
	id := h.nextID.Add(1)
	data := make([]byte, 8+len(cmd))
	binary.BigEndian.PutUint64(data, id)
	copy(data[8:], cmd)
	h.mu.Lock()
	if h.closed || h.err != nil {
		h.mu.Unlock()
		done(nil, h.closedErr())
		return
	}
	h.waiting[id] = &waiter{fn: done}
	h.mu.Unlock()
	select {
	case h.props <- proposal{group: gid, id: id, data: data, async: true}:
	case <-h.done:
		h.resolve(id, result{err: h.closedErr()})
	}
}

// closedErr is why the host takes no more work.
func (h *Host) closedErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return fmt.Errorf("%w: %w", ErrStopped, h.err)
	}
	return ErrClosed
}

// Err returns the storage error that stopped the host, or nil.
func (h *Host) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Failed is closed when a storage error stopped the host.
func (h *Host) Failed() <-chan struct{} { return h.failed }

// fail stops the host after a storage error (fail-stop): the loop ends,
// every waiting proposal fails with the cause, and the owner is told.
func (h *Host) fail(err error) {
	h.failOnce.Do(func() {
		h.lg.Error("consensus: storage failure; the host stops (fail-stop). Check the disk and free space under the data directory, then restart the node; clients reconnect to the other nodes", "dir", h.opts.Dir, "err", err)
		h.mu.Lock()
		h.err = err
		waiting := h.waiting
		h.waiting = map[uint64]*waiter{}
		h.mu.Unlock()
		close(h.failed)
		r := result{err: fmt.Errorf("%w: %w", ErrStopped, err)}
		for _, w := range waiting {
			w.deliver(r)
		}
		if h.opts.OnFail != nil {
			go h.opts.OnFail(err)
		}
	})
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

// Fsyncs counts the log syncs the host waited for (one per persisted
// batch, whatever the number of groups in it).
func (h *Host) Fsyncs() uint64 { return h.fsyncs.Load() }

// Stats are counters for measuring the host's cost.
type Stats struct {
	Sent   uint64 // envelopes handed to the transport (node heartbeats included)
	Ticks  uint64 // group ticks (quiet groups are not ticked)
	Fsyncs uint64
	Awake  int64  // groups ticking (not quiet)
	Wakes  uint64 // times a quiet group woke up
}

// Stats returns the host's counters.
func (h *Host) Stats() Stats {
	return Stats{Sent: h.sent.Load(), Ticks: h.ticked.Load(), Fsyncs: h.fsyncs.Load(), Awake: h.awake.Load(), Wakes: h.wakes.Load()}
}

// Close stops the loop, the persister and the appliers, and closes the
// log.
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
	close(h.persistq)
	h.wg.Wait()
	// proposers still waiting learn that the outcome is unknown
	h.mu.Lock()
	waiting := h.waiting
	h.waiting = map[uint64]*waiter{}
	h.mu.Unlock()
	for _, w := range waiting {
		w.deliver(result{err: ErrClosed})
	}
	return h.log.Close()
}
