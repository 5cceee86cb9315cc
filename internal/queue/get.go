package queue

// basic.get.

// Get takes the head message for basic.get. With noAck the message is gone;
// otherwise it is unacked until Ack or Requeue.
func (q *Queue) Get(noAck bool) (Delivery, bool) {
	q.mu.Lock()
	q.touch()
	q.armExpiry()
	if q.deleted {
		q.mu.Unlock()
		return Delivery{}, false
	}
	q.dropExpiredHead()
	dls := q.takeDL()
	if _, ok := q.head(); !ok {
		q.mu.Unlock()
		q.deadLetter(dls)
		return Delivery{}, false
	}
	e := q.pop()
	if !noAck {
		q.taken(e)
	} else {
		q.forget(e)
	}
	q.flushRemoves()
	q.stats.Delivered++
	if e.redelivered {
		q.stats.Redelivered++
	}
	d := Delivery{Queue: q, Msg: e.msg, ID: e.id, Redelivered: e.redelivered, Remaining: uint32(q.count)}
	q.mu.Unlock()
	q.deadLetter(dls)
	return d, true
}
