package vhost

import (
	"fmt"
	"sort"
	"strings"

	"github.com/warrenmq/warren/internal/amqp"
)

// equivalenceArgs are the queue arguments RabbitMQ compares when a queue is
// redeclared (rabbit_amqqueue:declare_args/0 and consume args).
var equivalenceArgs = map[string]bool{
	"x-expires": true, "x-message-ttl": true, "x-dead-letter-exchange": true,
	"x-dead-letter-routing-key": true, "x-max-length": true, "x-max-length-bytes": true,
	"x-max-priority": true, "x-overflow": true, "x-queue-mode": true,
	"x-single-active-consumer": true, "x-queue-type": true, "x-queue-master-locator": true,
}

// MaxExpiry is the largest x-expires and x-message-ttl (and per-message
// expiration) RabbitMQ accepts: ten years in milliseconds
// (rabbit_misc:check_expiry).
const MaxExpiry = 315_360_000_000

func typeName(v any) string { return amqp.FieldTypeName(v) }

// notClassicArgs are queue arguments of quorum queues and streams, which
// RabbitMQ 3.10 refuses on a classic queue.
var notClassicArgs = map[string]bool{
	"x-dead-letter-strategy": true, "x-max-in-memory-length": true, "x-max-in-memory-bytes": true,
	"x-quorum-initial-group-size": true, "x-delivery-limit": true, "x-queue-leader-locator": true,
	"x-max-age": true, "x-stream-max-segment-size-bytes": true, "x-initial-cluster-size": true,
}

func sortedKeys(t amqp.Table) []string {
	ks := make([]string, 0, len(t))
	for k := range t {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// notInteger is RabbitMQ's reason for a non-integer where an integer
// argument belongs (check_int_arg, printed with ~p: quoted).
func notInteger(v any) string {
	return fmt.Sprintf("\"expected integer, got %s\"", typeName(v))
}

// quorumArgs are the queue arguments RabbitMQ 3.10 accepts on a quorum
// queue (rabbit_quorum_queue:capabilities/0, queue_arguments); any other
// x- argument is refused.
var quorumArgs = map[string]bool{
	"x-dead-letter-exchange": true, "x-dead-letter-routing-key": true, "x-dead-letter-strategy": true,
	"x-expires": true, "x-max-length": true, "x-max-length-bytes": true, "x-max-in-memory-length": true,
	"x-max-in-memory-bytes": true, "x-overflow": true, "x-single-active-consumer": true, "x-queue-type": true,
	"x-quorum-initial-group-size": true, "x-delivery-limit": true, "x-message-ttl": true, "x-queue-leader-locator": true,
}

// IsQuorum reports whether queue arguments declare a quorum queue.
func IsQuorum(args map[string]any) bool {
	t, _ := args["x-queue-type"].(string)
	return t == "quorum"
}

// validateQueueArgs checks x-arguments as RabbitMQ 3.10 does for classic
// queues; a bad type or value is 406 PRECONDITION_FAILED. m is the
// queue.declare when there is one: a quorum queue's properties are then
// checked too.
func validateQueueArgs(args amqp.Table, q, vh string, m amqp.Method) error {
	bad := func(k, why string) error {
		return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s': %s", k, q, vh, why)
	}
	if IsQuorum(args) {
		if err := validateQuorum(args, q, vh, m); err != nil {
			return err
		}
	}
	if t, ok := args["x-queue-type"]; !ok || t == "classic" {
		// arguments of other queue types (rabbit_amqqueue:
		// check_arguments_key against the classic queue's list)
		for _, k := range sortedKeys(args) {
			if notClassicArgs[k] {
				return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s' of queue type rabbit_classic_queue", k, q, vh)
			}
		}
	}
	if v, ok := args["x-dead-letter-exchange"]; ok {
		if _, isStr := v.(string); !isStr {
			// rabbit_channel checks the type before the arguments
			return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid type '%s' for arg 'x-dead-letter-exchange' in queue '%s' in vhost '%s'", typeName(v), q, vh)
		}
	}
	for _, k := range sortedKeys(args) {
		v := args[k]
		switch k {
		case "x-queue-version":
			n, ok := amqp.IntValue(v)
			if !ok {
				return bad(k, notInteger(v))
			}
			if n < 0 {
				return bad(k, fmt.Sprintf("{value_negative,%d}", n))
			}
			if n != 1 && n != 2 {
				return bad(k, fmt.Sprintf("\"unsupported queue version '%d'\"", n))
			}
		case "x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-max-priority":
			// rabbit_amqqueue:check_*_arg; ~255p prints the type error
			// as a quoted string
			n, ok := amqp.IntValue(v)
			if !ok {
				return bad(k, notInteger(v))
			}
			switch {
			case k == "x-expires" && n == 0:
				return bad(k, fmt.Sprintf("{value_zero,%d}", n))
			case n < 0:
				return bad(k, fmt.Sprintf("{value_negative,%d}", n))
			case (k == "x-expires" || k == "x-message-ttl") && n > MaxExpiry:
				return bad(k, fmt.Sprintf("{value_too_large,%d}", n))
			case k == "x-max-priority" && n > 255:
				return bad(k, fmt.Sprintf("{max_value_exceeded,%d}", n))
			}
		case "x-dead-letter-exchange", "x-dead-letter-routing-key":
			str, ok := v.(string)
			if !ok {
				return bad(k, "{unacceptable_type,"+typeName(v)+"}")
			}
			if len(str) > 255 {
				// a longstr argument, but it becomes an exchange name or a
				// routing key (short strings): every dead-lettered message
				// would be undeliverable
				return bad(k, fmt.Sprintf("{value_too_long,%d}: at most 255 bytes", len(str)))
			}
			if _, ok := args["x-dead-letter-exchange"]; k == "x-dead-letter-routing-key" && !ok {
				return bad(k, "routing_key_but_no_dlx_defined")
			}
		case "x-overflow":
			s, isStr := v.(string)
			if !isStr {
				return bad(k, "{unacceptable_type,"+typeName(v)+"}")
			}
			switch s {
			case "drop-head", "reject-publish", "reject-publish-dlx":
			default:
				return bad(k, "invalid_overflow")
			}
		case "x-single-active-consumer":
			if _, ok := v.(bool); !ok {
				return bad(k, "{unacceptable_type,"+typeName(v)+"}")
			}
		case "x-queue-mode":
			s, isStr := v.(string)
			if !isStr {
				return bad(k, "{unacceptable_type,"+typeName(v)+"}")
			}
			if s != "default" && s != "lazy" {
				return bad(k, fmt.Sprintf("\"unsupported queue mode '%s'\"", s))
			}
		case "x-queue-type":
			s, _ := v.(string)
			switch s {
			case "classic", "quorum":
			case "stream":
				return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "stream queues are not supported by Warren: declare queue '%s' in vhost '%s' as a classic queue (x-queue-type 'classic' or none)", q, vh)
			default:
				if _, isStr := v.(string); !isStr {
					return bad(k, "{unacceptable_type,"+typeName(v)+"}")
				}
				return bad(k, fmt.Sprintf("\"unsupported queue type '%s'\"", s))
			}
		}
	}
	return nil
}

// validateQuorum checks a quorum queue's declaration as RabbitMQ 3.10
// does: arguments of other queue types first (rabbit_amqqueue's
// check_arguments against the type's capabilities), then the properties
// a quorum queue cannot have, in rabbit_queue_type_util's order
// (auto-delete, exclusive, non-durable), then its own arguments' values.
func validateQuorum(args amqp.Table, q, vh string, m amqp.Method) error {
	for _, k := range sortedKeys(args) {
		if strings.HasPrefix(k, "x-") && !quorumArgs[k] && (equivalenceArgs[k] || notClassicArgs[k] || k == "x-queue-version") {
			return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s' of queue type rabbit_quorum_queue", k, q, vh)
		}
	}
	if d, ok := m.(*amqp.QueueDeclare); ok {
		prop := ""
		switch {
		case d.AutoDelete:
			prop = "auto-delete"
		case d.Exclusive:
			prop = "exclusive-owner"
		case !d.Durable:
			prop = "non-durable"
		}
		if prop != "" {
			return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid property '%s' for queue '%s' in vhost '%s'", prop, q, vh)
		}
	}
	for _, k := range sortedKeys(args) {
		v := args[k]
		switch k {
		case "x-max-in-memory-length", "x-max-in-memory-bytes":
			// x-delivery-limit is not checked (RabbitMQ 3.10 takes any
			// value; one that is not a non-negative integer means none)
			n, ok := amqp.IntValue(v)
			if !ok {
				return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s': %s", k, q, vh, notInteger(v))
			}
			if n < 0 {
				return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s': {value_negative,%d}", k, q, vh, n)
			}
		case "x-quorum-initial-group-size":
			n, ok := amqp.IntValue(v)
			if !ok {
				return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s': %s", k, q, vh, notInteger(v))
			}
			if n < 0 {
				return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s': {value_negative,%d}", k, q, vh, n)
			}
			if n == 0 {
				return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s': {value_zero,%d}", k, q, vh, n)
			}
		case "x-dead-letter-strategy":
			s, isStr := v.(string)
			if !isStr || (s != "at-most-once" && s != "at-least-once") {
				return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s': invalid_dlx_strategy", k, q, vh)
			}
		case "x-queue-leader-locator":
			s, isStr := v.(string)
			if !isStr || (s != "client-local" && s != "balanced") {
				return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s': invalid_queue_locator_arg", k, q, vh)
			}
		}
	}
	return nil
}
