package queue

// Dead lettering: messages leaving for the dead-letter exchange (x-dead-letter-exchange).

// Dead-letter reasons, as RabbitMQ writes them in x-death.
const (
	ReasonRejected = "rejected"
	ReasonExpired  = "expired"
	ReasonMaxLen   = "maxlen"
	// ReasonDeliveryLimit: a quorum queue's message was returned more
	// often than x-delivery-limit allows.
	ReasonDeliveryLimit = "delivery_limit"
)

// DeadLetter is a message leaving the queue for its dead-letter exchange.
type DeadLetter struct {
	Msg        *Message
	Reason     string
	Exchange   string // the dead-letter exchange
	RoutingKey string // override (x-dead-letter-routing-key) or ""
	Queue      string
}

// queueDL records a message to dead-letter after the lock is released, or
// drops it when the queue has no dead-letter exchange.
func (q *Queue) queueDL(e entry, reason string) {
	q.forget(e)
	if !q.set.HasDLX || !q.unpage(&e) {
		return
	}
	q.stats.DeadLettered++
	q.pendingDL = append(q.pendingDL, DeadLetter{
		Msg: e.msg, Reason: reason, Exchange: q.set.DLX, Queue: q.cfg.Name,
		RoutingKey: q.set.DLRK,
	})
	if !q.set.HasDLRK {
		q.pendingDL[len(q.pendingDL)-1].RoutingKey = ""
	}
}

func (q *Queue) takeDL() []DeadLetter {
	q.flushRemoves()
	d := q.pendingDL
	q.pendingDL = nil
	return d
}

// deadLetter runs after mu is released: it first tells the stores what
// left the queue, then hands dead letters on.
func (q *Queue) deadLetter(dls []DeadLetter) {
	q.syncStore()
	if len(dls) > 0 && q.OnDeadLetter != nil {
		q.OnDeadLetter(q, dls)
	}
}
