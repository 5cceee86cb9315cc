package queue

import "github.com/warrenmq/warren/internal/amqp"

// Settings: a queue's effective limits, from its arguments and its policy.

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
