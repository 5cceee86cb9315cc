package vhost

import (
	"fmt"

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

func typeName(v any) string { return amqp.FieldTypeName(v) }

// maxExpiry is the largest TTL or expiry RabbitMQ accepts: ten years in
// milliseconds (rabbit_misc:check_expiry).
const maxExpiry = 315_360_000_000

// notInteger is RabbitMQ's reason for a non-integer where an integer
// argument belongs (check_int_arg, printed with ~p: quoted).
func notInteger(v any) string {
	return fmt.Sprintf("\"expected integer, got %s\"", typeName(v))
}

// validateQueueArgs checks x-arguments as RabbitMQ 3.10 does for classic
// queues; a bad type or value is 406 PRECONDITION_FAILED.
func validateQueueArgs(args amqp.Table, q, vh string, m amqp.Method) error {
	bad := func(k, why string) error {
		return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s': %s", k, q, vh, why)
	}
	for k, v := range args {
		switch k {
		case "x-message-ttl", "x-max-length", "x-max-length-bytes":
			n, ok := amqp.IntValue(v)
			if !ok {
				return bad(k, notInteger(v))
			}
			if n < 0 {
				return bad(k, fmt.Sprintf("{value_negative,%d}", n))
			}
			if k == "x-message-ttl" && n > maxExpiry {
				return bad(k, fmt.Sprintf("{value_too_large,%d}", n))
			}
		case "x-expires":
			n, ok := amqp.IntValue(v)
			if !ok {
				return bad(k, notInteger(v))
			}
			switch {
			case n == 0:
				return bad(k, fmt.Sprintf("{value_zero,%d}", n))
			case n < 0:
				return bad(k, fmt.Sprintf("{value_negative,%d}", n))
			case n > maxExpiry:
				return bad(k, fmt.Sprintf("{value_too_large,%d}", n))
			}
		case "x-max-priority":
			n, ok := amqp.IntValue(v)
			if !ok {
				return bad(k, notInteger(v))
			}
			if n < 0 {
				return bad(k, fmt.Sprintf("{value_negative,%d}", n))
			}
			if n > 255 {
				return bad(k, fmt.Sprintf("{max_value_exceeded,%d}", n))
			}
		case "x-dead-letter-exchange":
			if _, ok := v.(string); !ok {
				return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid type '%s' for arg 'x-dead-letter-exchange' in queue '%s' in vhost '%s'", typeName(v), q, vh)
			}
		case "x-dead-letter-routing-key":
			if _, ok := v.(string); !ok {
				return bad(k, "{unacceptable_type,"+typeName(v)+"}")
			}
			if _, ok := args["x-dead-letter-exchange"]; !ok {
				return bad(k, "routing_key_but_no_dlx_defined")
			}
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
		case "x-dead-letter-strategy", "x-max-in-memory-length", "x-max-in-memory-bytes",
			"x-quorum-initial-group-size", "x-delivery-limit", "x-queue-leader-locator",
			"x-max-age", "x-stream-max-segment-size-bytes", "x-initial-cluster-size":
			// arguments of quorum queues and streams (RabbitMQ refuses
			// them on classic queues, the only type Warren has)
			return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s' of queue type rabbit_classic_queue", k, q, vh)
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
			case "classic":
			case "quorum":
				return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "quorum queues are not available in Warren yet (they come with replicated queues): declare queue '%s' in vhost '%s' as a classic queue (x-queue-type 'classic' or none; durable keeps persistent messages on disk)", q, vh)
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
