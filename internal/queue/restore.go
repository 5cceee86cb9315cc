package queue

import "iter"

// Restoring persisted messages found in the store at start.

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
