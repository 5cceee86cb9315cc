package queue

// Purging and deleting a queue.

// Purge drops every ready message and returns how many there were.
func (q *Queue) Purge() int {
	defer q.syncStore() // after the unlock below
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.count
	q.forgetReady()
	q.flushRemoves()
	q.clearResident()
	q.levels = make([]level, len(q.levels))
	q.count, q.readyBytes, q.nextExpiry = 0, 0, 0
	return n
}

// Delete marks the queue deleted, cancels its consumers and returns the
// number of ready messages it held. ifUnused and ifEmpty are checked first.
func (q *Queue) Delete(ifUnused, ifEmpty bool) (int, error) {
	defer q.syncStore() // after the unlock below
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return 0, ErrDeleted
	}
	if ifUnused && len(q.consumers) > 0 {
		return 0, ErrInUse
	}
	n := q.count
	if ifEmpty && n > 0 {
		return 0, ErrNotEmpty
	}
	q.deleted = true
	for _, c := range q.consumers {
		c.c.Cancelled(q)
	}
	q.consumers = nil
	q.active = nil
	q.forgetReady()
	for _, e := range q.unacked {
		q.forget(e)
	}
	q.flushRemoves()
	q.clearResident()
	q.levels = make([]level, len(q.levels))
	q.count, q.readyBytes = 0, 0
	q.unacked = map[uint64]entry{}
	if q.ttlTimer != nil {
		q.ttlTimer.Stop()
	}
	if q.expTimer != nil {
		q.expTimer.Stop()
	}
	return n, nil
}
