// Package store keeps persistent messages of durable queues on disk: one
// write-ahead log per node (internal/wal) holding enqueue and remove
// records. A publisher confirm for a persistent message waits until the
// fsync covering its enqueue record (group commit shares fsyncs between
// publishers). Segments whose messages have all left their queues are
// deleted, so disk use falls back after a backlog drains.
//
//	s, recovered, err := store.Open(dir, logger)   // recovered: queue key → messages
//	ref, err := s.Enqueue("/\x00orders", msg)
//	s.OnDurable(ref, func(err error) { ... confirm ... })
//	s.Remove("/\x00orders", []uint64{ref})
package store

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/wal"
)

const (
	recEnqueue = 'E'
	recRemove  = 'R'
)

// MsgStore implements queue.Store over a WAL.
type MsgStore struct {
	log *wal.Log
	lg  *slog.Logger

	mu      sync.Mutex
	live    map[uint64]int // segment first index → live enqueues in it
	sinceGC int
	buf     []byte
}

// Options tune the store.
type Options struct {
	SegmentSize int64
	NoSync      bool
	FS          wal.FS
}

// Open recovers the store in dir and returns the persisted messages still
// in each queue (by queue key), in publish order.
func Open(dir string, lg *slog.Logger, o Options) (*MsgStore, map[string][]queue.Recovered, error) {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	l, err := wal.Open(wal.Options{Dir: dir, SegmentSize: o.SegmentSize, NoSync: o.NoSync, FS: o.FS, Logger: lg})
	if err != nil {
		return nil, nil, err
	}
	s := &MsgStore{log: l, lg: lg, live: map[uint64]int{}}
	type pending struct {
		key string
		msg *queue.Message
		exp int64
	}
	msgs := map[uint64]pending{}
	count := 0
	err = l.Replay(0, func(idx uint64, rec []byte) error {
		count++
		if count%100000 == 0 {
			lg.Info("recovering message store", "records", count)
		}
		if len(rec) == 0 {
			return nil
		}
		switch rec[0] {
		case recEnqueue:
			key, m, exp, err := decodeEnqueue(rec[1:])
			if err != nil {
				lg.Error("message store: undecodable enqueue record skipped", "index", idx, "err", err)
				return nil
			}
			msgs[idx] = pending{key, m, exp}
		case recRemove:
			_, refs, err := decodeRemove(rec[1:])
			if err != nil {
				lg.Error("message store: undecodable remove record skipped", "index", idx, "err", err)
				return nil
			}
			for _, r := range refs {
				delete(msgs, r)
			}
		}
		return nil
	})
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	out := map[string][]queue.Recovered{}
	refs := make([]uint64, 0, len(msgs))
	for r := range msgs {
		refs = append(refs, r)
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i] < refs[j] })
	for _, r := range refs {
		p := msgs[r]
		out[p.key] = append(out[p.key], queue.Recovered{Ref: r, Msg: p.msg, ExpiresAt: p.exp})
		s.live[l.SegmentOf(r)]++
	}
	if len(refs) > 0 || count > 0 {
		lg.Info("message store recovered", "messages", len(refs), "queues", len(out), "records_scanned", count)
	}
	s.gc()
	return s, out, nil
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

func decodeEnqueue(b []byte) (string, *queue.Message, int64, error) {
	d := dec{b: b}
	key := string(d.bytes())
	ex := string(d.bytes())
	rk := string(d.bytes())
	props := append([]byte(nil), d.bytes()...)
	if d.err != nil || len(d.b) < 1 {
		return "", nil, 0, fmt.Errorf("truncated enqueue record")
	}
	prio := d.b[0]
	d.b = d.b[1:]
	exp := d.uvarint()
	if d.err != nil {
		return "", nil, 0, fmt.Errorf("truncated enqueue record")
	}
	body := append([]byte(nil), d.b...)
	return key, &queue.Message{Exchange: ex, RoutingKey: rk, Props: props, Body: body, Persistent: true, Priority: prio}, int64(exp), nil
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
	b := append(s.buf[:0], recEnqueue)
	b = putStr(b, q)
	b = putStr(b, m.Exchange)
	b = putStr(b, m.RoutingKey)
	b = putBytes(b, m.Props)
	b = append(b, m.Priority)
	b = binary.AppendUvarint(b, uint64(expiresAt))
	b = append(b, m.Body...)
	s.buf = b
	if cap(s.buf) > 1<<20 {
		s.buf = nil
	}
	idx, err := s.log.Append(b)
	if err != nil {
		s.lg.Error("message store: enqueue failed", "queue", q, "err", err)
		return 0, err
	}
	s.live[s.log.SegmentOf(idx)]++
	return idx, nil
}

// Remove records that messages left queue q.
func (s *MsgStore) Remove(q string, refs []uint64) {
	if len(refs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := append(s.buf[:0], recRemove)
	b = putStr(b, q)
	b = binary.AppendUvarint(b, uint64(len(refs)))
	for _, r := range refs {
		b = binary.AppendUvarint(b, r)
	}
	s.buf = b
	if _, err := s.log.Append(b); err != nil {
		s.lg.Error("message store: remove failed; messages may come back after a restart", "queue", q, "err", err)
	}
	for _, r := range refs {
		seg := s.log.SegmentOf(r)
		if s.live[seg]--; s.live[seg] <= 0 {
			delete(s.live, seg)
		}
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

// gcLocked deletes leading segments that hold no live message.
func (s *MsgStore) gcLocked() {
	oldest := s.log.LastIndex() + 1
	for seg := range s.live {
		oldest = min(oldest, seg)
	}
	if err := s.log.TruncateFront(oldest); err != nil {
		s.lg.Error("message store: segment cleanup failed", "err", err)
	}
}

// OnDurable calls fn once ref is on disk.
func (s *MsgStore) OnDurable(ref uint64, fn func(error)) { s.log.OnDurable(ref, fn) }

// Segments returns how many segment files the store has.
func (s *MsgStore) Segments() int { return s.log.Segments() }

// Close flushes and closes the store.
func (s *MsgStore) Close() error { return s.log.Close() }
