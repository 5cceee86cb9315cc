package queue

import (
	"sort"

	"github.com/warrenmq/warren/internal/amqp"
)

// Acknowledgements: ack, reject/nack (discard) and requeue of delivered messages.

// taken records that a message went to a consumer that must ack it.
func (q *Queue) taken(e entry) {
	q.unacked[e.id] = e
	if e.ref != 0 && !e.paged {
		q.delivers = append(q.delivers, e.ref)
	}
}

// Ack forgets delivered messages.
func (q *Queue) Ack(ids ...uint64) {
	q.mu.Lock()
	for _, id := range ids {
		if e, ok := q.unacked[id]; ok {
			delete(q.unacked, id)
			q.forget(e)
			q.stats.Acked++
		}
	}
	q.flushRemoves()
	q.mu.Unlock()
	q.syncStore()
}

// Discard drops delivered messages (reject or nack without requeue); they
// are dead-lettered with reason "rejected" when the queue has a DLX.
func (q *Queue) Discard(ids ...uint64) {
	q.mu.Lock()
	for _, id := range ids {
		if e, ok := q.unacked[id]; ok {
			delete(q.unacked, id)
			q.queueDL(e, ReasonRejected)
		}
	}
	dls := q.takeDL()
	q.mu.Unlock()
	q.deadLetter(dls)
}

// Requeue puts delivered messages back at their original place (within
// their priority), marked redelivered, and dispatches them.
func (q *Queue) Requeue(ids ...uint64) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return
	}
	touched := map[int]bool{}
	for _, id := range ids {
		e, ok := q.unacked[id]
		if !ok {
			continue
		}
		delete(q.unacked, id)
		if q.set.Quorum {
			n := q.dcount[id] + 1
			if q.set.DeliveryLimit >= 0 && int64(n) > q.set.DeliveryLimit {
				delete(q.dcount, id)
				q.queueDL(e, ReasonDeliveryLimit)
				continue
			}
			if q.dcount == nil {
				q.dcount = map[uint64]int32{}
			}
			q.dcount[id] = n
			e.msg = withDeliveryCount(e.msg, n)
		}
		e.redelivered = true
		p := int(e.prio)
		q.levels[p].returned = append(q.levels[p].returned, e)
		q.count++
		q.readyBytes += int(e.size)
		q.addResident(e)
		touched[p] = true
	}
	for p := range touched {
		r := q.levels[p].returned
		sort.Slice(r, func(i, j int) bool { return r[i].id < r[j].id })
	}
	if len(touched) > 0 {
		for _, c := range q.consumers {
			c.blocked = false
		}
		q.dispatch()
	}
	dls := q.takeDL()
	q.mu.Unlock()
	q.deadLetter(dls)
}

// withDeliveryCount returns m with the x-delivery-count header RabbitMQ's
// quorum queues put on a message returned n times (a long, 'l'). m itself
// is shared with other queues and stays as it is.
func withDeliveryCount(m *Message, n int32) *Message {
	if m == nil {
		return nil
	}
	p, err := amqp.DecodeProperties(m.Props)
	if err != nil {
		return m
	}
	h := make(amqp.Table, len(p.Headers)+1)
	for k, v := range p.Headers {
		h[k] = v
	}
	h["x-delivery-count"] = int64(n)
	p.Headers = h
	props, err := p.Append(nil)
	if err != nil {
		return m
	}
	c := *m
	c.Props = props
	return &c
}
