package store

import (
	"sort"
	"time"

	"github.com/warrenmq/warren/internal/wal"
)

// Segment clean-up. Leading segments without a live message are deleted
// (gcLocked). A message that stays long in a queue would pin every later
// segment, so sealed segments that are mostly dead are also compacted:
// rewritten with their dead enqueue records, their remove records and the
// delivery records of dead messages replaced by gaps (indexes stay, so
// queues' references stay valid).
//
// Why dropping remove records is safe: a remove record points at enqueue
// records in its own or older segments. A pass compacts every sealed
// segment where a message died since its last compaction, oldest first,
// against one snapshot of which messages are live; each rewrite is synced
// and renamed into place before the next starts. So when a segment's
// remove records go, the enqueue records they killed are already gone
// from disk (or were blanked by an earlier pass), and a crash at any point
// leaves every segment either old or compacted, never resurrecting a
// removed message.

// segState tracks one segment's live enqueue records.
type segState struct {
	bits []uint64 // bit k: record first+k is a live enqueue
	live int
	dead int // enqueues that died since the segment was last compacted
}

func (st *segState) set(k uint64) {
	for uint64(len(st.bits)) <= k/64 {
		st.bits = append(st.bits, 0)
	}
	st.bits[k/64] |= 1 << (k % 64)
}

func (st *segState) has(k uint64) bool {
	return k/64 < uint64(len(st.bits)) && st.bits[k/64]&(1<<(k%64)) != 0
}

func (st *segState) clear(k uint64) bool {
	if !st.has(k) {
		return false
	}
	st.bits[k/64] &^= 1 << (k % 64)
	return true
}

func (s *MsgStore) markLive(ref uint64) {
	first := s.log.SegmentOf(ref)
	st := s.segs[first]
	if st == nil {
		st = &segState{}
		s.segs[first] = st
	}
	st.set(ref - first)
	st.live++
}

func (s *MsgStore) markDead(ref uint64) {
	first := s.log.SegmentOf(ref)
	st := s.segs[first]
	if st == nil || !st.clear(ref-first) {
		return
	}
	st.live--
	st.dead++
}

// compactMinSegments sealed segments where messages died since their last
// compaction, and whose records are at least half such deaths, start a
// compaction pass.
var compactMinSegments = 4 // a var so tests can compact sooner

func (s *MsgStore) maybeCompactLocked() {
	if s.compacting || s.closing {
		return
	}
	sealed := s.log.Sealed()
	if len(sealed) < compactMinSegments {
		return
	}
	var dead, records uint64
	stale := 0
	for i, first := range sealed {
		next := s.log.LastIndex() + 1
		if i+1 < len(sealed) {
			next = sealed[i+1]
		} else {
			next = s.log.SegmentOf(next)
		}
		if st := s.segs[first]; st != nil && st.dead > 0 {
			records += next - first
			dead += uint64(st.dead)
			stale++
		}
	}
	if stale < compactMinSegments || dead*2 < records {
		return
	}
	s.compacting = true
	s.wg.Add(1)
	go s.compact(sealed)
}

// compact runs one pass over the sealed segments (see above).
func (s *MsgStore) compact(sealed []uint64) {
	defer s.wg.Done()
	start := time.Now()
	s.mu.Lock()
	snap := make([]*segState, len(sealed))
	var todo []int
	for i, first := range sealed {
		if st := s.segs[first]; st != nil {
			snap[i] = &segState{bits: append([]uint64(nil), st.bits...), dead: st.dead}
			if st.dead > 0 {
				todo = append(todo, i)
			}
		}
	}
	s.mu.Unlock()
	active := s.log.SegmentOf(s.log.LastIndex())
	live := func(ref uint64) bool {
		if ref >= active {
			return true
		}
		i := sort.Search(len(sealed), func(i int) bool { return sealed[i] > ref }) - 1
		if i < 0 || snap[i] == nil {
			return false
		}
		return snap[i].has(ref - sealed[i])
	}
	var before, after int64
	done := 0
	for _, i := range todo {
		s.mu.Lock()
		stop := s.closing
		s.mu.Unlock()
		if stop {
			break
		}
		first := sealed[i]
		_, b, a, err := s.log.Rewrite(first, func(idx wal.Index, rec []byte) bool {
			switch {
			case len(rec) == 0:
				return false
			case rec[0] == recEnqueue:
				return snap[i] != nil && snap[i].has(idx-first)
			case rec[0] == recRemove:
				return false
			case rec[0] == recDelivered:
				_, refs, err := decodeRemove(rec[1:])
				if err != nil {
					return false
				}
				for _, r := range refs {
					if live(r) {
						return true
					}
				}
				return false
			}
			return true
		})
		if err != nil && first < s.log.FirstIndex() {
			continue // deleted meanwhile: its records are gone anyway
		}
		if err != nil {
			// later segments keep their remove records: the dead counts
			// of the segments not compacted stay, so a later pass retries
			s.lg.Error("message store: compaction stopped", "segment", first, "err", err)
			break
		}
		s.mu.Lock()
		if st := s.segs[first]; st != nil {
			st.dead -= snap[i].dead // deaths after the snapshot remain to do
		}
		s.mu.Unlock()
		before += b
		after += a
		done++
	}
	if done > 0 {
		s.lg.Info("message store compacted", "segments", done, "bytes_before", before, "bytes_after", after, "took", time.Since(start).Round(time.Millisecond))
	}
	s.mu.Lock()
	s.compacting = false
	if done > 0 {
		s.maybeCompactLocked() // more may have died meanwhile
	}
	s.mu.Unlock()
}
