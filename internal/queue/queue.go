// Package queue holds a queue's messages and consumers: the ready list (by
// priority), the messages delivered but not yet acknowledged, round-robin
// dispatch by consumer priority, single active consumer, message TTL, queue
// expiry, length limits and dead lettering. It knows nothing of
// connections or sockets: a consumer is anything that implements Consumer,
// and dead-lettered messages are handed to a callback that routes them.
//
// A minimal use:
//
//	q := queue.New(queue.Config{Name: "q"})
//	q.Publish(&queue.Message{Body: []byte("hi")})
//	d, ok := q.Get(true) // d.Msg.Body == "hi"
//
// Lock order: a Queue's mutex is taken before any consumer's own lock
// (Consumer.Deliver and Consumer.Cancelled run with the queue locked and must
// never call back into a queue). Callbacks (OnUnused, OnExpire,
// OnDeadLetter) run without the lock.
package queue

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
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
	// Expiration is the per-message TTL in milliseconds, parsed from the
	// expiration property by the publisher's channel; only meaningful when
	// HasExpiration.
	Expiration    int64
	HasExpiration bool
}

// Size is the body size, the figure RabbitMQ counts for length limits.
func (m *Message) Size() int { return len(m.Body) }

// Delivery is one message offered to a consumer.
type Delivery struct {
	Queue       Handle // where ID goes back (ack, requeue, discard)
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
	Cancelled(q Handle)
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
	// Policy holds the effective policy definition keys (message-ttl,
	// expires, max-length, ...); queue arguments win over them.
	Policy map[string]any
	// Store keeps persistent messages of a durable queue (nil: memory only).
	Store Store
	// Pager takes transient messages out of memory under memory pressure
	// (nil: they stay in memory).
	Pager Store
	// Memory is the node-wide budget for message bodies held in memory by
	// queues (nil: no limit, nothing is paged out).
	Memory *Memory
	// PersistAll stores every message in Store, persistent or not (a
	// replicated queue: RabbitMQ's quorum queues keep every message).
	PersistAll bool
}

// entry is a message in the queue. msg is nil while the body is paged
// out: it is then read back from the store (or the pager) by ref.
type entry struct {
	id          uint64
	ref         uint64 // store (or pager) reference (0: none)
	msg         *Message
	expiresAt   int64  // unix nanos; 0 = never
	size        uint32 // body size
	prio        uint8  // priority level
	redelivered bool
	paged       bool // ref is in the pager, not the store
}

type level struct {
	ready    fifo
	returned []entry // requeued messages, ascending id, served first
}

type consumer struct {
	tag       string
	c         Consumer
	noAck     bool
	exclusive bool
	priority  int
	seq       uint64
	blocked   bool
}

// Queue is safe for concurrent use; its state changes under one mutex.
type Queue struct {
	cfg Config

	// storeMu orders the calls into the stores, which run with mu
	// released (ADR 0001; docs/lock-order.md: storeMu → mu, storeMu →
	// store; never mu → storeMu): a mirrored store's Enqueue waits for
	// the consensus loop, whose appliers take mu to apply metadata.
	storeMu    sync.Mutex
	storeDirty atomic.Bool // removes, unpaged or delivers wait for syncStore

	mu          sync.Mutex
	set         Settings
	nextID      uint64
	levels      []level // index = priority
	count       int
	readyBytes  int
	unacked     map[uint64]entry
	consumers   []*consumer // sorted by priority, descending, then registration
	consumerSeq uint64
	active      *consumer // single active consumer
	rr          int
	hadConsumer bool
	deleted     bool
	sealed      bool // Seal: publishes are refused (nacked)

	nextExpiry int64 // earliest expiresAt among ready messages (0 none)
	ttlTimer   *time.Timer
	expTimer   *time.Timer
	lastUsed   time.Time
	now        func() time.Time

	pendingDL []DeadLetter
	removes   []uint64 // store refs to forget, flushed after unlocking (syncStore)
	unpaged   []uint64 // pager refs to forget
	delivers  []uint64 // store refs delivered and awaiting an ack
	resident  int64    // body bytes of ready messages held in memory
	nResident int      // ready messages held in memory
	storeKey  string

	// OnUnused is called when an auto-delete queue loses its last consumer.
	OnUnused func(q *Queue)
	// OnExpire is called when an x-expires queue has been unused too long.
	OnExpire func(q *Queue)
	// OnDeadLetter routes dead-lettered messages to their exchange.
	OnDeadLetter func(q *Queue, dls []DeadLetter)

	// dcount counts the returns of messages that came back to the queue
	// (quorum queues only; by message id, sparse).
	dcount map[uint64]int32

	stats Stats
}

// Stats are monotonically increasing counters.
type Stats struct {
	Published, Delivered, Acked, Redelivered, DeadLettered, Expired, Dropped uint64
}

// New makes an empty queue. Callbacks may be set before the first use.
func New(cfg Config) *Queue {
	q := &Queue{cfg: cfg, unacked: make(map[uint64]entry), now: time.Now}
	q.set = EffectiveSettings(cfg.Args, cfg.Policy)
	q.storeKey = cfg.VHost + "\x00" + cfg.Name
	q.levels = make([]level, q.set.MaxPriority+1)
	q.lastUsed = q.now()
	return q
}

// Start arms the queue-expiry timer; call once the callbacks are set.
func (q *Queue) Start() {
	q.mu.Lock()
	q.armExpiry()
	q.mu.Unlock()
}

// Config returns the declaration.
func (q *Queue) Config() Config {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cfg
}

// Name returns the queue's name.
func (q *Queue) Name() string { return q.cfg.Name }

// StoreKey identifies the queue in its store.
func (q *Queue) StoreKey() string { return q.storeKey }

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
	return q.count, len(q.unacked), len(q.consumers)
}

// InMemory returns how many ready messages have their body in memory and
// those bodies' bytes (the rest are paged out to disk).
func (q *Queue) InMemory() (messages int, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.nResident, q.resident
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
