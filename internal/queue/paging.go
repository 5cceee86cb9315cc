package queue

import (
	"log/slog"
	"sync/atomic"
)

// Paging: which ready messages keep their body in memory, and reading bodies back.

// Memory is shared by every queue of a node: how many bytes of message
// bodies sit in queues' memory, the budget above which persisted messages
// of a backlog are kept on disk only, and the pressure flag (set by the
// node's memory monitor) under which transient messages are paged out too.
type Memory struct {
	budget   atomic.Int64
	used     atomic.Int64
	pressure atomic.Bool
}

// SetBudget sets the body bytes queues may keep in memory for messages
// that also exist on disk; 0 means no budget.
func (m *Memory) SetBudget(n int64) { m.budget.Store(n) }

// Used returns the body bytes queues hold in memory.
func (m *Memory) Used() int64 { return m.used.Load() }

// SetPressure turns paging of transient messages on or off.
func (m *Memory) SetPressure(on bool) { m.pressure.Store(on) }

// Pressure reports whether transient messages are being paged out.
func (m *Memory) Pressure() bool { return m.pressure.Load() }

func (m *Memory) over() bool {
	b := m.budget.Load()
	return m.pressure.Load() || (b > 0 && m.used.Load() > b)
}

// A backlog keeps at most residentHead messages in memory per queue when
// the node's body budget is exhausted, and at most residentMax in any
// case; messages beyond are kept on disk only and read back in batches of
// loadBatch as they reach the head.
const (
	residentHead = 64
	residentMax  = 4096
	loadBatch    = 128
)

func (q *Queue) addResident(e entry) {
	if e.msg == nil {
		return
	}
	q.resident += int64(e.size)
	q.nResident++
	if q.cfg.Memory != nil {
		q.cfg.Memory.used.Add(int64(e.size))
	}
}

func (q *Queue) subResident(e entry) {
	if e.msg == nil {
		return
	}
	q.resident -= int64(e.size)
	q.nResident--
	if q.cfg.Memory != nil {
		q.cfg.Memory.used.Add(-int64(e.size))
	}
}

// clearResident forgets the memory accounting of every ready message
// (purge, delete).
func (q *Queue) clearResident() {
	if q.cfg.Memory != nil {
		q.cfg.Memory.used.Add(-q.resident)
	}
	q.resident, q.nResident = 0, 0
}

// pageOut decides whether a message joining the backlog keeps its body in
// memory. A persisted message already on disk simply drops it; a transient
// one is written to the pager first, only under memory pressure.
func (q *Queue) pageOut(e entry) entry {
	if e.msg == nil || q.nResident < residentHead {
		return e
	}
	mem := q.cfg.Memory
	over := q.set.Lazy || (mem != nil && mem.over())
	switch {
	case e.ref != 0:
		if over || q.nResident >= residentMax {
			e.msg = nil
		}
	case q.cfg.Pager != nil && (q.set.Lazy || (mem != nil && mem.Pressure())):
		ref, err := q.cfg.Pager.Enqueue("", e.msg, 0)
		if err == nil {
			e.ref, e.paged, e.msg = ref, true, nil
		}
	}
	return e
}

// PageOut drops the bodies of ready messages beyond the first few from
// memory (persisted ones) or writes them to the pager (transient ones):
// the node's memory monitor calls it on every queue under pressure.
// It returns the bytes released.
func (q *Queue) PageOut() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pageOutLocked()
}

func (q *Queue) pageOutLocked() int64 {
	if q.nResident <= residentHead {
		return 0 // nothing beyond the head: no need to walk the queue
	}
	before := q.resident
	kept := 0
	for i := len(q.levels) - 1; i >= 0; i-- {
		q.levels[i].ready.each(func(e *entry) bool {
			if e.msg == nil {
				return true
			}
			if kept < residentHead {
				kept++
				return true
			}
			if e.ref == 0 {
				if q.cfg.Pager == nil {
					return true
				}
				ref, err := q.cfg.Pager.Enqueue("", e.msg, 0)
				if err != nil {
					return false
				}
				e.ref, e.paged = ref, true
			}
			q.subResident(*e)
			e.msg = nil
			return true
		})
	}
	return before - q.resident
}

// load reads paged-out bodies back for up to loadBatch messages from the
// head of l. Messages that cannot be read (an I/O error, a corrupt
// record) are dropped with a log line; load reports whether the head is
// now in memory.
func (q *Queue) load(l *level) bool {
	var ents []*entry
	var sRefs, pRefs []uint64
	var sIdx, pIdx []int
	l.ready.each(func(e *entry) bool {
		if len(ents) == loadBatch {
			return false
		}
		if e.msg == nil {
			if e.paged {
				pRefs, pIdx = append(pRefs, e.ref), append(pIdx, len(ents))
			} else {
				sRefs, sIdx = append(sRefs, e.ref), append(sIdx, len(ents))
			}
		}
		ents = append(ents, e)
		return true
	})
	read := func(st Store, refs []uint64, idx []int) {
		if len(refs) == 0 || st == nil {
			return
		}
		err := st.Load(refs, func(i int, m *Message) {
			e := ents[idx[i]]
			e.msg = m
			q.addResident(*e)
		})
		if err != nil {
			slog.Error("queue: reading paged-out messages failed", "queue", q.cfg.Name, "vhost", q.cfg.VHost, "err", err)
		}
	}
	read(q.cfg.Store, sRefs, sIdx)
	read(q.cfg.Pager, pRefs, pIdx)
	return len(ents) > 0 && ents[0].msg != nil
}

// unpage brings a paged-out message back into memory by itself (to dead
// letter it); false when it cannot be read.
func (q *Queue) unpage(e *entry) bool {
	if e.msg != nil {
		return true
	}
	st := q.cfg.Store
	if e.paged {
		st = q.cfg.Pager
	}
	if st == nil {
		return false
	}
	err := st.Load([]uint64{e.ref}, func(_ int, m *Message) { e.msg = m })
	if err != nil {
		slog.Error("queue: reading a paged-out message failed", "queue", q.cfg.Name, "vhost", q.cfg.VHost, "err", err)
	}
	return e.msg != nil
}
