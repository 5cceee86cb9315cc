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
	"iter"
	"log/slog"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenmq/warren/internal/amqp"
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

// SyncStore is a Store whose Enqueue returns only once the message is
// durable (a replicated store that waits for a majority): a publisher
// confirm then has no store position to wait for.
type SyncStore interface {
	Store
	EnqueueIsDurable()
}

// Memory is shared by every queue of a node: how many bytes of message
// bodies sit in queues' memory, the budget above which persisted messages
// of a backlog are kept on disk only, and the pressure flag (set by the
// node's memory monitor) under which transient messages are paged out too.
type Memory struct {
	budget   atomic.Int64
	used     atomic.Int64
	pressure atomic.Bool
}

// SetBudget sets the body bytes queues may keep in memory for messages
// that also exist on disk; 0 means no budget.
func (m *Memory) SetBudget(n int64) { m.budget.Store(n) }

// Used returns the body bytes queues hold in memory.
func (m *Memory) Used() int64 { return m.used.Load() }

// SetPressure turns paging of transient messages on or off.
func (m *Memory) SetPressure(on bool) { m.pressure.Store(on) }

// Pressure reports whether transient messages are being paged out.
func (m *Memory) Pressure() bool { return m.pressure.Load() }

func (m *Memory) over() bool {
	b := m.budget.Load()
	return m.pressure.Load() || (b > 0 && m.used.Load() > b)
}

// Store is where a durable queue keeps its persistent messages. Enqueue
// returns a reference (also the position a publisher confirm waits for);
// Remove forgets messages that left the queue. The durable store is a
// write-ahead log; a replicated store plugs in at the same seam.
type Store interface {
	// Enqueue persists m; expiresAt (unix nanoseconds, 0 = never) is the
	// message's TTL deadline, kept so a restart does not extend it.
	Enqueue(queue string, m *Message, expiresAt int64) (ref uint64, err error)
	Remove(queue string, refs []uint64)
	// Delivered records that messages went to a consumer and await its
	// ack, so that a restart marks them redelivered.
	Delivered(queue string, refs []uint64)
	// Load reads messages back whose bodies the queue dropped from memory.
	Load(refs []uint64, fn func(i int, m *Message)) error
}

// A backlog keeps at most residentHead messages in memory per queue when
// the node's body budget is exhausted, and at most residentMax in any
// case; messages beyond are kept on disk only and read back in batches of
// loadBatch as they reach the head.
const (
	residentHead = 64
	residentMax  = 4096
	loadBatch    = 128
)

// Overflow behaviours of a length-limited queue.
const (
	DropHead         = "drop-head"
	RejectPublish    = "reject-publish"
	RejectPublishDLX = "reject-publish-dlx"
)

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

// Settings are the effective limits computed from arguments and policy.
type Settings struct {
	MessageTTL  int64 // ms, -1 none
	Expires     int64 // ms, 0 none
	MaxLength   int64 // -1 none
	MaxBytes    int64 // -1 none
	Overflow    string
	DLX         string
	HasDLX      bool
	DLRK        string
	HasDLRK     bool
	MaxPriority int
	SAC         bool
	// Lazy is x-queue-mode (or the queue-mode policy key) "lazy": as in
	// RabbitMQ, messages past the head of the queue go to disk at once,
	// not only under memory pressure.
	Lazy bool
	// Quorum is x-queue-type quorum: redelivered messages carry the
	// x-delivery-count header and DeliveryLimit applies.
	Quorum bool
	// DeliveryLimit is x-delivery-limit (or the delivery-limit policy
	// key) of a quorum queue: a message returned more often is
	// dead-lettered with reason delivery_limit (-1: no limit).
	DeliveryLimit int64
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

// EffectiveSettings merges queue arguments with a policy definition the way
// RabbitMQ does: arguments win, except max-length and max-length-bytes
// where the lower value wins.
func EffectiveSettings(args, policy map[string]any) Settings {
	s := Settings{MessageTTL: -1, MaxLength: -1, MaxBytes: -1, Overflow: DropHead, DeliveryLimit: -1}
	pick := func(argKey, polKey string) (any, bool) {
		if v, ok := args[argKey]; ok {
			return v, true
		}
		v, ok := policy[polKey]
		return v, ok
	}
	if v, ok := pick("x-message-ttl", "message-ttl"); ok {
		if n, ok := amqp.IntValue(v); ok && n >= 0 {
			s.MessageTTL = n
		}
	}
	if v, ok := pick("x-expires", "expires"); ok {
		if n, ok := amqp.IntValue(v); ok && n > 0 {
			s.Expires = n
		}
	}
	lower := func(argKey, polKey string) int64 {
		r := int64(-1)
		for _, v := range []any{args[argKey], policy[polKey]} {
			if n, ok := amqp.IntValue(v); ok && n >= 0 && (r < 0 || n < r) {
				r = n
			}
		}
		return r
	}
	s.MaxLength = lower("x-max-length", "max-length")
	s.MaxBytes = lower("x-max-length-bytes", "max-length-bytes")
	if v, ok := pick("x-overflow", "overflow"); ok {
		if o, ok := v.(string); ok && (o == DropHead || o == RejectPublish || o == RejectPublishDLX) {
			s.Overflow = o
		}
	}
	if v, ok := pick("x-dead-letter-exchange", "dead-letter-exchange"); ok {
		if x, ok := v.(string); ok {
			s.DLX, s.HasDLX = x, true
		}
	}
	if v, ok := pick("x-dead-letter-routing-key", "dead-letter-routing-key"); ok {
		if x, ok := v.(string); ok {
			s.DLRK, s.HasDLRK = x, true
		}
	}
	if n, ok := amqp.IntValue(args["x-max-priority"]); ok && n > 0 {
		s.MaxPriority = int(min(n, 255))
	}
	if b, ok := args["x-single-active-consumer"].(bool); ok {
		s.SAC = b
	}
	if v, ok := pick("x-queue-mode", "queue-mode"); ok {
		s.Lazy = v == "lazy"
	}
	if t, _ := args["x-queue-type"].(string); t == "quorum" {
		s.Quorum = true
		if v, ok := pick("x-delivery-limit", "delivery-limit"); ok {
			if n, ok := amqp.IntValue(v); ok && n >= 0 {
				s.DeliveryLimit = n
			}
		}
		if s.Overflow == RejectPublishDLX {
			// not a quorum queue's overflow in RabbitMQ 3.10, which
			// falls back to drop-head
			s.Overflow = DropHead
		}
	}
	return s
}

// SetPolicy applies a new effective policy definition (nil for none).
// The priority levels are fixed at declaration, as in RabbitMQ.
func (q *Queue) SetPolicy(def map[string]any) {
	q.mu.Lock()
	q.cfg.Policy = def
	maxPrio, wasLazy := q.set.MaxPriority, q.set.Lazy
	q.set = EffectiveSettings(q.cfg.Args, def)
	q.set.MaxPriority = maxPrio
	if q.set.Lazy && !wasLazy {
		q.pageOutLocked() // a queue turned lazy moves its backlog to disk now
	}
	q.enforceLimits()
	q.armExpiry()
	dls := q.takeDL()
	q.mu.Unlock()
	q.deadLetter(dls)
}

// Settings returns the effective settings.
func (q *Queue) Settings() Settings {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.set
}

// Config returns the declaration.
func (q *Queue) Config() Config {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cfg
}

// Name returns the queue's name.
func (q *Queue) Name() string { return q.cfg.Name }

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

func (q *Queue) full(extra int) bool {
	return (q.set.MaxLength >= 0 && int64(q.count+1) > q.set.MaxLength) ||
		(q.set.MaxBytes >= 0 && int64(q.readyBytes+extra) > q.set.MaxBytes)
}

// enforceLimits drops (or dead-letters) from the head while over a limit.
func (q *Queue) enforceLimits() {
	if q.set.Overflow != DropHead {
		return
	}
	for q.count > 0 && ((q.set.MaxLength >= 0 && int64(q.count) > q.set.MaxLength) ||
		(q.set.MaxBytes >= 0 && int64(q.readyBytes) > q.set.MaxBytes)) {
		e := q.pop()
		q.stats.Dropped++
		q.queueDL(e, ReasonMaxLen)
	}
}

func (q *Queue) prio(m *Message) int {
	if len(q.levels) == 1 {
		return 0
	}
	return min(int(m.Priority), len(q.levels)-1)
}

func (q *Queue) push(e entry) {
	q.levels[e.prio].ready.push(e)
	q.count++
	q.readyBytes += int(e.size)
	q.addResident(e)
}

func (q *Queue) addResident(e entry) {
	if e.msg == nil {
		return
	}
	q.resident += int64(e.size)
	q.nResident++
	if q.cfg.Memory != nil {
		q.cfg.Memory.used.Add(int64(e.size))
	}
}

func (q *Queue) subResident(e entry) {
	if e.msg == nil {
		return
	}
	q.resident -= int64(e.size)
	q.nResident--
	if q.cfg.Memory != nil {
		q.cfg.Memory.used.Add(-int64(e.size))
	}
}

// clearResident forgets the memory accounting of every ready message
// (purge, delete).
func (q *Queue) clearResident() {
	if q.cfg.Memory != nil {
		q.cfg.Memory.used.Add(-q.resident)
	}
	q.resident, q.nResident = 0, 0
}

// pageOut decides whether a message joining the backlog keeps its body in
// memory. A persisted message already on disk simply drops it; a transient
// one is written to the pager first, only under memory pressure.
func (q *Queue) pageOut(e entry) entry {
	if e.msg == nil || q.nResident < residentHead {
		return e
	}
	mem := q.cfg.Memory
	over := q.set.Lazy || (mem != nil && mem.over())
	switch {
	case e.ref != 0:
		if over || q.nResident >= residentMax {
			e.msg = nil
		}
	case q.cfg.Pager != nil && (q.set.Lazy || (mem != nil && mem.Pressure())):
		ref, err := q.cfg.Pager.Enqueue("", e.msg, 0)
		if err == nil {
			e.ref, e.paged, e.msg = ref, true, nil
		}
	}
	return e
}

// PageOut drops the bodies of ready messages beyond the first few from
// memory (persisted ones) or writes them to the pager (transient ones):
// the node's memory monitor calls it on every queue under pressure.
// It returns the bytes released.
func (q *Queue) PageOut() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pageOutLocked()
}

func (q *Queue) pageOutLocked() int64 {
	if q.nResident <= residentHead {
		return 0 // nothing beyond the head: no need to walk the queue
	}
	before := q.resident
	kept := 0
	for i := len(q.levels) - 1; i >= 0; i-- {
		q.levels[i].ready.each(func(e *entry) bool {
			if e.msg == nil {
				return true
			}
			if kept < residentHead {
				kept++
				return true
			}
			if e.ref == 0 {
				if q.cfg.Pager == nil {
					return true
				}
				ref, err := q.cfg.Pager.Enqueue("", e.msg, 0)
				if err != nil {
					return false
				}
				e.ref, e.paged = ref, true
			}
			q.subResident(*e)
			e.msg = nil
			return true
		})
	}
	return before - q.resident
}

// load reads paged-out bodies back for up to loadBatch messages from the
// head of l. Messages that cannot be read (an I/O error, a corrupt
// record) are dropped with a log line; load reports whether the head is
// now in memory.
func (q *Queue) load(l *level) bool {
	var ents []*entry
	var sRefs, pRefs []uint64
	var sIdx, pIdx []int
	l.ready.each(func(e *entry) bool {
		if len(ents) == loadBatch {
			return false
		}
		if e.msg == nil {
			if e.paged {
				pRefs, pIdx = append(pRefs, e.ref), append(pIdx, len(ents))
			} else {
				sRefs, sIdx = append(sRefs, e.ref), append(sIdx, len(ents))
			}
		}
		ents = append(ents, e)
		return true
	})
	read := func(st Store, refs []uint64, idx []int) {
		if len(refs) == 0 || st == nil {
			return
		}
		err := st.Load(refs, func(i int, m *Message) {
			e := ents[idx[i]]
			e.msg = m
			q.addResident(*e)
		})
		if err != nil {
			slog.Error("queue: reading paged-out messages failed", "queue", q.cfg.Name, "vhost", q.cfg.VHost, "err", err)
		}
	}
	read(q.cfg.Store, sRefs, sIdx)
	read(q.cfg.Pager, pRefs, pIdx)
	return len(ents) > 0 && ents[0].msg != nil
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

// forget notes that e left the queue for good.
func (q *Queue) forget(e entry) {
	if q.dcount != nil {
		delete(q.dcount, e.id)
	}
	switch {
	case e.ref == 0:
	case e.paged:
		q.unpaged = append(q.unpaged, e.ref)
	default:
		q.removes = append(q.removes, e.ref)
	}
}

// flushRemoves (with mu held) marks the messages delivered and gone for
// the stores; syncStore tells them once mu is released.
func (q *Queue) flushRemoves() {
	if len(q.delivers) > 0 || len(q.removes) > 0 || len(q.unpaged) > 0 {
		q.storeDirty.Store(true)
	}
}

// syncStore tells the stores which persisted messages were delivered and
// which are gone. It runs without mu (store calls may wait: a mirrored
// store's for the consensus loop); storeMu keeps the calls in order.
func (q *Queue) syncStore() {
	if !q.storeDirty.Load() {
		return
	}
	q.storeMu.Lock()
	defer q.storeMu.Unlock()
	q.mu.Lock()
	q.storeDirty.Store(false)
	delivers, removes, unpaged := q.delivers, q.removes, q.unpaged
	q.delivers, q.removes, q.unpaged = nil, nil, nil
	q.mu.Unlock()
	if len(delivers) > 0 && q.cfg.Store != nil {
		q.cfg.Store.Delivered(q.storeKey, delivers)
	}
	if len(removes) > 0 && q.cfg.Store != nil {
		q.cfg.Store.Remove(q.storeKey, removes)
	}
	if len(unpaged) > 0 && q.cfg.Pager != nil {
		q.cfg.Pager.Remove("", unpaged)
	}
}

// unpage brings a paged-out message back into memory by itself (to dead
// letter it); false when it cannot be read.
func (q *Queue) unpage(e *entry) bool {
	if e.msg != nil {
		return true
	}
	st := q.cfg.Store
	if e.paged {
		st = q.cfg.Pager
	}
	if st == nil {
		return false
	}
	err := st.Load([]uint64{e.ref}, func(_ int, m *Message) { e.msg = m })
	if err != nil {
		slog.Error("queue: reading a paged-out message failed", "queue", q.cfg.Name, "vhost", q.cfg.VHost, "err", err)
	}
	return e.msg != nil
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

// taken records that a message went to a consumer that must ack it.
func (q *Queue) taken(e entry) {
	q.unacked[e.id] = e
	if e.ref != 0 && !e.paged {
		q.delivers = append(q.delivers, e.ref)
	}
}

// StoreKey identifies the queue in its store.
func (q *Queue) StoreKey() string { return q.storeKey }

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

func (q *Queue) headLevel() *level {
	for i := len(q.levels) - 1; i >= 0; i-- {
		l := &q.levels[i]
		if len(l.returned) > 0 || l.ready.len() > 0 {
			return l
		}
	}
	return nil
}

// head returns the next message, its body in memory; messages whose body
// cannot be read back are dropped on the way.
func (q *Queue) head() (entry, bool) {
	for {
		l := q.headLevel()
		if l == nil {
			return entry{}, false
		}
		if len(l.returned) > 0 {
			return l.returned[0], true
		}
		e, _ := l.ready.peek()
		if e.msg != nil || q.load(l) {
			e, _ = l.ready.peek()
			return e, true
		}
		e = q.pop()
		q.stats.Dropped++
		q.forget(e)
	}
}

func (q *Queue) pop() entry {
	l := q.headLevel()
	var e entry
	if len(l.returned) > 0 {
		e = l.returned[0]
		l.returned[0] = entry{}
		l.returned = l.returned[1:]
		if len(l.returned) == 0 {
			l.returned = nil
		}
	} else {
		e = l.ready.pop()
	}
	q.count--
	q.readyBytes -= int(e.size)
	q.subResident(e)
	return e
}

// dropExpiredHead removes expired messages at the head.
func (q *Queue) dropExpiredHead() {
	if q.nextExpiry == 0 {
		return
	}
	now := q.now().UnixNano()
	for {
		e, ok := q.head()
		if !ok || e.expiresAt == 0 || e.expiresAt > now {
			return
		}
		q.pop()
		q.stats.Expired++
		q.queueDL(e, ReasonExpired)
	}
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

// Touch records use of the queue (redeclare), for x-expires.
func (q *Queue) Touch() {
	q.mu.Lock()
	q.touch()
	q.armExpiry()
	q.mu.Unlock()
}

func (q *Queue) touch() { q.lastUsed = q.now() }

// msDuration converts milliseconds to a Duration, saturating instead of
// overflowing (a TTL of 2^63-1 ms means "never", not "already").
func msDuration(ms int64) time.Duration {
	switch {
	case ms <= 0:
		return 0
	case ms > math.MaxInt64/int64(time.Millisecond):
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

// addSat adds a non-negative b to a, saturating at math.MaxInt64.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// armExpiry (re)starts the x-expires timer while the queue is unused.
func (q *Queue) armExpiry() {
	if q.expTimer != nil {
		q.expTimer.Stop()
		q.expTimer = nil
	}
	if q.set.Expires <= 0 || q.deleted || len(q.consumers) > 0 || q.OnExpire == nil {
		return
	}
	d := msDuration(q.set.Expires)
	q.expTimer = time.AfterFunc(d, q.checkExpiry)
}

func (q *Queue) checkExpiry() {
	q.mu.Lock()
	idle := q.now().Sub(q.lastUsed)
	d := msDuration(q.set.Expires)
	expired := !q.deleted && len(q.consumers) == 0 && q.set.Expires > 0 && idle >= d
	if !expired && !q.deleted && q.set.Expires > 0 && len(q.consumers) == 0 {
		q.expTimer = time.AfterFunc(d-idle, q.checkExpiry)
	}
	q.mu.Unlock()
	if expired && q.OnExpire != nil {
		q.OnExpire(q)
	}
}

// armTTL schedules a sweep at the earliest message expiry.
func (q *Queue) armTTL() {
	if q.nextExpiry == 0 || q.deleted {
		return
	}
	d := time.Duration(q.nextExpiry - q.now().UnixNano())
	if d < 0 {
		d = 0
	}
	if q.ttlTimer == nil {
		q.ttlTimer = time.AfterFunc(d, q.sweep)
	} else {
		q.ttlTimer.Reset(d)
	}
}

// sweep removes every expired ready message, wherever it sits, and
// dead-letters it.
func (q *Queue) sweep() {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return
	}
	now := q.now().UnixNano()
	next := int64(0)
	keep := func(e entry) bool {
		if e.expiresAt != 0 && e.expiresAt <= now {
			q.count--
			q.readyBytes -= int(e.size)
			q.subResident(e)
			q.stats.Expired++
			q.queueDL(e, ReasonExpired)
			return false
		}
		if e.expiresAt != 0 && (next == 0 || e.expiresAt < next) {
			next = e.expiresAt
		}
		return true
	}
	for i := range q.levels {
		l := &q.levels[i]
		rs := l.returned[:0]
		for _, e := range l.returned {
			if keep(e) {
				rs = append(rs, e)
			}
		}
		l.returned = rs
		var nf fifo
		for l.ready.len() > 0 {
			if e := l.ready.pop(); keep(e) {
				nf.push(e)
			}
		}
		l.ready = nf
	}
	q.nextExpiry = next
	q.armTTL()
	q.dispatch()
	dls := q.takeDL()
	q.mu.Unlock()
	q.deadLetter(dls)
}

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

// forgetReady forgets every ready message (purge, delete).
func (q *Queue) forgetReady() {
	for i := range q.levels {
		l := &q.levels[i]
		for _, e := range l.returned {
			q.forget(e)
		}
		l.ready.each(func(e *entry) bool { q.forget(*e); return true })
	}
}

// Recovered is a persisted message found in the store at start. Msg is nil
// when its body was left on disk (it is read back on delivery).
type Recovered struct {
	Ref         uint64
	Msg         *Message
	ExpiresAt   int64 // TTL deadline, unix nanoseconds (0 = never)
	Size        uint32
	Priority    uint8
	Redelivered bool // it was delivered before the restart
}

// Restore puts recovered messages back, in order.
func (q *Queue) Restore(ms iter.Seq[Recovered]) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for r := range ms {
		q.nextID++
		p := 0
		if len(q.levels) > 1 {
			p = min(int(r.Priority), len(q.levels)-1)
		}
		q.push(q.pageOut(entry{id: q.nextID, ref: r.Ref, msg: r.Msg, redelivered: r.Redelivered, expiresAt: r.ExpiresAt, size: r.Size, prio: uint8(p)}))
		if r.ExpiresAt != 0 && (q.nextExpiry == 0 || r.ExpiresAt < q.nextExpiry) {
			q.nextExpiry = r.ExpiresAt
		}
	}
	q.armTTL()
}

// Seal makes the queue refuse every later publish (the publisher gets a
// nack), once any publish in progress has finished: before its contents
// move to another queue (Contents).
func (q *Queue) Seal() {
	q.storeMu.Lock()
	q.mu.Lock()
	q.sealed = true
	q.mu.Unlock()
	q.storeMu.Unlock()
}

// Contents returns every message the queue holds, in the order a new
// queue restored from them delivers them: ready messages by priority
// (highest first; returned ones before the others), then the ones
// delivered and not yet acknowledged (marked redelivered). Bodies on disk
// are read back; a message whose body cannot be read is left out (and
// logged). Ref is the message's reference in this queue's store. For
// moving a queue to another store (an ha-mode policy making it
// replicated); the queue is not changed.
func (q *Queue) Contents() []Recovered {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Recovered
	add := func(e entry, redelivered bool) {
		ref := e.ref
		if e.paged {
			ref = 0
		}
		if !q.unpage(&e) {
			return
		}
		out = append(out, Recovered{Ref: ref, Msg: e.msg, ExpiresAt: e.expiresAt, Size: e.size, Priority: e.prio, Redelivered: redelivered})
	}
	for i := len(q.levels) - 1; i >= 0; i-- {
		l := &q.levels[i]
		for _, e := range l.returned {
			add(e, true)
		}
		l.ready.each(func(e *entry) bool { add(*e, e.redelivered); return true })
	}
	ids := make([]uint64, 0, len(q.unacked))
	for id := range q.unacked {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		add(q.unacked[id], true)
	}
	return out
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

// fifo is a queue of entries in chunks (16 entries first, doubling up to
// maxChunk), so a long backlog grows without copying and a short queue
// stays small.
type fifo struct {
	chunks     [][]entry
	head, tail int // next to pop in chunks[0]; next free in the last chunk
	size       int
}

const maxChunk = 4096

func (f *fifo) len() int { return f.size }

func (f *fifo) push(e entry) {
	if n := len(f.chunks); n == 0 || f.tail == len(f.chunks[n-1]) {
		size := 16
		if n > 0 {
			size = min(2*len(f.chunks[n-1]), maxChunk)
		}
		f.chunks = append(f.chunks, make([]entry, size))
		f.tail = 0
	}
	f.chunks[len(f.chunks)-1][f.tail] = e
	f.tail++
	f.size++
}

func (f *fifo) peek() (entry, bool) {
	if f.size == 0 {
		return entry{}, false
	}
	return f.chunks[0][f.head], true
}

func (f *fifo) pop() entry {
	c := f.chunks[0]
	e := c[f.head]
	c[f.head] = entry{}
	f.head++
	f.size--
	switch {
	case f.size == 0:
		// keep one small chunk for reuse; give a drained backlog's back
		if len(f.chunks) > 1 || len(c) > 64 {
			f.chunks = nil
		}
		f.head, f.tail = 0, 0
	case f.head == len(c):
		f.chunks[0] = nil
		f.chunks = f.chunks[1:]
		f.head = 0
	}
	return e
}

// each calls fn on entries from the head until it returns false.
func (f *fifo) each(fn func(e *entry) bool) {
	left := f.size
	for ci, c := range f.chunks {
		start := 0
		if ci == 0 {
			start = f.head
		}
		for i := start; i < len(c) && left > 0; i++ {
			left--
			if !fn(&c[i]) {
				return
			}
		}
	}
}
