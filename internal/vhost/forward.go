package vhost

import (
	"errors"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/queue"
)

// Forwarder reaches queues whose home is another node of the cluster
// (internal/forward, ADR 0005). Routing happens on the publisher's node
// (every node has the bindings); the messages, consumers, gets and acks
// of a queue go to its home.
type Forwarder interface {
	// Up reports whether node home is reachable now.
	Up(home string) bool
	// Queue returns a handle on queue name of vhost at node home.
	Queue(home, vhost, name string) (queue.Handle, error)
	// Publish sends msg to the named queues of vhost at node home; the
	// Pending resolves with their answer.
	Publish(home, vhost string, queues []string, msg *queue.Message) *queue.Pending
	// PublishReplyTo sends a reply to direct reply-to name key, handed
	// out by node home.
	PublishReplyTo(home, vhost, key string, msg *queue.Message) *queue.Pending
	// Purge empties a queue at home and returns how many it dropped.
	Purge(home, vhost, name string) (int, error)
	// Counts returns a queue's ready, unacked and consumer counts.
	Counts(home, vhost, name string) (ready, unacked, consumers int, err error)
}

// Placer picks the home of a new queue for a queue-master-locator
// ("min-masters", "random"; RabbitMQ 3.10's names): a running node's
// name, or "" for this node.
type Placer func(locator string) string

// SetPlacer makes the vhost place new queues with p. Call before clients
// use the vhost.
func (v *VHost) SetPlacer(p Placer) { v.placer = p }

// home picks the home of a queue being declared: this node unless its
// x-queue-master-locator argument, or else its queue-master-locator
// policy, asks for another strategy ("client-local" is this node, as are
// exclusive queues, which live with their connection).
func (v *VHost) home(name string, args amqp.Table, exclusive bool) string {
	if v.node == "" || v.placer == nil || exclusive {
		return v.node
	}
	loc, _ := args["x-queue-master-locator"].(string)
	if loc == "" {
		loc, _ = v.policyFor(name, "queues")["queue-master-locator"].(string)
	}
	if loc == "" || loc == "client-local" {
		return v.node
	}
	if h := v.placer(loc); h != "" {
		return h
	}
	return v.node
}

// ErrHomeDown is what a Forwarder returns when a queue's home node
// cannot be reached.
var ErrHomeDown = errors.New("home node down")

// SetForwarder makes the vhost reach other nodes' queues through f.
// Call before clients use the vhost.
func (v *VHost) SetForwarder(f Forwarder) { v.fwd = f }

// LocalQueue returns queue name when this node is its home (nil when it
// is missing or lives on another node).
func (v *VHost) LocalQueue(name string) *queue.Queue {
	q := v.LookupQueue(name)
	if q == nil {
		return nil
	}
	if _, remote := v.remoteHome(q); remote {
		return nil
	}
	return q
}

// LocalQueues lists the queues this node is home to.
func (v *VHost) LocalQueues() []*queue.Queue {
	qs := v.Queues()
	out := qs[:0]
	for _, q := range qs {
		if _, remote := v.remoteHome(q); !remote {
			out = append(out, q)
		}
	}
	return out
}

// homeDown is RabbitMQ 3.10's answer for a durable queue whose home node
// is down (rabbit_amqqueue:not_found_or_absent).
func (v *VHost) homeDown(m amqp.Method, q *queue.Queue, home string) error {
	kind := "durable"
	if !q.Config().Durable {
		kind = "transient"
	}
	return v.errf(amqp.NotFound, m, "home node '%s' of %s queue '%s' in vhost '%s' is down or inaccessible", home, kind, q.Config().Name, v.name)
}

// remoteCounts returns the counts of a queue of another node (zeros and
// no error when there is no forwarder).
func (v *VHost) remoteCounts(q *queue.Queue, home string, m amqp.Method) (ready, unacked, consumers int, err error) {
	if v.fwd == nil {
		return 0, 0, 0, nil
	}
	r, u, c, err := v.fwd.Counts(home, v.name, q.Config().Name)
	if err != nil {
		return 0, 0, 0, v.homeDown(m, q, home)
	}
	return r, u, c, nil
}

// publishRemote sends msg to the queues in qs that live on other nodes
// (one message per home node, naming its queues) and returns the local
// ones, in qs's storage. Queues whose home is down count in
// r.Unreachable: the message is dropped there.
func (s *Session) publishRemote(qs []*queue.Queue, msg *queue.Message, r *queue.Routed) []*queue.Queue {
	v := s.v
	local := qs[:0]
	var homes map[string][]string
	var order []string
	for _, q := range qs {
		home, remote := v.remoteHome(q)
		if !remote {
			local = append(local, q)
			continue
		}
		if v.fwd == nil || !v.fwd.Up(home) {
			r.Unreachable++
			continue
		}
		if homes == nil {
			homes = map[string][]string{}
		}
		if _, seen := homes[home]; !seen {
			order = append(order, home)
		}
		homes[home] = append(homes[home], q.Name())
	}
	clear(qs[len(local):])
	for _, home := range order {
		names := homes[home]
		r.Remote = append(r.Remote, v.fwd.Publish(home, v.name, names, msg))
		r.Queues += len(names)
	}
	return local
}
