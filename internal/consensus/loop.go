package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// persistBatch is what one loop round appended to the WAL: the persister
// waits for the fsync covering last, then installs each item in its
// group's Raft storage and delivers the item's responses.
type persistBatch struct {
	last  uint64 // highest WAL index in the batch (0: nothing written)
	items []persistItem
}

type persistItem struct {
	g    *group
	hs   pb.HardState
	ents []pb.Entry
	snap *pb.Snapshot
	resp []pb.Message // raft's MsgStorageAppend responses
}

// localEvent is something for the loop from another goroutine.
type localEvent struct {
	g        *group
	msgs     []pb.Message // to step into g (storage responses)
	appended bool         // msgs answer a MsgStorageAppend
	applied  bool         // msgs answer a MsgStorageApply
	snapshot *snapTaken   // the applier saved a snapshot of g
	// a transport report
	report     bool
	to         uint64
	groups     []uint64 // unreachable in these groups
	snapGroup  uint64
	snapFailed bool
	isSnap     bool
}

type snapTaken struct{ index, widx uint64 }

// mailbox is an unbounded queue into the loop: whoever posts never waits
// for the loop, so the loop may wait for nobody and nobody for it.
type mailbox struct {
	mu     sync.Mutex
	evs    []localEvent
	notify chan struct{}
}

func newMailbox() mailbox { return mailbox{notify: make(chan struct{}, 1)} }

func (m *mailbox) post(e localEvent) {
	m.mu.Lock()
	m.evs = append(m.evs, e)
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

func (m *mailbox) take() []localEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	evs := m.evs
	m.evs = nil
	return evs
}

// ReportUnreachable tells the host that envelopes of groups to node to
// were not sent (Raft then probes the node instead of streaming to it).
func (h *Host) ReportUnreachable(to uint64, groups ...uint64) {
	h.local.post(localEvent{report: true, to: to, groups: groups})
}

// ReportSnapshot tells the host whether the snapshot it sent to node to
// for group gid was delivered; Raft sends another after a failure.
func (h *Host) ReportSnapshot(to, gid uint64, delivered bool) {
	h.local.post(localEvent{report: true, to: to, isSnap: true, snapGroup: gid, snapFailed: !delivered})
}

// send hands envelopes to the transport.
func (h *Host) send(to uint64, envs []Envelope) {
	h.sent.Add(uint64(len(envs)))
	h.opts.Transport.Send(to, envs)
}

func (h *Host) loop() {
	defer close(h.done)
	h.wg.Add(1)
	go h.persister()
	t := time.NewTicker(h.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-h.failed:
			return
		case now := <-t.C:
			h.tick(now)
		case g := <-h.adds:
			h.addLoop(g)
		case envs := <-h.inbox:
			h.step(envs)
		case p := <-h.props:
			h.propose(p)
		case <-h.local.notify:
			h.runLocal()
		}
		// take whatever else is queued before appending
	drain:
		for i := 0; i < 256; i++ {
			select {
			case envs := <-h.inbox:
				h.step(envs)
			case p := <-h.props:
				h.propose(p)
			default:
				break drain
			}
		}
		if err := h.ready(); err != nil {
			h.fail(err)
			return
		}
	}
}

func (h *Host) addLoop(g *group) {
	h.all[g.id] = g
	h.active[g.id] = g
	h.dirty[g.id] = g
	h.mu.Lock()
	h.groups[g.id] = g
	h.mu.Unlock()
	h.learnNodes(g.cs)
}

func (h *Host) tick(now time.Time) {
	h.ticks++
	h.awake.Store(int64(len(h.active)))
	for _, g := range h.active {
		// quiesce before ticking: a tick queues heartbeats
		if !h.opts.NoQuiesce {
			if h.maybeQuiesce(g); g.quiesced {
				continue
			}
		}
		g.rn.Tick()
		h.dirty[g.id] = g
		h.ticked.Add(1)
	}
	h.watchNodes(now)
	h.expireAsync(now)
	// proposals made while no leader was known are retried
	retry := h.retry
	h.retry = nil
	for _, p := range retry {
		h.mu.Lock()
		_, waiting := h.waiting[p.id]
		h.mu.Unlock()
		if waiting {
			h.propose(p)
		}
	}
	if h.ticks%uint64(h.opts.ElectionTicks) == 0 {
		h.retryPending(nil, true) // also forgets answered proposals
	}
}

func (h *Host) step(envs []Envelope) {
	now := time.Now()
	for _, e := range envs {
		if e.Msg.From != 0 {
			h.heardFrom(e.Msg.From, now)
		}
		if e.Group == 0 {
			continue // a node heartbeat: heardFrom was the point
		}
		g := h.all[e.Group]
		if g == nil {
			continue
		}
		if g.quiesced && !e.Quiesce && !(e.Msg.Type == pb.MsgHeartbeatResp) {
			h.wake(g)
		}
		_ = g.rn.Step(e.Msg)
		h.dirty[g.id] = g
		if e.Quiesce {
			h.followerQuiesce(g, e.Msg)
		} else if g.quiesced {
			// a heartbeat response left it asleep: stay so only while
			// it still leads (a higher term would have deposed it)
			if st := g.rn.BasicStatus(); st.RaftState != raft.StateLeader {
				h.wake(g)
			}
		}
	}
}

func (h *Host) propose(p proposal) {
	g := h.all[p.group]
	var err error
	if p.async && !p.retried {
		p.retried = true // registered once, however often it is retried
		h.async = append(h.async, asyncWait{id: p.id, deadline: time.Now().Add(h.opts.ProposalTimeout)})
	}
	if g == nil {
		err = ErrUnknownGroup
	} else {
		if g.quiesced {
			h.wake(g)
		}
		h.dirty[g.id] = g
		if err = g.propose(p); errors.Is(err, raft.ErrProposalDropped) {
			// not appended anywhere (no leader known yet): safe to try again
			h.retry = append(h.retry, p)
			return
		} else if err == nil {
			h.track(g, p) // proposed again if the leader changes (retry.go)
			return
		} else {
			err = fmt.Errorf("%w: %w", ErrDropped, err)
		}
	}
	if err != nil {
		h.resolve(p.id, result{err: err})
	}
}

func (g *group) propose(p proposal) error {
	if p.cc != nil {
		return g.rn.ProposeConfChange(*p.cc)
	}
	return g.rn.Propose(p.data)
}

// runLocal steps storage responses and transport reports into the groups.
func (h *Host) runLocal() {
	for _, e := range h.local.take() {
		switch {
		case e.report:
			if e.isSnap {
				if g := h.all[e.snapGroup]; g != nil {
					st := raft.SnapshotFinish
					if e.snapFailed {
						st = raft.SnapshotFailure
					}
					g.rn.ReportSnapshot(e.to, st)
					h.wakeDirty(g)
				}
				continue
			}
			for _, gid := range e.groups {
				if g := h.all[gid]; g != nil {
					g.rn.ReportUnreachable(e.to)
					h.wakeDirty(g)
				}
			}
		case e.snapshot != nil:
			h.snapshotted(e.g, e.snapshot)
		default:
			if e.appended {
				e.g.appending--
			}
			if e.applied {
				e.g.applying--
			}
			for _, m := range e.msgs {
				_ = e.g.rn.Step(m)
			}
			h.dirty[e.g.id] = e.g
		}
	}
}

func (h *Host) wakeDirty(g *group) {
	if g.quiesced {
		h.wake(g)
	}
	h.dirty[g.id] = g
}

// ready takes every dirty group's Ready: entries, hard state and
// snapshots are appended to the WAL (one batch for all groups, synced
// once by the persister), committed entries go to the groups' appliers,
// and messages raft allows before persistence are sent now. A WAL error
// is returned: the host must stop.
func (h *Host) ready() error {
	changed, err := h.readyOnce()
	if err != nil || len(changed) == 0 {
		return err
	}
	// proposals waiting on a group whose leader changed go to the new one
	h.retryPending(changed, false)
	_, err = h.readyOnce()
	return err
}

func (h *Host) readyOnce() (leaderChanged map[uint64]bool, err error) {
	if len(h.dirty) == 0 {
		return nil, nil
	}
	var batch persistBatch
	out := map[uint64][]Envelope{}
	for id, g := range h.dirty {
		delete(h.dirty, id)
		if !g.rn.HasReady() {
			continue
		}
		rd := g.rn.Ready()
		if rd.SoftState != nil {
			if old := g.lead.Swap(rd.SoftState.Lead); old != rd.SoftState.Lead && rd.SoftState.Lead != 0 {
				if leaderChanged == nil {
					leaderChanged = map[uint64]bool{}
				}
				leaderChanged[g.id] = true
			}
		}
		for _, m := range rd.Messages {
			switch m.To {
			case raft.LocalAppendThread:
				it, err := h.appendWAL(g, m, &batch.last)
				if err != nil {
					return nil, err
				}
				batch.items = append(batch.items, it)
				g.appending++
			case raft.LocalApplyThread:
				h.toApplier(g, m)
			default:
				out[m.To] = append(out[m.To], Envelope{Group: g.id, Msg: m})
			}
		}
	}
	if len(batch.items) > 0 {
		h.persistq <- &batch
	}
	for to, envs := range out {
		h.send(to, envs)
	}
	return leaderChanged, nil
}

// appendWAL writes one MsgStorageAppend's snapshot, hard state and
// entries to the log (buffered; the persister waits for the fsync).
func (h *Host) appendWAL(g *group, m pb.Message, last *uint64) (persistItem, error) {
	it := persistItem{g: g, ents: m.Entries, snap: m.Snapshot, resp: m.Responses}
	if m.Term != 0 || m.Vote != 0 || m.Commit != 0 {
		it.hs = pb.HardState{Term: m.Term, Vote: m.Vote, Commit: m.Commit}
	}
	if m.Snapshot != nil {
		sb, err := m.Snapshot.Marshal()
		if err != nil {
			return it, fmt.Errorf("consensus: group %d: encoding a snapshot: %w", g.id, err)
		}
		idx, err := h.log.Append(record(recSnapshot, g.id, sb))
		if err != nil {
			return it, fmt.Errorf("consensus: group %d: writing a snapshot to the log: %w", g.id, err)
		}
		*last = idx
		g.pin = idx
		g.recs = nil // the snapshot supersedes every earlier record
	}
	if len(m.Entries) == 0 && raft.IsEmptyHardState(it.hs) {
		return it, nil
	}
	var body []byte
	if !raft.IsEmptyHardState(it.hs) {
		hs, _ := it.hs.Marshal()
		body = binary.AppendUvarint(body, uint64(len(hs)))
		body = append(body, hs...)
	} else {
		body = binary.AppendUvarint(body, 0)
	}
	for _, e := range m.Entries {
		eb, err := e.Marshal()
		if err != nil {
			return it, fmt.Errorf("consensus: group %d: encoding entry %d: %w", g.id, e.Index, err)
		}
		body = binary.AppendUvarint(body, uint64(len(eb)))
		body = append(body, eb...)
	}
	idx, err := h.log.Append(record(recReady, g.id, body))
	if err != nil {
		return it, fmt.Errorf("consensus: group %d: writing entries to the log: %w", g.id, err)
	}
	*last = idx
	if n := len(m.Entries); n > 0 {
		g.recs = append(g.recs, walRec{idx: idx, last: m.Entries[n-1].Index})
	}
	if g.pin == 0 {
		g.pin = idx
	}
	return it, nil
}

// persister waits for each batch's fsync, then installs it in the groups'
// Raft storage and delivers the responses raft attached (to this node:
// through the loop's mailbox; to others: sent). Any error stops the host.
func (h *Host) persister() {
	defer h.wg.Done()
	for b := range h.persistq {
		if h.Err() != nil {
			continue // stopped: drain without acting
		}
		if b.last > 0 {
			if err := h.log.WaitDurable(b.last); err != nil {
				h.fail(fmt.Errorf("consensus: waiting for the log's fsync: %w", err))
				continue
			}
			h.fsyncs.Add(1)
		}
		out := map[uint64][]Envelope{}
		for _, it := range b.items {
			if err := h.install(it); err != nil {
				h.fail(err)
				break
			}
			var self []pb.Message
			for _, m := range it.resp {
				if m.To == h.opts.ID {
					self = append(self, m)
				} else {
					out[m.To] = append(out[m.To], Envelope{Group: it.g.id, Msg: m})
				}
			}
			h.local.post(localEvent{g: it.g, msgs: self, appended: true})
		}
		if h.Err() != nil {
			continue
		}
		for to, envs := range out {
			h.send(to, envs)
		}
	}
}

// install puts a persisted item into the group's in-memory Raft storage.
func (h *Host) install(it persistItem) error {
	g := it.g
	if it.snap != nil {
		if err := g.ms.ApplySnapshot(*it.snap); err != nil {
			return fmt.Errorf("consensus: group %d: installing snapshot %d: %w", g.id, it.snap.Metadata.Index, err)
		}
		// the state machine takes the snapshot in order with the
		// entries it applies
		h.enqueueApply(g, applyTask{restore: it.snap})
	}
	if len(it.ents) > 0 {
		if err := g.ms.Append(it.ents); err != nil {
			return fmt.Errorf("consensus: group %d: storing entries %d..%d: %w", g.id, it.ents[0].Index, it.ents[len(it.ents)-1].Index, err)
		}
	}
	if !raft.IsEmptyHardState(it.hs) {
		if err := g.ms.SetHardState(it.hs); err != nil {
			return fmt.Errorf("consensus: group %d: storing hard state: %w", g.id, err)
		}
	}
	return nil
}

// snapshotted records that the applier saved a snapshot of g at index,
// in WAL record widx: records before it that hold no later entries are
// no longer needed, and the log is compacted.
func (h *Host) snapshotted(g *group, s *snapTaken) {
	g.pin = s.widx
	k := 0
	for _, r := range g.recs {
		if r.last > s.index {
			g.recs[k] = r
			k++
			g.pin = min(g.pin, r.idx)
		}
	}
	g.recs = g.recs[:k]
	h.compactLog()
}

// compactLog deletes the log segments no group needs any more.
func (h *Host) compactLog() {
	upTo := h.log.LastIndex() + 1
	for _, g := range h.all {
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
		// deleting old segments failed: nothing acknowledged is at risk,
		// the log only stays longer
		h.lg.Error("consensus: log clean-up failed; old segments stay on disk", "err", err)
	}
}

// resolve hands a result to the local proposer of id, if any.
func (h *Host) resolve(id uint64, r result) {
	h.mu.Lock()
	w := h.waiting[id]
	if w != nil && w.done {
		w = nil // answered already (a duplicate cannot reach here; a late failure can)
	}
	if w != nil {
		w.done = true
		if w.fn != nil {
			delete(h.waiting, id)
		}
	}
	h.mu.Unlock()
	if w != nil {
		w.deliver(r)
	}
}

func (w *waiter) deliver(r result) {
	if w.fn != nil {
		w.fn(r.v, r.err)
		return
	}
	select {
	case w.ch <- r:
	default:
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
