package queue

import (
	"iter"
	"sort"
)

// Restoring persisted messages found in the store at start, and taking a
// queue's contents out to move it to another store (Seal, Contents).

// Recovered is a persisted message found in the store at start. Msg is nil
// when its body was left on disk (it is read back on delivery).
type Recovered struct {
	Ref         uint64
	Msg         *Message
	ExpiresAt   int64 // TTL deadline, unix nanoseconds (0 = never)
	Size        uint32
	Priority    uint8
	Redelivered bool // it was delivered before the restart
}

// Restore puts recovered messages back, in order.
func (q *Queue) Restore(ms iter.Seq[Recovered]) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for r := range ms {
		q.nextID++
		p := 0
		if len(q.levels) > 1 {
			p = min(int(r.Priority), len(q.levels)-1)
		}
		q.push(q.pageOut(entry{id: q.nextID, ref: r.Ref, msg: r.Msg, redelivered: r.Redelivered, expiresAt: r.ExpiresAt, size: r.Size, prio: uint8(p)}))
		if r.ExpiresAt != 0 && (q.nextExpiry == 0 || r.ExpiresAt < q.nextExpiry) {
			q.nextExpiry = r.ExpiresAt
		}
	}
	q.armTTL()
}

// Seal makes the queue refuse every later publish (the publisher gets a
// nack), once any publish in progress has finished: before its contents
// move to another queue (Contents).
func (q *Queue) Seal() {
	q.storeMu.Lock()
	q.mu.Lock()
	q.sealed = true
	q.mu.Unlock()
	q.storeMu.Unlock()
}

// Contents returns every message the queue holds, in the order a new
// queue restored from them delivers them: ready messages by priority
// (highest first; returned ones before the others), then the ones
// delivered and not yet acknowledged (marked redelivered). Bodies on disk
// are read back; a message whose body cannot be read is left out (and
// logged). Ref is the message's reference in this queue's store. For
// moving a queue to another store (an ha-mode policy making it
// replicated); the queue is not changed.
func (q *Queue) Contents() []Recovered {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Recovered
	add := func(e entry, redelivered bool) {
		ref := e.ref
		if e.paged {
			ref = 0
		}
		if !q.unpage(&e) {
			return
		}
		out = append(out, Recovered{Ref: ref, Msg: e.msg, ExpiresAt: e.expiresAt, Size: e.size, Priority: e.prio, Redelivered: redelivered})
	}
	for i := len(q.levels) - 1; i >= 0; i-- {
		l := &q.levels[i]
		for _, e := range l.returned {
			add(e, true)
		}
		l.ready.each(func(e *entry) bool { add(*e, e.redelivered); return true })
	}
	ids := make([]uint64, 0, len(q.unacked))
	for id := range q.unacked {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		add(q.unacked[id], true)
	}
	return out
}
