package broker

// Node liveness on a clustered node (ADR 0005, "When a node dies"; ADR
// 0009). A node is down, as seen from this node, once this node's
// inter-node link to it has been down for the grace period
// (cluster_node_down_grace_period, 5 s by default). The link itself
// notices a silent peer after its keepalive deadline (10 s), so a node
// that vanishes without closing its connections (power loss, a cut
// cable) counts as down about 15 s after it went; one whose process died
// (its connections reset) about 5 s after.
//
// Two things follow:
//   - The definitions' leader deletes the transient (non-durable) and the
//     exclusive queues whose home is a down node, as RabbitMQ 3.10 does
//     for a node that left the cluster: their messages and owners died
//     with it. Durable queues stay, unavailable until their node returns.
//     A node that is only cut off from the leader is down for it too: its
//     exclusive queues are deleted although their owners may still be
//     connected to it (RabbitMQ does the same). When the partition heals
//     the node applies the deletions and its clients see the queues go.
//   - With cluster_partition_handling = pause_minority, a node that sees
//     no majority of the cluster (itself and the members not down) closes
//     its client connections with 320 CONNECTION_FORCED and stops
//     accepting AMQP connections, until a majority is connected again; a
//     load balancer's health checks then send clients to the majority.
//     ignore and autoheal keep serving: the minority refuses definition
//     changes (541 "no quorum"), and never diverges, so there is nothing
//     to heal.

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/metadata"
)

// liveness is a clustered node's view of the other nodes.
type liveness struct {
	mu        sync.Mutex
	downSince map[uint64]time.Time // link down since (absent: up)
	down      map[uint64]bool      // down for the grace period
	paused    bool                 // pause_minority: not serving clients
	minority  string               // why, while paused
}

// startLiveness starts watching the other nodes (once the node has joined
// its cluster).
func (b *Broker) startLiveness() {
	cn := b.cluster
	if cn == nil {
		return
	}
	grace := b.cfg.NodeDownGrace
	b.live.mu.Lock()
	b.live.downSince = map[uint64]time.Time{}
	b.live.down = map[uint64]bool{}
	b.live.mu.Unlock()
	every := min(max(grace/5, 50*time.Millisecond), 500*time.Millisecond)
	b.goTracked(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			b.checkLiveness(time.Now(), grace)
			select {
			case <-b.stopAlarms:
				return
			case <-t.C:
			}
		}
	})
}

// checkLiveness updates which nodes are down, pauses or resumes a
// minority node under pause_minority, and, on the definitions' leader,
// deletes the down nodes' transient and exclusive queues.
func (b *Broker) checkLiveness(now time.Time, grace time.Duration) {
	cn := b.cluster
	var down []ClusterMember
	connected, notDown := 1, 1 // this node
	members := cn.list()       // the member table changes (membership.go)
	b.live.mu.Lock()
	for _, m := range members {
		if m.Self {
			continue
		}
		if cn.link.Connected(m.ID) {
			connected++
			notDown++
			delete(b.live.downSince, m.ID)
			if b.live.down[m.ID] {
				delete(b.live.down, m.ID)
				b.log.Info("node is up again", "node", m.Name)
			}
			continue
		}
		since, ok := b.live.downSince[m.ID]
		if !ok {
			since = now
			b.live.downSince[m.ID] = now
		}
		if now.Sub(since) < grace {
			notDown++
			continue
		}
		if !b.live.down[m.ID] {
			b.live.down[m.ID] = true
			b.log.Warn("node is down: its inter-node link has been down for the grace period (cluster_node_down_grace_period)", "node", m.Name, "grace", grace)
		}
		down = append(down, m)
	}
	b.live.mu.Unlock()

	of := len(members)
	if b.cfg.PartitionHandling == "pause_minority" {
		switch {
		case notDown*2 <= of:
			b.pauseMinority(fmt.Sprintf("node %s is in a minority partition (%d of %d nodes reachable) and cluster_partition_handling is pause_minority: connect to a node of the majority", b.nodeName, notDown, of))
		case connected*2 > of:
			b.resumeMajority(connected, of)
		}
	}
	if len(down) > 0 && cn.host.Leader(metaGroup) == cn.id {
		b.deleteQueuesOfDownNodes(down)
	}
}

// deleteQueuesOfDownNodes deletes, from the shared definitions, the
// transient and exclusive queues whose home is one of the down nodes.
// A deletion that fails (leadership lost, no quorum) is tried again on
// the next check.
func (b *Broker) deleteQueuesOfDownNodes(down []ClusterMember) {
	dead := map[string]bool{}
	for _, m := range down {
		dead[m.Name] = true
	}
	var gone []metadata.Queue
	b.meta.Read(func(s *metadata.State) {
		for _, q := range s.Queues {
			if dead[q.Node] && (!q.Durable || q.Exclusive) {
				gone = append(gone, q)
			}
		}
	})
	for _, q := range gone {
		// the node may have come back since the check: a queue it
		// declares anew after returning must not be deleted
		if !b.NodeDown(q.Node) {
			continue
		}
		err := b.meta.Propose(metadata.Command{Op: metadata.OpDeleteQueue, VHost: q.VHost, Name: q.Name})
		switch {
		case err == nil:
			b.log.Info("deleted a transient or exclusive queue of a down node", "node", q.Node, "vhost", q.VHost, "queue", q.Name, "durable", q.Durable, "exclusive", q.Exclusive)
		case errors.Is(err, metadata.ErrNotFound):
		default:
			b.log.Warn("could not delete a queue of a down node; trying again", "node", q.Node, "vhost", q.VHost, "queue", q.Name, "err", err)
			return
		}
	}
}

// NodeDown reports whether node name, a member of this node's cluster,
// is down as seen from here: its inter-node link has been down for
// cluster_node_down_grace_period. This node, unknown names and a
// standalone node's are never down.
func (b *Broker) NodeDown(name string) bool {
	cn := b.cluster
	if cn == nil {
		return false
	}
	for _, m := range cn.list() {
		if m.Name == name && !m.Self {
			b.live.mu.Lock()
			defer b.live.mu.Unlock()
			return b.live.down[m.ID]
		}
	}
	return false
}

// Paused reports whether pause_minority stopped this node serving
// clients, and why.
func (b *Broker) Paused() (bool, string) {
	b.live.mu.Lock()
	defer b.live.mu.Unlock()
	return b.live.paused, b.live.minority
}

// pauseMinority closes the AMQP listeners and every client connection
// (320 CONNECTION_FORCED, saying why).
func (b *Broker) pauseMinority(why string) {
	b.live.mu.Lock()
	if b.live.paused {
		b.live.mu.Unlock()
		return
	}
	b.live.paused, b.live.minority = true, why
	b.live.mu.Unlock()
	b.log.Warn("pausing: closing client connections and refusing new ones until a majority of the cluster is reachable", "reason", why)
	b.closeListeners()
	reason := "broker forced connection closure with reason 'pause_minority': " + why
	for _, c := range b.Connections() {
		go c.Close(amqp.ConnectionForced, reason)
	}
}

// resumeMajority reopens the AMQP listeners after pauseMinority (unless
// stop_app closed them meanwhile).
func (b *Broker) resumeMajority(up, of int) {
	b.live.mu.Lock()
	if !b.live.paused {
		b.live.mu.Unlock()
		return
	}
	b.live.paused, b.live.minority = false, ""
	b.live.mu.Unlock()
	b.mu.RLock()
	serve := !b.appStopped && !b.stopping
	b.mu.RUnlock()
	b.log.Info("a majority of the cluster is reachable again: accepting client connections", "reachable", up, "nodes", of)
	if !serve {
		return
	}
	if err := b.Start(); err != nil {
		b.log.Error("could not reopen the AMQP listeners after a minority pause; run warrenctl stop_app and start_app", "err", err)
	}
}

// QuorumCritical reports whether stopping this node would leave the
// definitions' group without a majority of its members up (counting this
// node and the members it is connected to), with those counts. A
// standalone node or a one-node cluster is never critical.
func (b *Broker) QuorumCritical() (critical bool, up, of int) {
	cn := b.cluster
	if cn == nil || len(cn.list()) < 2 {
		return false, 1, 1
	}
	up, of = cn.reachable()
	return (up-1)*2 <= of, up, of
}
