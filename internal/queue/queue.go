// Package queue holds a queue's messages and consumers: the ready list, the
// messages delivered but not yet acknowledged, and round-robin dispatch to
// consumers by priority. It knows nothing of connections or sockets: a
// consumer is anything that implements Consumer, and a queue's storage is a
// Store (memory now; durable and replicated stores plug in at the same seam).
//
// A minimal use:
//
//	q := queue.New(queue.Config{Name: "q"})
//	q.Publish(&queue.Message{Body: []byte("hi")})
//	d, ok := q.Get(true) // d.Msg.Body == "hi"
//
// Lock order: a Queue's mutex is taken before any consumer's own lock
// (Consumer.Deliver and Consumer.Cancelled run with the queue locked and must
// never call back into a queue).
package queue

import (
	"errors"
	"sort"
	"sync"
)

// Message is an immutable published message shared by every queue it was
// routed to. Props holds the content-header property bytes exactly as the
// publisher sent them, so consumers receive them byte for byte.
type Message struct {
	Exchange   string
	RoutingKey string
	Props      []byte
	Body       []byte
	Persistent bool
	Priority   uint8
}

// Size is the body size, the figure RabbitMQ counts for length limits.
func (m *Message) Size() int { return len(m.Body) }

// Delivery is one message offered to a consumer.
type Delivery struct {
	Queue       *Queue
	Msg         *Message
	ID          uint64 // queue-local message id, used to ack or requeue
	Redelivered bool
	Remaining   uint32 // messages still ready after this one (basic.get-ok)
}

// Consumer receives deliveries. Both methods run with the queue's lock held
// and must not call into any queue.
type Consumer interface {
	// Deliver offers d; it returns false when the consumer has no room now
	// (prefetch reached, connection write buffer full). The queue then marks
	// it blocked until Kick.
	Deliver(d Delivery) bool
	// Cancelled tells the consumer that the queue removed it (queue deleted).
	Cancelled(q *Queue)
}

// Errors returned by queue operations; callers map them to AMQP replies.
var (
	ErrExclusiveConsumer = errors.New("queue in exclusive use")
	ErrDeleted           = errors.New("queue deleted")
	ErrInUse             = errors.New("queue in use")
	ErrNotEmpty          = errors.New("queue not empty")
)

// Config is a queue's declaration.
type Config struct {
	VHost      string
	Name       string
	Durable    bool
	Exclusive  bool
	AutoDelete bool
	Owner      uint64 // connection id of an exclusive queue's owner
	Args       map[string]any
}

type entry struct {
	id          uint64
	msg         *Message
	redelivered bool
}

type consumer struct {
	tag       string
	c         Consumer
	noAck     bool
	exclusive bool
	priority  int
	blocked   bool
}

// Queue is safe for concurrent use; its state changes under one mutex.
type Queue struct {
	cfg Config

	mu          sync.Mutex
	nextID      uint64
	ready       fifo
	returned    []entry // requeued messages, ascending id, delivered before ready
	unacked     map[uint64]entry
	consumers   []*consumer // sorted by priority, descending, stable
	rr          int
	hadConsumer bool
	deleted     bool
	readyBytes  int

	// OnUnused is called (without the lock) when an auto-delete queue loses
	// its last consumer.
	OnUnused func(q *Queue)

	stats Stats
}

// Stats are monotonically increasing counters.
type Stats struct {
	Published, Delivered, Acked, Redelivered uint64
}

// New makes an empty queue.
func New(cfg Config) *Queue {
	return &Queue{cfg: cfg, unacked: make(map[uint64]entry)}
}

// Config returns the declaration.
func (q *Queue) Config() Config { return q.cfg }

// Name returns the queue's name.
func (q *Queue) Name() string { return q.cfg.Name }

// Publish enqueues m and dispatches it if a consumer has room.
func (q *Queue) Publish(m *Message) bool {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return false
	}
	q.nextID++
	e := entry{id: q.nextID, msg: m}
	q.stats.Published++
	// Fast path: nothing waiting, hand straight to a consumer.
	if q.ready.len() == 0 && len(q.returned) == 0 && len(q.consumers) > 0 {
		if q.offer(e) {
			q.mu.Unlock()
			return true
		}
	}
	q.ready.push(e)
	q.readyBytes += m.Size()
	q.mu.Unlock()
	return true
}

// offer tries each unblocked consumer in priority then round-robin order.
func (q *Queue) offer(e entry) bool {
	n := len(q.consumers)
	if n == 0 {
		return false
	}
	// Consumers are sorted by priority; the top group is served round-robin
	// and lower groups only when every higher one is blocked.
	start := 0
	for start < n {
		end := start + 1
		for end < n && q.consumers[end].priority == q.consumers[start].priority {
			end++
		}
		size := end - start
		for i := 0; i < size; i++ {
			idx := start + (q.rr+i)%size
			c := q.consumers[idx]
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
				q.unacked[e.id] = e
			}
			return true
		}
		start = end
	}
	return false
}

func (q *Queue) head() (entry, bool) {
	if len(q.returned) > 0 {
		return q.returned[0], true
	}
	return q.ready.peek()
}

func (q *Queue) pop() entry {
	if len(q.returned) > 0 {
		e := q.returned[0]
		q.returned[0] = entry{}
		q.returned = q.returned[1:]
		if len(q.returned) == 0 {
			q.returned = nil
		}
		q.readyBytes -= e.msg.Size()
		return e
	}
	e := q.ready.pop()
	q.readyBytes -= e.msg.Size()
	return e
}

// dispatch drains ready messages into consumers with room.
func (q *Queue) dispatch() {
	for len(q.consumers) > 0 {
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
	q.mu.Unlock()
}

// AddConsumer registers c under tag. accepted, if not nil, runs under the
// queue's lock once the consumer is admitted and before anything is
// dispatched to it (the channel sends basic.consume-ok there).
func (q *Queue) AddConsumer(tag string, c Consumer, noAck, exclusive bool, priority int, accepted func()) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return ErrDeleted
	}
	if len(q.consumers) > 0 && (exclusive || q.consumers[0].exclusive) {
		return ErrExclusiveConsumer
	}
	nc := &consumer{tag: tag, c: c, noAck: noAck, exclusive: exclusive, priority: priority}
	i := sort.Search(len(q.consumers), func(i int) bool { return q.consumers[i].priority < priority })
	q.consumers = append(q.consumers, nil)
	copy(q.consumers[i+1:], q.consumers[i:])
	q.consumers[i] = nc
	q.hadConsumer = true
	if accepted != nil {
		accepted()
	}
	q.dispatch()
	return nil
}

// RemoveConsumer unregisters the consumer c registered under tag.
func (q *Queue) RemoveConsumer(tag string, c Consumer) {
	q.mu.Lock()
	for i, x := range q.consumers {
		if x.tag == tag && x.c == c {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			break
		}
	}
	unused := q.cfg.AutoDelete && q.hadConsumer && len(q.consumers) == 0 && !q.deleted
	q.mu.Unlock()
	if unused && q.OnUnused != nil {
		q.OnUnused(q)
	}
}

// Get takes the head message for basic.get. With noAck the message is gone;
// otherwise it is unacked until Ack or Requeue.
func (q *Queue) Get(noAck bool) (Delivery, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return Delivery{}, false
	}
	if _, ok := q.head(); !ok {
		return Delivery{}, false
	}
	e := q.pop()
	if !noAck {
		q.unacked[e.id] = e
	}
	q.stats.Delivered++
	if e.redelivered {
		q.stats.Redelivered++
	}
	return Delivery{Queue: q, Msg: e.msg, ID: e.id, Redelivered: e.redelivered, Remaining: uint32(q.ready.len() + len(q.returned))}, true
}

// Ack forgets delivered messages.
func (q *Queue) Ack(ids ...uint64) {
	q.mu.Lock()
	for _, id := range ids {
		if _, ok := q.unacked[id]; ok {
			delete(q.unacked, id)
			q.stats.Acked++
		}
	}
	q.mu.Unlock()
}

// Discard drops delivered messages without acknowledging them (reject or
// nack without requeue). Dead lettering hooks in here.
func (q *Queue) Discard(ids ...uint64) {
	q.mu.Lock()
	for _, id := range ids {
		delete(q.unacked, id)
	}
	q.mu.Unlock()
}

// Requeue puts delivered messages back at their original place, marked
// redelivered, and dispatches them.
func (q *Queue) Requeue(ids ...uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return
	}
	added := false
	for _, id := range ids {
		e, ok := q.unacked[id]
		if !ok {
			continue
		}
		delete(q.unacked, id)
		e.redelivered = true
		q.returned = append(q.returned, e)
		q.readyBytes += e.msg.Size()
		added = true
	}
	if !added {
		return
	}
	sort.Slice(q.returned, func(i, j int) bool { return q.returned[i].id < q.returned[j].id })
	for _, c := range q.consumers {
		c.blocked = false
	}
	q.dispatch()
}

// Purge drops every ready message and returns how many there were.
func (q *Queue) Purge() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.ready.len() + len(q.returned)
	q.ready = fifo{}
	q.returned = nil
	q.readyBytes = 0
	return n
}

// Delete marks the queue deleted, cancels its consumers and returns the
// number of ready messages it held. ifUnused and ifEmpty are checked first.
func (q *Queue) Delete(ifUnused, ifEmpty bool) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return 0, ErrDeleted
	}
	if ifUnused && len(q.consumers) > 0 {
		return 0, ErrInUse
	}
	n := q.ready.len() + len(q.returned)
	if ifEmpty && n > 0 {
		return 0, ErrNotEmpty
	}
	q.deleted = true
	for _, c := range q.consumers {
		c.c.Cancelled(q)
	}
	q.consumers = nil
	q.ready = fifo{}
	q.returned = nil
	q.unacked = map[uint64]entry{}
	return n, nil
}

// Deleted reports whether Delete succeeded.
func (q *Queue) Deleted() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.deleted
}

// Counts returns ready messages, unacked messages and consumers.
func (q *Queue) Counts() (ready, unacked, consumers int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ready.len() + len(q.returned), len(q.unacked), len(q.consumers)
}

// ReadyBytes returns the body bytes of ready messages.
func (q *Queue) ReadyBytes() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.readyBytes
}

// Stats returns the counters.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.stats
}

// fifo is a growable ring buffer of entries.
type fifo struct {
	buf        []entry
	head, size int
}

func (f *fifo) len() int { return f.size }

func (f *fifo) push(e entry) {
	if f.size == len(f.buf) {
		n := len(f.buf) * 2
		if n == 0 {
			n = 16
		}
		nb := make([]entry, n)
		k := copy(nb, f.buf[f.head:])
		copy(nb[k:], f.buf[:f.head])
		f.buf, f.head = nb, 0
	}
	f.buf[(f.head+f.size)%len(f.buf)] = e
	f.size++
}

func (f *fifo) peek() (entry, bool) {
	if f.size == 0 {
		return entry{}, false
	}
	return f.buf[f.head], true
}

func (f *fifo) pop() entry {
	e := f.buf[f.head]
	f.buf[f.head] = entry{}
	f.head = (f.head + 1) % len(f.buf)
	f.size--
	if f.size == 0 {
		f.head = 0
		if len(f.buf) > 1024 {
			f.buf = nil // give a drained large backlog's memory back
		}
	}
	return e
}
