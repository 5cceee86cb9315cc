package queue

import "sort"

// Consumers: registering, removing and listing them.

// AddConsumer registers c under tag. accepted, if not nil, runs under the
// queue's lock once the consumer is admitted and before anything is
// dispatched to it (the channel sends basic.consume-ok there).
func (q *Queue) AddConsumer(tag string, c Consumer, noAck, exclusive bool, priority int, accepted func()) error {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return ErrDeleted
	}
	if len(q.consumers) > 0 && (exclusive || q.consumers[0].exclusive) {
		q.mu.Unlock()
		return ErrExclusiveConsumer
	}
	q.consumerSeq++
	nc := &consumer{tag: tag, c: c, noAck: noAck, exclusive: exclusive, priority: priority, seq: q.consumerSeq}
	i := sort.Search(len(q.consumers), func(i int) bool { return q.consumers[i].priority < priority })
	q.consumers = append(q.consumers, nil)
	copy(q.consumers[i+1:], q.consumers[i:])
	q.consumers[i] = nc
	q.hadConsumer = true
	q.touch()
	if accepted != nil {
		accepted()
	}
	q.dispatch()
	dls := q.takeDL()
	q.mu.Unlock()
	q.deadLetter(dls)
	return nil
}

// RemoveConsumer unregisters the consumer c registered under tag.
func (q *Queue) RemoveConsumer(tag string, c Consumer) {
	q.mu.Lock()
	for i, x := range q.consumers {
		if x.tag == tag && x.c == c {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			if q.active == x {
				q.active = nil // the next in priority, then registration order, takes over
				q.dispatch()
			}
			break
		}
	}
	q.touch()
	q.armExpiry()
	unused := q.cfg.AutoDelete && q.hadConsumer && len(q.consumers) == 0 && !q.deleted
	dls := q.takeDL()
	q.mu.Unlock()
	q.deadLetter(dls)
	if unused && q.OnUnused != nil {
		q.OnUnused(q)
	}
}

// ConsumerInfo describes one consumer for management listings.
type ConsumerInfo struct {
	Tag      string
	NoAck    bool
	Priority int
	Active   bool
	Consumer Consumer
}

// Consumers lists the registered consumers.
func (q *Queue) Consumers() []ConsumerInfo {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]ConsumerInfo, 0, len(q.consumers))
	for _, c := range q.consumers {
		out = append(out, ConsumerInfo{Tag: c.tag, NoAck: c.noAck, Priority: c.priority, Active: !q.set.SAC || q.active == c || (q.active == nil && c == q.consumers[0]), Consumer: c.c})
	}
	return out
}
