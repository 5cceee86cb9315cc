package store

import (
	"fmt"
	"iter"
	"sort"
	"strings"
	"time"

	"github.com/warrenmq/warren/internal/queue"
)

// meta is what recovery keeps of a live message: 32 bytes, no body.
type meta struct {
	ref       uint64
	exp       int64
	queue     uint32
	size      uint32
	prio      uint8
	delivered bool
	removed   bool
}

// metaList is a list of metas in fixed-size chunks: it grows without the
// copies (and the doubled peak memory) of one large slice.
type metaList struct {
	chunks [][]meta
	n      int
}

const metaChunk = 1 << 16

func (l *metaList) len() int { return l.n }

func (l *metaList) at(i int) *meta { return &l.chunks[i/metaChunk][i%metaChunk] }

func (l *metaList) push(m meta) {
	if l.n == len(l.chunks)*metaChunk {
		l.chunks = append(l.chunks, make([]meta, metaChunk))
	}
	*l.at(l.n) = m
	l.n++
}

// truncate keeps the first n metas.
func (l *metaList) truncate(n int) {
	l.n = n
	keep := (n + metaChunk - 1) / metaChunk
	for i := keep; i < len(l.chunks); i++ {
		l.chunks[i] = nil
	}
	l.chunks = l.chunks[:keep]
}

// Recovery is what Open found: the live messages of each queue, in
// publish order, as a compact index.
type Recovery struct {
	names   []string
	ids     map[string]uint32 // name → index in names
	metas   metaList
	byQueue [][]int32 // per queue: positions in metas
}

// Queues returns the keys of the queues that have messages.
func (r *Recovery) Queues() []string {
	var out []string
	for i, n := range r.names {
		if len(r.byQueue[i]) > 0 {
			out = append(out, n)
		}
	}
	return out
}

// Count returns how many messages queue key has.
func (r *Recovery) Count(key string) int {
	if i := r.index(key); i >= 0 {
		return len(r.byQueue[i])
	}
	return 0
}

func (r *Recovery) index(key string) int {
	if i, ok := r.ids[key]; ok {
		return int(i)
	}
	return -1
}

// Messages yields queue key's messages in order.
func (r *Recovery) Messages(key string) iter.Seq[queue.Recovered] {
	return func(yield func(queue.Recovered) bool) {
		i := r.index(key)
		if i < 0 {
			return
		}
		for _, pos := range r.byQueue[i] {
			m := r.metas.at(int(pos))
			if !yield(queue.Recovered{Ref: m.ref, ExpiresAt: m.exp, Size: m.size, Priority: m.prio, Redelivered: m.delivered}) {
				return
			}
		}
	}
}

// recover scans the log once. Enqueue records arrive in ascending index
// order, so the live set is sorted and later remove and delivery records
// find theirs by binary search.
func (s *MsgStore) recover() (*Recovery, error) {
	r := &Recovery{ids: map[string]uint32{}}
	queues := r.ids
	find := func(ref uint64) *meta {
		i := sort.Search(r.metas.len(), func(i int) bool { return r.metas.at(i).ref >= ref })
		if i < r.metas.len() {
			if m := r.metas.at(i); m.ref == ref && !m.removed {
				return m
			}
		}
		return nil
	}
	count, live := 0, 0
	// enqueue records per segment: those not live at the end are dead
	// records still on disk, which compaction must remove before any
	// later segment's remove records (see compact.go)
	enqueues := map[uint64]int{}
	curSeg, curNext := uint64(0), uint64(0)
	dropQ, dropV := map[string]uint64{}, map[string]uint64{} // key → drop record
	start := time.Now()
	last := start
	err := s.log.Replay(0, func(idx uint64, rec []byte) error {
		count++
		if count%65536 == 0 && time.Since(last) > time.Second {
			last = time.Now()
			s.lg.Info("recovering message store", "records_scanned", count, "messages", live, "queues", len(queues), "elapsed", time.Since(start).Round(time.Millisecond))
		}
		if len(rec) == 0 {
			return nil
		}
		switch rec[0] {
		case recEnqueue:
			if idx >= curNext || idx < curSeg {
				curSeg = s.log.SegmentOf(idx)
				curNext = s.log.NextSegment(curSeg)
			}
			enqueues[curSeg]++
			h, err := decodeHeader(rec[1:])
			if err != nil {
				// CRC-valid but undecodable: skipping it would lose a
				// message silently (and let clean-up delete its segment)
				return undecodable(idx, rec[0], err)
			}
			qid, ok := queues[string(h.key)]
			if !ok {
				qid = uint32(len(r.names))
				queues[string(h.key)] = qid
				r.names = append(r.names, string(h.key))
			}
			r.metas.push(meta{ref: idx, exp: h.exp, queue: qid, size: uint32(h.bodyLen), prio: h.prio})
			live++
		case recRemove, recDelivered:
			_, refs, err := decodeRemove(rec[1:])
			if err != nil {
				return undecodable(idx, rec[0], err)
			}
			for _, ref := range refs {
				if m := find(ref); m != nil {
					if rec[0] == recRemove {
						m.removed = true
						live--
					} else {
						m.delivered = true
					}
				}
			}
			// drop removed entries now and then so the search stays short
			if live < r.metas.len()/2 && r.metas.len() > 4096 {
				r.compact()
			}
		case recDropQueue:
			dropQ[string(rec[1:])] = idx
		case recDropVHost:
			dropV[string(rec[1:])] = idx
		default:
			return undecodable(idx, rec[0], fmt.Errorf("unknown record kind"))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(dropQ)+len(dropV) > 0 {
		for i := 0; i < r.metas.len(); i++ {
			m := r.metas.at(i)
			if m.removed {
				continue
			}
			key := r.names[m.queue]
			vh, _, _ := strings.Cut(key, "\x00")
			if at, ok := dropQ[key]; ok && m.ref < at {
				m.removed = true
			} else if at, ok := dropV[vh]; ok && m.ref < at {
				m.removed = true
			}
			if m.removed {
				live--
			}
		}
	}
	r.compact()
	per := make([]int, len(r.names))
	for i := 0; i < r.metas.len(); i++ {
		per[r.metas.at(i).queue]++
	}
	r.byQueue = make([][]int32, len(r.names))
	for q, n := range per {
		r.byQueue[q] = make([]int32, 0, n)
	}
	for i := 0; i < r.metas.len(); i++ {
		m := r.metas.at(i)
		r.byQueue[m.queue] = append(r.byQueue[m.queue], int32(i))
		s.markLive(m.ref)
	}
	for first, n := range enqueues {
		st := s.segs[first]
		if st == nil {
			st = &segState{}
			s.segs[first] = st
		}
		st.dead = n - st.live
	}
	if live > 0 || count > 0 {
		s.lg.Info("message store recovered", "messages", live, "queues", len(r.Queues()), "records_scanned", count, "took", time.Since(start).Round(time.Millisecond))
	}
	return r, nil
}

// undecodable is the error for a record that passed its checksum but
// cannot be read (written by a newer version, or a bug): recovery stops
// rather than skip it.
func undecodable(idx uint64, kind byte, err error) error {
	return fmt.Errorf("message store: record %d (kind %q) passed its checksum but cannot be decoded: %w; "+
		"the node refuses to start rather than skip it (was the data directory written by a newer version? run that version, or restore a backup)", idx, kind, err)
}

// compact drops removed metas.
func (r *Recovery) compact() {
	k := 0
	for i := 0; i < r.metas.len(); i++ {
		if m := r.metas.at(i); !m.removed {
			*r.metas.at(k) = *m
			k++
		}
	}
	r.metas.truncate(k)
}
