// Package mirror is the store of a mirrored queue: a queue.Store whose
// every change goes through the queue's consensus group (internal/
// consensus), so a persistent message is confirmed only once a majority
// of the queue's mirrors hold it, and any surviving member can rebuild the
// queue, in order, after its leader is lost. This is the guarantee
// RabbitMQ's classic mirroring lacks.
//
//	s, _ := mirror.Open(host, gid, members)
//	q := queue.New(queue.Config{Name: "orders", Durable: true, Store: s})
//	_, ref := q.Publish(m)
//	s.OnDurable(ref, func(err error) { ... confirm or nack ... })
//	// on another member, after a failover:
//	s2.Barrier(ctx)
//	q2.Restore(slices.Values(s2.Recovered()))
//
// Status: a foundation, not yet wired into the broker (which does not
// yet run queues on other nodes). Mirrors keep message bodies in memory.
package mirror

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/warrenmq/warren/internal/consensus"
	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/store"
)

// Command kinds in the group's log.
const (
	cmdEnqueue   = 'E'
	cmdRemove    = 'R'
	cmdDelivered = 'D'
	cmdBarrier   = 'B'
	cmdReady     = 'Y'
	// cmdSeq appears in snapshots only: the highest sequence any
	// reference applied so far carried, so that references stay unique
	// after a restart from a snapshot that no longer holds them
	cmdSeq = 'S'
)

// A reference is the proposing node's sequence number shifted left by
// refNodeBits, plus its node id: it grows on each node and is unique in
// the group even if two nodes propose (a split brain resolved by Raft).
const refNodeBits = 16

type record struct {
	msg       queue.Message
	expiresAt int64
	delivered bool
}

// Store is one mirrored queue's replica on one node. Safe for concurrent
// use.
type Store struct {
	host *consensus.Host
	gid  uint64
	node uint64

	mu      sync.Mutex
	msgs    map[uint64]*record // the replicated state: applied enqueues not removed
	maxSeq  uint64             // highest sequence seen in any reference
	pending map[uint64]*record // proposed here, not applied yet
	gone    map[uint64]bool    // removed here, removal not applied yet
	// early: removals applied before their enqueue (the enqueue's
	// proposal was retried after the removal's, or forwarded on another
	// path): the enqueue, when it comes, is ignored instead of
	// resurrecting the message. Bounded (oldest forgotten first).
	early     map[uint64]bool
	earlyFIFO []uint64
	// ready: a MarkReady committed (a queue moved into the group by a
	// policy is complete)
	ready bool
	// confirms: references proposed here wait until they and every
	// earlier one are applied (durable) or one of them failed
	inflight []uint64 // ascending
	done     map[uint64]error
	durable  uint64 // every reference proposed here up to this one is settled
	waiters  []durWaiter
	// the first failure: its confirm and every later one fail (nack),
	// and new messages are refused, until Barrier (the queue is then
	// rebuilt from Recovered)
	failed   error
	failedAt uint64
}

// outcome is the result of the confirm for ref (with s.mu held).
func (s *Store) outcome(ref uint64) error {
	if s.failed != nil && ref >= s.failedAt {
		return s.failed
	}
	return nil
}

type durWaiter struct {
	ref uint64
	fn  func(error)
}

// Open starts this node's replica of group gid with the given founding
// members (every member calls Open with the same list).
func Open(h *consensus.Host, node, gid uint64, members []uint64) (*Store, error) {
	if node >= 1<<refNodeBits {
		return nil, fmt.Errorf("mirror: node id %d too large", node)
	}
	s := &Store{host: h, gid: gid, node: node, msgs: map[uint64]*record{}, pending: map[uint64]*record{}, gone: map[uint64]bool{}, done: map[uint64]error{}, early: map[uint64]bool{}}
	if err := h.AddGroup(gid, members, fsm{s}); err != nil {
		return nil, err
	}
	return s, nil
}

// Enqueue proposes m; the reference it returns becomes durable (see
// OnDurable) once a majority of the mirrors applied it.
func (s *Store) Enqueue(_ string, m *queue.Message, expiresAt int64) (uint64, error) {
	s.mu.Lock()
	if s.failed != nil {
		err := s.failed
		s.mu.Unlock()
		return 0, err
	}
	s.maxSeq++
	ref := s.maxSeq<<refNodeBits | s.node
	rec := &record{msg: copyMsg(m), expiresAt: expiresAt}
	s.pending[ref] = rec
	s.inflight = append(s.inflight, ref)
	s.mu.Unlock()
	s.host.ProposeAsync(s.gid, encodeEnqueue(ref, rec), func(_ any, err error) { s.settled(ref, err) })
	return ref, nil
}

// settled records the outcome of an enqueue proposed here and fires the
// confirms it completes.
func (s *Store) settled(ref uint64, err error) {
	s.mu.Lock()
	s.done[ref] = err
	if err != nil && (s.failed == nil || ref < s.failedAt) {
		s.failed = fmt.Errorf("mirror: a message was not replicated to a majority: %w", err)
		s.failedAt = ref
	}
	for len(s.inflight) > 0 {
		r := s.inflight[0]
		if _, ok := s.done[r]; !ok {
			break
		}
		delete(s.done, r)
		s.inflight = s.inflight[1:]
		s.durable = r
	}
	type call struct {
		fn  func(error)
		err error
	}
	var fire []call
	k := 0
	for _, w := range s.waiters {
		if w.ref <= s.durable {
			fire = append(fire, call{w.fn, s.outcome(w.ref)})
		} else {
			s.waiters[k] = w
			k++
		}
	}
	s.waiters = s.waiters[:k]
	s.mu.Unlock()
	for _, c := range fire {
		c.fn(c.err)
	}
}

// OnDurable calls fn once every message this node enqueued up to ref is
// held by a majority of the mirrors, or with the error that prevented it.
func (s *Store) OnDurable(ref uint64, fn func(error)) {
	s.mu.Lock()
	if ref <= s.durable || (s.failed != nil && ref >= s.failedAt) {
		err := s.outcome(ref)
		s.mu.Unlock()
		fn(err)
		return
	}
	s.waiters = append(s.waiters, durWaiter{ref, fn})
	s.mu.Unlock()
}

// Remove proposes that messages left the queue.
func (s *Store) Remove(_ string, refs []uint64) {
	if len(refs) == 0 {
		return
	}
	s.mu.Lock()
	for _, r := range refs {
		s.gone[r] = true
	}
	s.mu.Unlock()
	s.host.ProposeAsync(s.gid, encodeRefs(cmdRemove, refs), func(any, error) {})
}

// Delivered proposes that messages went to a consumer.
func (s *Store) Delivered(_ string, refs []uint64) {
	if len(refs) > 0 {
		s.host.ProposeAsync(s.gid, encodeRefs(cmdDelivered, refs), func(any, error) {})
	}
}

// Load returns stored messages (proposed here or applied).
func (s *Store) Load(refs []uint64, fn func(i int, m *queue.Message)) error {
	s.mu.Lock()
	out := make([]queue.Message, len(refs))
	for i, r := range refs {
		rec := s.pending[r]
		if rec == nil {
			rec = s.msgs[r]
		}
		if rec == nil || s.gone[r] {
			s.mu.Unlock()
			return fmt.Errorf("mirror: message %d is not in the queue", r)
		}
		out[i] = rec.msg
	}
	s.mu.Unlock()
	for i := range out {
		fn(i, &out[i])
	}
	return nil
}

// Barrier returns once everything the group committed before it is
// applied on this node: a new leader calls it before Recovered (Raft
// applies the previous leader's last entries only once an entry of the
// new term commits).
// It also clears a replication failure, after which this replica
// refused new messages: its leader rebuilds the queue from Recovered.
func (s *Store) Barrier(ctx context.Context) error {
	if _, err := s.host.Propose(ctx, s.gid, []byte{cmdBarrier}); err != nil {
		return err
	}
	s.mu.Lock()
	if len(s.inflight) == 0 {
		s.failed, s.failedAt = nil, 0
	}
	s.mu.Unlock()
	return nil
}

// MarkReady commits the marker that the group holds a complete queue: the
// node moving an existing queue into a new group commits it once every
// message is in, and no member serves the queue before (Ready).
func (s *Store) MarkReady(ctx context.Context) error {
	_, err := s.host.Propose(ctx, s.gid, []byte{cmdReady})
	return err
}

// Ready reports whether a MarkReady has been applied here.
func (s *Store) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// Recovered returns the queue as the group committed it, in order, to
// rebuild it on this node after a failover (call Barrier first).
func (s *Store) Recovered() []queue.Recovered {
	s.mu.Lock()
	defer s.mu.Unlock()
	refs := slices.Sorted(maps.Keys(s.msgs))
	out := make([]queue.Recovered, 0, len(refs))
	for _, r := range refs {
		rec := s.msgs[r]
		m := rec.msg
		out = append(out, queue.Recovered{Ref: r, Msg: &m, ExpiresAt: rec.expiresAt, Size: uint32(len(m.Body)), Priority: m.Priority, Redelivered: rec.delivered})
	}
	return out
}

// Len returns how many messages the replicated state holds.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

func copyMsg(m *queue.Message) queue.Message {
	c := *m
	c.Props = append([]byte(nil), m.Props...)
	c.Body = append([]byte(nil), m.Body...)
	return c
}

// fsm applies the group's committed commands to the replica.
type fsm struct{ s *Store }

func (f fsm) Apply(_ uint64, cmd []byte) any {
	s := f.s
	if len(cmd) == 0 {
		return errors.New("mirror: empty command")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch cmd[0] {
	case cmdBarrier:
	case cmdReady:
		s.ready = true
	case cmdEnqueue:
		ref, rec, err := decodeEnqueue(cmd[1:])
		if err != nil {
			return err
		}
		delete(s.pending, ref)
		s.maxSeq = max(s.maxSeq, ref>>refNodeBits)
		if s.early[ref] {
			// removed before it was enqueued: it left the queue already
			delete(s.early, ref)
			return nil
		}
		s.msgs[ref] = rec
	case cmdRemove, cmdDelivered:
		refs, err := decodeRefs(cmd[1:])
		if err != nil {
			return err
		}
		for _, r := range refs {
			// a reference is never handed out again, even one whose
			// enqueue never applied here (a removal can come first)
			s.maxSeq = max(s.maxSeq, r>>refNodeBits)
			if cmd[0] == cmdRemove {
				if _, ok := s.msgs[r]; !ok {
					s.addEarly(r)
				}
				delete(s.msgs, r)
				delete(s.gone, r)
			} else if rec := s.msgs[r]; rec != nil {
				rec.delivered = true
			}
		}
	default:
		return fmt.Errorf("mirror: unknown command %q", cmd[0])
	}
	return nil
}

// maxEarly bounds the removals remembered ahead of their enqueue (a
// removal of a message that never committed stays there until pushed
// out).
const maxEarly = 1 << 16

// addEarly remembers a removal applied before its enqueue (s.mu held).
func (s *Store) addEarly(r uint64) {
	if s.early[r] {
		return
	}
	s.early[r] = true
	s.earlyFIFO = append(s.earlyFIFO, r)
	for len(s.earlyFIFO) > maxEarly {
		delete(s.early, s.earlyFIFO[0])
		s.earlyFIFO = s.earlyFIFO[1:]
	}
}

// Snapshot encodes every message of the replica, in order, then the
// removals applied ahead of their enqueue.
func (f fsm) Snapshot() ([]byte, error) {
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	refs := slices.Sorted(maps.Keys(s.msgs))
	var b []byte
	for _, r := range refs {
		e := encodeEnqueue(r, s.msgs[r])
		b = binary.AppendUvarint(b, uint64(len(e)))
		b = append(b, e...)
	}
	if s.ready {
		b = binary.AppendUvarint(b, 1)
		b = append(b, cmdReady)
	}
	seq := binary.AppendUvarint([]byte{cmdSeq}, s.maxSeq)
	b = binary.AppendUvarint(b, uint64(len(seq)))
	b = append(b, seq...)
	for _, r := range s.earlyFIFO {
		if s.early[r] {
			e := encodeRefs(cmdRemove, []uint64{r})
			b = binary.AppendUvarint(b, uint64(len(e)))
			b = append(b, e...)
		}
	}
	return b, nil
}

// Restore replaces the replica with a snapshot's messages.
func (f fsm) Restore(b []byte) error {
	msgs := map[uint64]*record{}
	early := map[uint64]bool{}
	var earlyFIFO []uint64
	var maxSeq uint64
	ready := false
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return errors.New("mirror: truncated snapshot")
		}
		e := b[k : k+int(n)]
		b = b[k+int(n):]
		if len(e) == 1 && e[0] == cmdReady {
			ready = true
			continue
		}
		if len(e) > 1 && e[0] == cmdSeq {
			v, k := binary.Uvarint(e[1:])
			if k <= 0 {
				return errors.New("mirror: bad sequence record in snapshot")
			}
			maxSeq = max(maxSeq, v)
			continue
		}
		if len(e) > 0 && e[0] == cmdRemove {
			refs, err := decodeRefs(e[1:])
			if err != nil {
				return err
			}
			for _, r := range refs {
				maxSeq = max(maxSeq, r>>refNodeBits)
				if !early[r] {
					early[r] = true
					earlyFIFO = append(earlyFIFO, r)
				}
			}
			continue
		}
		if len(e) == 0 || e[0] != cmdEnqueue {
			return errors.New("mirror: bad snapshot record")
		}
		ref, rec, err := decodeEnqueue(e[1:])
		if err != nil {
			return err
		}
		msgs[ref] = rec
		maxSeq = max(maxSeq, ref>>refNodeBits)
	}
	s := f.s
	s.mu.Lock()
	s.msgs = msgs
	s.early, s.earlyFIFO = early, earlyFIFO
	s.ready = ready
	s.maxSeq = max(s.maxSeq, maxSeq)
	s.mu.Unlock()
	return nil
}

// An enqueue command is the reference, a flags byte, then the message in
// the durable store's encoding (store.AppendMessage).
func encodeEnqueue(ref uint64, r *record) []byte {
	b := []byte{cmdEnqueue}
	b = binary.AppendUvarint(b, ref)
	flags := byte(0)
	if r.delivered {
		flags = 1
	}
	b = append(b, flags)
	return store.AppendMessage(b, "", &r.msg, r.expiresAt)
}

func decodeEnqueue(b []byte) (uint64, *record, error) {
	ref, k := binary.Uvarint(b)
	if k <= 0 || len(b) < k+1 {
		return 0, nil, errors.New("mirror: truncated command")
	}
	flags := b[k]
	_, m, exp, err := store.DecodeMessage(b[k+1:])
	if err != nil {
		return 0, nil, fmt.Errorf("mirror: %w", err)
	}
	return ref, &record{msg: *m, expiresAt: exp, delivered: flags&1 != 0}, nil
}

func encodeRefs(kind byte, refs []uint64) []byte {
	b := []byte{kind}
	b = binary.AppendUvarint(b, uint64(len(refs)))
	for _, r := range refs {
		b = binary.AppendUvarint(b, r)
	}
	return b
}

func decodeRefs(b []byte) ([]uint64, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, errors.New("mirror: truncated command")
	}
	b = b[k:]
	refs := make([]uint64, 0, n)
	for i := uint64(0); i < n; i++ {
		r, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errors.New("mirror: truncated command")
		}
		refs = append(refs, r)
		b = b[k:]
	}
	return refs, nil
}
