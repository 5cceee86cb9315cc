package consensus

// Proposals survive leader changes. A follower forwards a proposal to the
// leader it knows (raft's MsgProp); if that leader dies, is partitioned or
// steps down before appending it, or appends it but loses it to a new
// leader's log, nothing answers: raft does not report a lost MsgProp. So
// the loop keeps every data proposal it handed to raft until its waiter
// is answered, and proposes it again, under the same id, when the group's
// leader changes and every retryTicks ticks while a leader is known.
//
// A retry can commit although the first copy did too (the first copy was
// appended by a leader that then lost contact, and was committed by its
// successor). The applier therefore applies a proposal id once: each
// group's applier keeps the ids of the last dedupWindow entries it
// applied and skips an entry whose id it holds. The window is part of the
// group's state: it is saved with the state machine's snapshot (and
// travels with it to a member that is sent one), and replay rebuilds it,
// so every member skips the same entries and none diverges. A duplicate
// committed more than dedupWindow entries after its first copy would be
// applied twice; retries stop when the proposal is answered or its
// proposer gives up (ctx, Options.ProposalTimeout), which bounds how far
// apart copies land far below the window at the rates a group commits
// (thousands of entries a second).
//
// Membership changes are not retried: raft refuses a second pending
// change and a replayed removal of a removed node is refused by its
// config checks; a lost one fails at its caller's deadline as before.

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

const (
	// dedupWindow is how many applied proposal ids a group remembers.
	dedupWindow = 8192
	// retryElections is the interval, in election timeouts, between
	// retries of a proposal while the leader stays the same: long enough
	// that a commit slowed by load is not retried.
	retryElections = 2
)

// pendingProp is a data proposal handed to raft and not yet answered.
type pendingProp struct {
	p    proposal
	lead uint64 // the leader known when it was last proposed
	tick uint64 // h.ticks when it was last proposed
}

// track records that p was handed to raft (loop).
func (h *Host) track(g *group, p proposal) {
	if p.cc != nil {
		return
	}
	if h.pending == nil {
		h.pending = map[uint64]*pendingProp{}
	}
	h.pending[p.id] = &pendingProp{p: p, lead: g.rn.BasicStatus().Lead, tick: h.ticks}
}

// answered reports whether the proposer of id was answered or left.
func (h *Host) answeredLocked(id uint64) bool {
	w := h.waiting[id]
	return w == nil || w.done
}

// retryPending proposes again the pending proposals of the groups whose
// leader changed (leaderChanged) and those left unanswered for
// retryElections election timeouts; answered ones are forgotten (loop).
func (h *Host) retryPending(leaderChanged map[uint64]bool, timed bool) {
	if len(h.pending) == 0 {
		return
	}
	every := uint64(retryElections * h.opts.ElectionTicks)
	var again []proposal
	h.mu.Lock()
	for id, pp := range h.pending {
		if h.answeredLocked(id) {
			delete(h.pending, id)
			continue
		}
		g := h.all[pp.p.group]
		if g == nil {
			delete(h.pending, id)
			continue
		}
		lead := g.lead.Load()
		switch {
		case lead == 0: // nobody to send it to: wait for an election
		case leaderChanged[pp.p.group] && lead != pp.lead:
			again = append(again, pp.p)
		case timed && h.ticks-pp.tick >= every:
			again = append(again, pp.p)
		}
	}
	h.mu.Unlock()
	// in the order they were first proposed (ids of one host increase)
	slices.SortFunc(again, func(a, b proposal) int { return cmp.Compare(a.id, b.id) })
	for _, p := range again {
		h.retried.Add(1)
		h.propose(p)
	}
}

// Duplicates counts the entries this host skipped because their proposal
// id was applied already (a retried proposal whose first copy committed).
func (h *Host) Duplicates() uint64 { return h.dups.Load() }

// Retries counts the proposals proposed again after a leader change or a
// retry interval.
func (h *Host) Retries() uint64 { return h.retried.Load() }

// dedup is a group's window of recently applied proposal ids (applier).
type dedup struct {
	ring []uint64 // oldest first once full: ring[next] is the oldest
	next int
	set  map[uint64]struct{}
}

func (d *dedup) has(id uint64) bool {
	_, ok := d.set[id]
	return ok
}

func (d *dedup) add(id uint64) {
	if d.set == nil {
		d.set = map[uint64]struct{}{}
	}
	if len(d.ring) < dedupWindow {
		d.ring = append(d.ring, id)
	} else {
		delete(d.set, d.ring[d.next])
		d.ring[d.next] = id
		d.next = (d.next + 1) % dedupWindow
	}
	d.set[id] = struct{}{}
}

// ids returns the window, oldest first.
func (d *dedup) ids() []uint64 {
	out := make([]uint64, 0, len(d.ring))
	out = append(out, d.ring[d.next:]...)
	return append(out, d.ring[:d.next]...)
}

func (d *dedup) reset(ids []uint64) {
	*d = dedup{}
	for _, id := range ids {
		d.add(id)
	}
}

// snapMagic starts a snapshot's data that carries the dedup window before
// the state machine's own data. No state machine's data starts with it
// (metadata's starts with its codec version 1 or '{'; a mirror's with a
// record length, never 0); data without it is from before the window was
// saved, and starts with an empty window.
var snapMagic = []byte("\x00WRN-DDP")

// wrapSnapshot prefixes a state machine's snapshot with the window.
func wrapSnapshot(d *dedup, data []byte) []byte {
	ids := d.ids()
	b := make([]byte, 0, len(snapMagic)+binary.MaxVarintLen64+8*len(ids)+len(data))
	b = append(b, snapMagic...)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.BigEndian.AppendUint64(b, id)
	}
	return append(b, data...)
}

// unwrapSnapshot splits a snapshot's data into the window and the state
// machine's data.
func unwrapSnapshot(b []byte) (ids []uint64, data []byte, err error) {
	if !bytes.HasPrefix(b, snapMagic) {
		return nil, b, nil
	}
	b = b[len(snapMagic):]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k)/8 {
		return nil, nil, errors.New("consensus: snapshot: truncated proposal-id window")
	}
	b = b[k:]
	ids = make([]uint64, n)
	for i := range ids {
		ids[i] = binary.BigEndian.Uint64(b[8*i:])
	}
	return ids, b[8*n:], nil
}

// restoreSnapshot installs a snapshot's window and hands the rest to the
// state machine.
func restoreSnapshot(g *group, data []byte) error {
	ids, smData, err := unwrapSnapshot(data)
	if err != nil {
		return err
	}
	rs, ok := g.sm.(Restorer)
	if !ok {
		return fmt.Errorf("consensus: group %d has a snapshot but its state machine cannot restore one", g.id)
	}
	if err := rs.Restore(smData); err != nil {
		return err
	}
	g.dd.reset(ids)
	return nil
}
