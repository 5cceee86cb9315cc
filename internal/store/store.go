// Package store keeps persistent messages of durable queues on disk: one
// write-ahead log per node (internal/wal) holding enqueue and remove
// records. A publisher confirm for a persistent message waits until the
// fsync covering its enqueue record (group commit shares fsyncs between
// publishers). Segments whose messages have all left their queues are
// deleted, so disk use falls back after a backlog drains.
//
//	s, recovered, err := store.Open(dir, logger)   // recovered.Messages(queue key)
//	ref, err := s.Enqueue("/\x00orders", msg)
//	s.OnDurable(ref, func(err error) { ... confirm ... })
//	s.Remove("/\x00orders", []uint64{ref})
package store

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/wal"
)

// Record kinds: an enqueue carries the whole message; remove and
// delivered list the enqueue records they concern.
const (
	recEnqueue   = 'E'
	recRemove    = 'R'
	recDelivered = 'D'
	// A drop record kills every earlier message of a queue (key) or of
	// every queue of a vhost: written and synced when a durable queue or
	// a vhost is deleted, it keeps a crash from bringing the messages back
	// (into a queue declared again under the same name) when their remove
	// records were not yet on disk.
	recDropQueue = 'Q'
	recDropVHost = 'V'
)

// MsgStore implements queue.Store over a WAL.
type MsgStore struct {
	log *wal.Log
	lg  *slog.Logger

	mu      sync.Mutex
	segs    map[uint64]*segState // segment first index → its live enqueues
	sinceGC int

	compacting bool
	closing    bool
	wg         sync.WaitGroup
	buf        []byte
}

// Options tune the store.
type Options struct {
	SegmentSize int64
	NoSync      bool
	FS          wal.FS
}

// Open recovers the store in dir and returns, with it, the persisted
// messages still in each queue (see Recovery). Bodies stay on disk: a
// queue reads them back as they reach its head, so recovering a backlog
// larger than memory needs memory only for its index.
func Open(dir string, lg *slog.Logger, o Options) (*MsgStore, *Recovery, error) {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	l, err := wal.Open(wal.Options{Dir: dir, SegmentSize: o.SegmentSize, NoSync: o.NoSync, FS: o.FS, Logger: lg})
	if err != nil {
		return nil, nil, err
	}
	s := &MsgStore{log: l, lg: lg, segs: map[uint64]*segState{}}
	rec, err := s.recover()
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	s.gc()
	return s, rec, nil
}

// OpenPager opens a store for paging transient messages out of memory: it
// never fsyncs and starts empty (whatever an earlier run left is deleted).
func OpenPager(dir string, lg *slog.Logger) (*MsgStore, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clearing the paging directory %s: %w", dir, err)
	}
	s, _, err := Open(dir, lg, Options{NoSync: true})
	return s, err
}

func putStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func putBytes(b []byte, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("length %d beyond record", n)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

type header struct {
	key, exchange, rk, props []byte
	prio                     uint8
	exp                      int64
	bodyLen                  int
	body                     []byte
}

func decodeHeader(b []byte) (header, error) {
	d := dec{b: b}
	var h header
	h.key = d.bytes()
	h.exchange = d.bytes()
	h.rk = d.bytes()
	h.props = d.bytes()
	if d.err != nil || len(d.b) < 1 {
		return h, fmt.Errorf("truncated enqueue record")
	}
	h.prio = d.b[0]
	d.b = d.b[1:]
	h.exp = int64(d.uvarint())
	if d.err != nil {
		return h, fmt.Errorf("truncated enqueue record")
	}
	h.body, h.bodyLen = d.b, len(d.b)
	return h, nil
}

// AppendMessage appends the store's encoding of a persisted message
// (queue key, exchange, routing key, properties, priority, TTL deadline,
// body): the body of an enqueue record. The mirrored-queue store uses
// the same encoding.
func AppendMessage(b []byte, key string, m *queue.Message, expiresAt int64) []byte {
	b = putStr(b, key)
	b = putStr(b, m.Exchange)
	b = putStr(b, m.RoutingKey)
	b = putBytes(b, m.Props)
	b = append(b, m.Priority)
	b = binary.AppendUvarint(b, uint64(expiresAt))
	return append(b, m.Body...)
}

// DecodeMessage decodes AppendMessage's encoding into a persistent
// message whose props and body share one copy of b's bytes.
func DecodeMessage(b []byte) (key string, m *queue.Message, expiresAt int64, err error) {
	h, err := decodeHeader(b)
	if err != nil {
		return "", nil, 0, err
	}
	buf := make([]byte, len(h.props)+len(h.body))
	n := copy(buf, h.props)
	copy(buf[n:], h.body)
	m = &queue.Message{Exchange: string(h.exchange), RoutingKey: string(h.rk), Props: buf[:n:n], Body: buf[n:], Persistent: true, Priority: h.prio}
	return string(h.key), m, h.exp, nil
}

func decodeRemove(b []byte) (string, []uint64, error) {
	d := dec{b: b}
	key := string(d.bytes())
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		return "", nil, fmt.Errorf("truncated remove record")
	}
	refs := make([]uint64, 0, n)
	for i := uint64(0); i < n; i++ {
		refs = append(refs, d.uvarint())
	}
	return key, refs, d.err
}

// Enqueue persists m for queue (buffered; see OnDurable).
func (s *MsgStore) Enqueue(q string, m *queue.Message, expiresAt int64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := AppendMessage(append(s.buf[:0], recEnqueue), q, m, expiresAt)
	s.buf = b
	if cap(s.buf) > 1<<20 {
		s.buf = nil
	}
	idx, err := s.log.Append(b)
	if err != nil {
		s.lg.Error("message store: enqueue failed", "queue", q, "err", err)
		return 0, err
	}
	s.markLive(idx)
	return idx, nil
}

func (s *MsgStore) appendRefs(kind byte, q string, refs []uint64) error {
	b := append(s.buf[:0], kind)
	b = putStr(b, q)
	b = binary.AppendUvarint(b, uint64(len(refs)))
	for _, r := range refs {
		b = binary.AppendUvarint(b, r)
	}
	s.buf = b
	_, err := s.log.Append(b)
	return err
}

// Delivered records that messages of queue q went to a consumer and await
// an ack: after a restart they come back marked redelivered. The record is
// not waited for; one written in the last moments before a crash may be
// lost, and those messages then come back without the mark.
func (s *MsgStore) Delivered(q string, refs []uint64) {
	if len(refs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.appendRefs(recDelivered, q, refs); err != nil {
		s.lg.Error("message store: delivery record failed", "queue", q, "err", err)
	}
}

// Load reads messages back by reference (fn gets each one's position in
// refs).
func (s *MsgStore) Load(refs []uint64, fn func(i int, m *queue.Message)) error {
	s.mu.Lock()
	for _, r := range refs {
		first := s.log.SegmentOf(r)
		if st := s.segs[first]; st == nil || !st.has(r-first) {
			s.mu.Unlock()
			return fmt.Errorf("message store: message %d is not in any queue", r)
		}
	}
	s.mu.Unlock()
	var derr error
	err := s.log.ReadMany(refs, func(i int, rec []byte) {
		if derr != nil {
			return
		}
		if len(rec) == 0 || rec[0] != recEnqueue {
			derr = fmt.Errorf("message store: record %d is not a message", refs[i])
			return
		}
		_, m, _, err := DecodeMessage(rec[1:])
		if err != nil {
			derr = fmt.Errorf("message store: record %d: %w", refs[i], err)
			return
		}
		fn(i, m)
	})
	if err != nil {
		return err
	}
	return derr
}

// Remove records that messages left queue q.
func (s *MsgStore) Remove(q string, refs []uint64) {
	if len(refs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.appendRefs(recRemove, q, refs); err != nil {
		s.lg.Error("message store: remove failed; messages may come back after a restart", "queue", q, "err", err)
	}
	for _, r := range refs {
		s.markDead(r)
	}
	s.sinceGC += len(refs)
	if s.sinceGC >= 4096 {
		s.sinceGC = 0
		s.gcLocked()
	}
}

func (s *MsgStore) gc() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gcLocked()
}

// gcLocked deletes leading segments that hold no live message, and starts
// a compaction when the remaining sealed segments are mostly dead.
func (s *MsgStore) gcLocked() {
	oldest := s.log.LastIndex() + 1
	for first, st := range s.segs {
		if st.live > 0 {
			oldest = min(oldest, first)
		}
	}
	if err := s.log.TruncateFront(oldest); err != nil {
		s.lg.Error("message store: segment cleanup failed", "err", err)
	}
	front := s.log.FirstIndex()
	for first := range s.segs {
		if first < front {
			delete(s.segs, first)
		}
	}
	s.maybeCompactLocked()
}

// DropQueue records, durably, that every message queue q holds now is
// gone (the queue was deleted). Call it before anything may declare the
// queue again.
func (s *MsgStore) DropQueue(q string) error { return s.drop(recDropQueue, q) }

// DropVHost is DropQueue for every queue of vhost vh.
func (s *MsgStore) DropVHost(vh string) error { return s.drop(recDropVHost, vh) }

func (s *MsgStore) drop(kind byte, name string) error {
	s.mu.Lock()
	b := append(append(s.buf[:0], kind), name...)
	s.buf = b
	idx, err := s.log.Append(b)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.log.WaitDurable(idx)
}

// Sync waits until every record appended so far (enqueues, removes,
// delivery marks) is on disk.
func (s *MsgStore) Sync() error { return s.log.WaitDurable(s.log.LastIndex()) }

// OnDurable calls fn once ref is on disk.
func (s *MsgStore) OnDurable(ref uint64, fn func(error)) { s.log.OnDurable(ref, fn) }

// Segments returns how many segment files the store has.
func (s *MsgStore) Segments() int { return s.log.Segments() }

// Close waits for a running compaction, then flushes and closes the store.
func (s *MsgStore) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.wg.Wait()
	return s.log.Close()
}
