package queue

// Dispatch: ready messages to consumers, by consumer priority then round-robin; single active consumer.

// eligible returns the consumers that may receive now (the active one
// under single active consumer).
func (q *Queue) eligible() []*consumer {
	if q.set.SAC {
		if q.active == nil && len(q.consumers) > 0 {
			q.active = q.consumers[0]
		}
		if q.active == nil {
			return nil
		}
		return []*consumer{q.active}
	}
	return q.consumers
}

// offer tries each unblocked consumer in priority then round-robin order.
func (q *Queue) offer(e entry) bool {
	cs := q.eligible()
	n := len(cs)
	if n == 0 {
		return false
	}
	if e.expiresAt != 0 && e.expiresAt <= q.now().UnixNano() {
		return false
	}
	// Consumers are sorted by priority; the top group is served round-robin
	// and lower groups only when every higher one is blocked.
	start := 0
	for start < n {
		end := start + 1
		for end < n && cs[end].priority == cs[start].priority {
			end++
		}
		size := end - start
		for i := 0; i < size; i++ {
			idx := start + (q.rr+i)%size
			c := cs[idx]
			if c.blocked {
				continue
			}
			d := Delivery{Queue: q, Msg: e.msg, ID: e.id, Redelivered: e.redelivered}
			if !c.c.Deliver(d) {
				c.blocked = true
				continue
			}
			q.rr = (q.rr + i + 1) % size
			q.stats.Delivered++
			if e.redelivered {
				q.stats.Redelivered++
			}
			if !c.noAck {
				q.taken(e)
			} else {
				q.forget(e)
			}
			return true
		}
		start = end
	}
	return false
}

// dispatch drains ready messages into consumers with room.
func (q *Queue) dispatch() {
	for len(q.consumers) > 0 {
		q.dropExpiredHead()
		e, ok := q.head()
		if !ok {
			return
		}
		if !q.offer(e) {
			return
		}
		q.pop()
	}
}

// Kick clears every consumer's blocked mark and dispatches: called when a
// consumer may have room again (ack, qos change, write buffer drained).
func (q *Queue) Kick() {
	q.mu.Lock()
	for _, c := range q.consumers {
		c.blocked = false
	}
	q.dispatch()
	dls := q.takeDL()
	q.mu.Unlock()
	q.deadLetter(dls)
}
