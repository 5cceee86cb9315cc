package vhost

import "sync/atomic"

// Counters are the node-wide queue churn counters RabbitMQ's management
// API reports in churn_rates (queue_created, queue_declared,
// queue_deleted). The broker shares one set between its vhosts, so they
// survive a vhost's deletion.
type Counters struct {
	QueueCreated, QueueDeclared, QueueDeleted atomic.Uint64
}

// SetCounters sets where the vhost counts queue churn (nil: nowhere).
func (v *VHost) SetCounters(c *Counters) { v.counters = c }

var uncounted Counters // where a vhost without counters counts

func (v *VHost) churn() *Counters {
	if v.counters == nil {
		return &uncounted
	}
	return v.counters
}
