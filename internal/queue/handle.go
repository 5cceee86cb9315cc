package queue

import "sync"

// Handle is how a channel reaches a queue: the *Queue itself, or, in a
// cluster, a proxy for a queue whose home is another node
// (internal/forward). Both behave alike for the channel: deliveries come
// through Consumer.Deliver with Delivery.Queue set to the handle, and the
// ids they carry go back through the same handle.
type Handle interface {
	Name() string
	// AddConsumer registers c; accepted runs before anything is
	// dispatched to it (the channel writes basic.consume-ok there).
	AddConsumer(tag string, c Consumer, noAck, exclusive bool, priority int, accepted func()) error
	RemoveConsumer(tag string, c Consumer)
	// Get takes the head message for basic.get (false: none).
	Get(noAck bool) (Delivery, bool)
	Ack(ids ...uint64)
	Discard(ids ...uint64)
	Requeue(ids ...uint64)
	// Kick tells the queue a consumer may have room again.
	Kick()
}

var _ Handle = (*Queue)(nil)

// Outcome is what became of a message sent to a queue on another node.
type Outcome uint8

// Outcomes of a forwarded message.
const (
	Stored  Outcome = iota + 1 // taken (and on disk when it must be)
	Refused                    // refused by the queue (reject-publish overflow)
	Lost                       // the node was lost before it answered: may or may not be stored
)

// Pending is the outcome of a message sent to a queue on another node,
// known once that node answers or is lost.
type Pending struct {
	mu  sync.Mutex
	out Outcome
	fns []func(Outcome)
}

// Resolve records the outcome and runs the waiting callbacks; only the
// first call counts.
func (p *Pending) Resolve(o Outcome) {
	p.mu.Lock()
	if p.out != 0 {
		p.mu.Unlock()
		return
	}
	p.out = o
	fns := p.fns
	p.fns = nil
	p.mu.Unlock()
	for _, fn := range fns {
		fn(o)
	}
}

// OnDone runs fn with the outcome: at once when it is known, otherwise
// on the goroutine that resolves p.
func (p *Pending) OnDone(fn func(Outcome)) {
	p.mu.Lock()
	if p.out == 0 {
		p.fns = append(p.fns, fn)
		p.mu.Unlock()
		return
	}
	o := p.out
	p.mu.Unlock()
	fn(o)
}

// Resolved returns a Pending that already has outcome o.
func Resolved(o Outcome) *Pending { return &Pending{out: o} }
