package consensus

import (
	"encoding/binary"

	pb "go.etcd.io/raft/v3/raftpb"
)

// applyTask is work for a group's applier, in log order: a snapshot to
// restore, or committed entries to apply (then resp goes back to raft).
type applyTask struct {
	restore   *pb.Snapshot
	ents      []pb.Entry
	cs        pb.ConfState // membership after ents
	forceSnap bool         // snapshot after ents (a member was added)
	resp      []pb.Message
}

// toApplier hands a MsgStorageApply to the group's applier. Membership
// changes take effect in the RawNode here, on the loop (the only
// goroutine that touches it), as soon as they are committed; the
// applier applies the rest and resolves their proposers.
func (h *Host) toApplier(g *group, m pb.Message) {
	force := false
	for _, e := range m.Entries {
		var cs *pb.ConfState
		switch e.Type {
		case pb.EntryConfChange:
			var cc pb.ConfChange
			if err := cc.Unmarshal(e.Data); err == nil {
				cs = g.rn.ApplyConfChange(cc)
				force = force || (cc.Type == pb.ConfChangeAddNode && g.snapIndex.Load() > 0)
			}
		case pb.EntryConfChangeV2:
			var cc pb.ConfChangeV2
			if err := cc.Unmarshal(e.Data); err == nil {
				cs = g.rn.ApplyConfChange(cc)
			}
		}
		if cs != nil {
			g.cs = *cs
			h.learnNodes(g.cs)
		}
	}
	g.applying++
	h.enqueueApply(g, applyTask{ents: m.Entries, cs: g.cs, forceSnap: force, resp: m.Responses})
}

// enqueueApply queues a task; the group's applier goroutine runs while
// there is work and ends when there is none.
func (h *Host) enqueueApply(g *group, t applyTask) {
	g.apMu.Lock()
	g.apQ = append(g.apQ, t)
	start := !g.apRunning
	g.apRunning = true
	g.apMu.Unlock()
	if start {
		h.wg.Add(1)
		go h.applier(g)
	}
}

func (h *Host) applier(g *group) {
	defer h.wg.Done()
	for {
		g.apMu.Lock()
		tasks := g.apQ
		g.apQ = nil
		if len(tasks) == 0 || h.Err() != nil {
			g.apRunning = false
			g.apMu.Unlock()
			return
		}
		g.apMu.Unlock()
		for _, t := range tasks {
			if h.Err() != nil {
				break
			}
			h.runTask(g, t)
		}
	}
}

func (h *Host) runTask(g *group, t applyTask) {
	if t.restore != nil {
		if _, ok := g.sm.(Restorer); ok {
			if err := restoreSnapshot(g, t.restore.Data); err != nil {
				h.fail(errorf("consensus: group %d: restoring snapshot %d: %w", g.id, t.restore.Metadata.Index, err))
				return
			}
		}
		g.applied.Store(t.restore.Metadata.Index)
		g.snapIndex.Store(max(g.snapIndex.Load(), t.restore.Metadata.Index))
		return
	}
	for _, e := range t.ents {
		if e.Index <= g.applied.Load() {
			continue // covered by a snapshot restored meanwhile
		}
		switch e.Type {
		case pb.EntryNormal:
			if len(e.Data) >= 8 {
				// a retried proposal committed twice is applied once
				// (retry.go); its proposer was answered by the first
				if id := binary.BigEndian.Uint64(e.Data); !g.dd.has(id) {
					g.dd.add(id)
					v := g.sm.Apply(e.Index, e.Data[8:])
					h.resolve(id, result{v: v})
				} else {
					h.dups.Add(1)
				}
			}
		case pb.EntryConfChange:
			if id, ok := proposalID(e); ok {
				h.resolve(id, result{})
			}
		}
		g.applied.Store(e.Index)
	}
	h.maybeSnapshot(g, t.cs, t.forceSnap)
	h.local.post(localEvent{g: g, msgs: t.resp, applied: true})
}

// maybeSnapshot saves a Snapshotter group's state once enough entries
// were applied since the last snapshot, or at once after a member was
// added (a new member must not be sent a snapshot from before it joined:
// Raft would refuse it). The snapshot is durable in the WAL before the
// in-memory log is compacted; the loop then drops old WAL segments.
func (h *Host) maybeSnapshot(g *group, cs pb.ConfState, force bool) {
	sn, ok := g.sm.(Snapshotter)
	applied, last := g.applied.Load(), g.snapIndex.Load()
	if !ok || applied <= last || (!force && applied-last < h.opts.SnapshotEvery) {
		return
	}
	data, err := sn.Snapshot()
	if err != nil {
		// the state machine could not encode itself: no data at risk,
		// the log only stays longer
		h.lg.Error("consensus: snapshot failed; the group's log is kept", "group", g.id, "err", err)
		return
	}
	snap, err := g.ms.CreateSnapshot(applied, &cs, wrapSnapshot(&g.dd, data))
	if err != nil {
		return // a newer snapshot was installed meanwhile
	}
	sb, err := snap.Marshal()
	if err != nil {
		h.fail(errorf("consensus: group %d: encoding a snapshot: %w", g.id, err))
		return
	}
	idx, err := h.log.AppendSync(record(recSnapshot, g.id, sb))
	if err != nil {
		h.fail(errorf("consensus: group %d: writing a snapshot to the log: %w", g.id, err))
		return
	}
	if err := g.ms.Compact(applied); err != nil && err != errCompacted {
		h.fail(errorf("consensus: group %d: compacting the in-memory log: %w", g.id, err))
		return
	}
	g.snapIndex.Store(applied)
	h.local.post(localEvent{g: g, snapshot: &snapTaken{index: applied, widx: idx}})
}
