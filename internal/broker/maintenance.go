package broker

import "github.com/warrenmq/warren/internal/amqp"

// Maintenance mode (rabbitmq-upgrade drain / revive, as warrenctl verbs):
// a drained node closes its AMQP listeners and its client connections, so
// that a load balancer's health checks move clients to the other nodes,
// and stays so until revived; its inter-node link, consensus and
// management API stay up (its queues stay reachable through the other
// nodes). A restart revives it, as RabbitMQ's does. Leadership of
// replicated queues is not handed over yet: their groups elect another
// leader only if this node stops.

// Drain puts the node in maintenance mode.
func (b *Broker) Drain() {
	b.mu.Lock()
	was := b.draining
	b.draining = true
	b.mu.Unlock()
	if was {
		return
	}
	b.log.Warn("this node is in maintenance mode (drain): client connections are closed and refused until warrenctl revive")
	b.closeListeners()
	for _, c := range b.Connections() {
		go c.Close(amqp.ConnectionForced, "Node was put into maintenance mode")
	}
}

// Revive ends maintenance mode and opens the AMQP listeners again
// (unless stop_app or a minority pause keeps them closed).
func (b *Broker) Revive() error {
	b.mu.Lock()
	was := b.draining
	b.draining = false
	serve := !b.appStopped && !b.stopping
	b.mu.Unlock()
	if !was || !serve {
		return nil
	}
	b.log.Info("maintenance mode over (revive): accepting client connections")
	return b.Start()
}

// UnderMaintenance reports whether the node is drained.
func (b *Broker) UnderMaintenance() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.draining
}
