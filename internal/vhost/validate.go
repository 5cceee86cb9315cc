package vhost

import "github.com/warrenmq/warren/internal/amqp"

// ValidateQueueArguments checks a queue's x-arguments as queue.declare
// does (types and bounds as RabbitMQ 3.10), for callers that create queues
// without a declare: the definitions import. The error is the AMQP 406
// a declare would get. Only the arguments are checked (a durable queue
// is assumed).
func ValidateQueueArguments(args amqp.Table, queue, vhost string) error {
	return validateQueueArgs(args, queue, vhost, &amqp.QueueDeclare{Queue: queue, Durable: true})
}
