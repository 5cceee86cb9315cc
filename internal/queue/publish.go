package queue

// Publishing: a message joins the queue (or goes straight to a consumer).

// Routed sums up a publish across the queues it was routed to.
type Routed struct {
	Queues   int    // queues that took the message
	Rejected bool   // a queue refused it (reject-publish): nack it
	WaitFor  uint64 // store position a publisher confirm must wait for
	// Remote are the outcomes of copies sent to queues on other nodes: a
	// confirm waits for them too, and is a nack if any is not ok.
	Remote []*Pending
	// Unreachable counts queues routed to whose home node is down: the
	// message is dropped there (nacked under confirms).
	Unreachable int
}

// PublishResult tells the publisher what became of a message.
type PublishResult uint8

// Publish outcomes.
const (
	Enqueued PublishResult = iota
	Rejected               // reject-publish overflow: nack it
	Dropped                // queue deleted
)

// Publish enqueues m and dispatches it if a consumer has room. For a
// persistent message in a durable queue it also returns the store reference
// a publisher confirm must wait for (0 when there is nothing to wait for).
func (q *Queue) Publish(m *Message) (PublishResult, uint64) {
	persist := (m.Persistent || q.cfg.PersistAll) && q.cfg.Store != nil
	if persist {
		q.storeMu.Lock() // the store's order of enqueues is the queue's
	}
	res, ref, dls := q.publish(m, persist)
	if persist {
		q.storeMu.Unlock()
	}
	q.deadLetter(dls)
	if _, sync := q.cfg.Store.(SyncStore); sync {
		ref = 0 // durable already: nothing for a confirm to wait for
	}
	return res, ref
}

func (q *Queue) publish(m *Message, persist bool) (PublishResult, uint64, []DeadLetter) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return Dropped, 0, nil
	}
	if q.sealed {
		q.mu.Unlock()
		return Rejected, 0, nil
	}
	q.stats.Published++
	if q.set.Quorum {
		// every delivery of a quorum queue's message says how often it
		// was returned, the first one 0 (RabbitMQ 3.10)
		m = withDeliveryCount(m, 0)
	}
	// reject-publish refuses the newcomer when the queue is full.
	if (q.set.Overflow == RejectPublish || q.set.Overflow == RejectPublishDLX) && q.full(m.Size()) {
		if q.set.Overflow == RejectPublishDLX {
			q.queueDL(entry{msg: m, size: uint32(m.Size())}, ReasonMaxLen)
		}
		dls := q.takeDL()
		q.mu.Unlock()
		return Rejected, 0, dls
	}
	e := entry{msg: m, size: uint32(m.Size()), prio: uint8(q.prio(m))}
	ttl := q.set.MessageTTL
	if m.HasExpiration && (ttl < 0 || m.Expiration < ttl) {
		ttl = m.Expiration
	}
	if ttl >= 0 {
		e.expiresAt = addSat(q.now().UnixNano(), int64(msDuration(ttl)))
	}
	if persist {
		// the store is called without mu (storeMu is held)
		q.mu.Unlock()
		ref, err := q.cfg.Store.Enqueue(q.storeKey, m, e.expiresAt)
		if err != nil {
			// a storage failure: refuse (the publisher gets a nack)
			return Rejected, 0, nil
		}
		q.mu.Lock()
		if q.deleted { // deleted meanwhile
			q.removes = append(q.removes, ref)
			q.flushRemoves()
			q.mu.Unlock()
			return Dropped, 0, nil
		}
		e.ref = ref
	}
	q.nextID++
	e.id = q.nextID
	// Fast path: nothing waiting, hand straight to a consumer (a message
	// delivered now cannot expire, even with TTL 0).
	fast := e
	fast.expiresAt = 0
	if q.count == 0 && len(q.consumers) > 0 && q.offer(fast) {
		q.flushRemoves()
		q.mu.Unlock()
		return Enqueued, e.ref, nil
	}
	if ttl == 0 {
		// TTL 0: deliver now or never.
		q.stats.Expired++
		q.queueDL(e, ReasonExpired)
	} else {
		q.push(q.pageOut(e))
		q.enforceLimits()
		if e.expiresAt != 0 && (q.nextExpiry == 0 || e.expiresAt < q.nextExpiry) {
			q.nextExpiry = e.expiresAt
			q.armTTL()
		}
	}
	dls := q.takeDL()
	q.mu.Unlock()
	// e.ref is the durable store's reference (0 for a transient message,
	// even one pageOut wrote to the pager): what a confirm waits for
	return Enqueued, e.ref, dls
}
