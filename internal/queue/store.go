package queue

// The store seam: what a queue tells its Store (and Pager) of messages delivered and gone.

// Store is where a durable queue keeps its persistent messages. Enqueue
// returns a reference (also the position a publisher confirm waits for);
// Remove forgets messages that left the queue. The durable store is a
// write-ahead log; a replicated store plugs in at the same seam.
type Store interface {
	// Enqueue persists m; expiresAt (unix nanoseconds, 0 = never) is the
	// message's TTL deadline, kept so a restart does not extend it.
	Enqueue(queue string, m *Message, expiresAt int64) (ref uint64, err error)
	Remove(queue string, refs []uint64)
	// Delivered records that messages went to a consumer and await its
	// ack, so that a restart marks them redelivered.
	Delivered(queue string, refs []uint64)
	// Load reads messages back whose bodies the queue dropped from memory.
	Load(refs []uint64, fn func(i int, m *Message)) error
}

// SyncStore is a Store whose Enqueue returns only once the message is
// durable (a replicated store that waits for a majority): a publisher
// confirm then has no store position to wait for.
type SyncStore interface {
	Store
	EnqueueIsDurable()
}

// forget notes that e left the queue for good.
func (q *Queue) forget(e entry) {
	if q.dcount != nil {
		delete(q.dcount, e.id)
	}
	switch {
	case e.ref == 0:
	case e.paged:
		q.unpaged = append(q.unpaged, e.ref)
	default:
		q.removes = append(q.removes, e.ref)
	}
}

// flushRemoves (with mu held) marks the messages delivered and gone for
// the stores; syncStore tells them once mu is released.
func (q *Queue) flushRemoves() {
	if len(q.delivers) > 0 || len(q.removes) > 0 || len(q.unpaged) > 0 {
		q.storeDirty.Store(true)
	}
}

// syncStore tells the stores which persisted messages were delivered and
// which are gone. It runs without mu (store calls may wait: a mirrored
// store's for the consensus loop); storeMu keeps the calls in order.
func (q *Queue) syncStore() {
	if !q.storeDirty.Load() {
		return
	}
	q.storeMu.Lock()
	defer q.storeMu.Unlock()
	q.mu.Lock()
	q.storeDirty.Store(false)
	delivers, removes, unpaged := q.delivers, q.removes, q.unpaged
	q.delivers, q.removes, q.unpaged = nil, nil, nil
	q.mu.Unlock()
	if len(delivers) > 0 && q.cfg.Store != nil {
		q.cfg.Store.Delivered(q.storeKey, delivers)
	}
	if len(removes) > 0 && q.cfg.Store != nil {
		q.cfg.Store.Remove(q.storeKey, removes)
	}
	if len(unpaged) > 0 && q.cfg.Pager != nil {
		q.cfg.Pager.Remove("", unpaged)
	}
}
