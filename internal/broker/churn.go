package broker

import (
	"sync/atomic"

	"github.com/warrenmq/warren/internal/conn"
	"github.com/warrenmq/warren/internal/vhost"
)

// churnCounters count what RabbitMQ's management API reports as
// churn_rates: connections and channels opened and closed, queues
// created, declared and deleted, since the node started.
type churnCounters struct {
	connCreated, connClosed atomic.Uint64
	chansOfClosed           atomic.Uint64 // channels opened on connections that have closed
	queues                  vhost.Counters
}

// Churn is a snapshot of the churn counters.
type Churn struct {
	ConnectionCreated, ConnectionClosed uint64
	ChannelCreated, ChannelClosed       uint64
	QueueCreated, QueueDeclared         uint64
	QueueDeleted                        uint64
}

// Churn returns the node's churn counters.
func (b *Broker) Churn() Churn {
	c := Churn{
		ConnectionCreated: b.churn.connCreated.Load(),
		ConnectionClosed:  b.churn.connClosed.Load(),
		QueueCreated:      b.churn.queues.QueueCreated.Load(),
		QueueDeclared:     b.churn.queues.QueueDeclared.Load(),
		QueueDeleted:      b.churn.queues.QueueDeleted.Load(),
	}
	// the set of open connections and the channels of closed ones are
	// read together: a connection leaves one and enters the other under b.mu
	b.mu.RLock()
	open, created := uint64(0), b.churn.chansOfClosed.Load()
	conns := make([]*conn.Conn, 0, len(b.conns))
	for cn := range b.conns {
		conns = append(conns, cn)
	}
	b.mu.RUnlock()
	for _, cn := range conns {
		in := cn.Info()
		created += in.ChannelsOpened
		open += uint64(in.Channels)
	}
	c.ChannelCreated = created
	if created >= open {
		c.ChannelClosed = created - open
	}
	return c
}
