// Package vhost maps names to exchanges, queues and bindings inside one
// virtual host, routes published messages, and checks a user's permissions
// on every operation.
//
// Definitions change only through metadata commands: a declaration is
// validated here, proposed to the metadata Store, and the runtime objects
// are created when the committed command is applied (Apply). On a cluster
// the same Apply runs on every node.
//
//	v := vhost.New("/", store, logger)      // store observers call v.Apply
//	s := v.Session("guest", matcher)        // a connection's view
//	n, err := s.Publish("amq.direct", "key", msg)
//
// Lock order: declMu → mu → Exchange.rmu → queue locks. Publish holds mu
// for reading only to look names up, and routes holding just the
// exchange's rmu, so a slow route does not stall declares; queues are
// published to after both are released.
package vhost

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"sync"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/exchange"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/queue"
)

// Exchange is an exchange's runtime form.
type Exchange struct {
	Def       metadata.Exchange
	Kind      exchange.Kind
	Router    exchange.Router
	Alternate string
	// rmu guards Router so that routing runs without the vhost lock:
	// Apply changes a router holding both VHost.mu and rmu; Publish routes
	// holding only rmu (a slow route delays binds to that exchange, not
	// the vhost's declares).
	rmu sync.RWMutex
}

// destKey names a binding destination.
type destKey struct {
	name string
	isX  bool
}

// srcBinding is a binding seen from its destination.
type srcBinding struct {
	source string
	b      exchange.Binding
}

func bindingKey(source string, b exchange.Binding) string {
	return source + "\x00" + b.Key + "\x00" + fmt.Sprint(b.Args)
}

// VHost is one virtual host's runtime state.
type VHost struct {
	name string
	meta *metadata.Store
	log  *slog.Logger

	declMu sync.Mutex // serialises validate-then-propose of declarations

	mu        sync.RWMutex
	exchanges map[string]*Exchange
	queues    map[string]*queue.Queue
	deleted   bool
	// bindingsTo indexes bindings by destination, so deleting a queue or
	// exchange touches only its own bindings (not every binding of every
	// exchange: 20,000 exclusive queues on one fanout took minutes).
	bindingsTo map[destKey]map[string]srcBinding

	replyTo sync.Map // amq.rabbitmq.reply-to.* name → func(*queue.Message) bool

	store  queue.Store   // persistent messages of durable queues (nil: none)
	pager  queue.Store   // transient messages paged out under memory pressure
	memory *queue.Memory // the node's budget for message bodies in memory

	counters *Counters // queue churn (nil: not counted)

	// node is this node's name in a cluster ("" standalone). A queue
	// whose definition names another home node is kept here as a
	// definition (for routing) that never holds a message: publishing to
	// it, consuming from it, getting and purging go to its home through
	// fwd (internal/forward).
	node   string
	remote sync.Map  // *queue.Queue → its home node's name
	fwd    Forwarder // reaches other nodes' queues (nil: refused)
	placer Placer    // picks new queues' homes (nil: this node)

	// replicated gives the store of a replicated queue (a definition with
	// a consensus group) whose home is this node (SetReplicated).
	replicated func(d metadata.Queue) (queue.Store, error)
}

// SetReplicated sets where replicated queues (quorum queues) keep their
// messages: fn returns this node's replica of the queue's consensus
// group. Call before the first command is applied.
func (v *VHost) SetReplicated(fn func(d metadata.Queue) (queue.Store, error)) { v.replicated = fn }

// replicatedStore is d's store, or one refusing every message when the
// replica could not be started (publishes are nacked, never dropped
// silently).
func (v *VHost) replicatedStore(d metadata.Queue) queue.Store {
	st, err := v.replicated(d)
	if err != nil {
		v.log.Error("a replicated queue's replica could not start: publishes to it are refused; fix the cause and restart the node", "queue", d.Name, "err", err)
		return refusingStore{err}
	}
	return st
}

// refusingStore refuses every message with err.
type refusingStore struct{ err error }

func (s refusingStore) Enqueue(string, *queue.Message, int64) (uint64, error) { return 0, s.err }
func (refusingStore) Remove(string, []uint64)                                 {}
func (refusingStore) Delivered(string, []uint64)                              {}
func (s refusingStore) Load([]uint64, func(int, *queue.Message)) error        { return s.err }

// SetNode makes the vhost part of clustered node name: queues it declares
// record name as their home. Call before the first command is applied.
func (v *VHost) SetNode(name string) { v.node = name }

// remoteHome returns the home node of q when it is another node.
func (v *VHost) remoteHome(q *queue.Queue) (string, bool) {
	if v.node == "" {
		return "", false
	}
	h, ok := v.remote.Load(q)
	if !ok {
		return "", false
	}
	return h.(string), true
}

// RemoteHome returns the home node of queue name when it is a queue of
// another node of the cluster.
func (v *VHost) RemoteHome(name string) (string, bool) {
	q := v.LookupQueue(name)
	if q == nil {
		return "", false
	}
	return v.remoteHome(q)
}

// SetStore sets where queues created from now on keep messages: the
// durable store (persistent messages of durable queues), the pager
// (anything else, under memory pressure) and the node's memory budget.
// Any of them may be nil.
func (v *VHost) SetStore(s, pager queue.Store, mem *queue.Memory) {
	v.store, v.pager, v.memory = s, pager, mem
}

// New returns an empty vhost; Apply fills it from committed commands.
func New(name string, meta *metadata.Store, log *slog.Logger) *VHost {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &VHost{
		name:       name,
		meta:       meta,
		log:        log.With("vhost", name),
		exchanges:  make(map[string]*Exchange),
		queues:     make(map[string]*queue.Queue),
		bindingsTo: make(map[destKey]map[string]srcBinding),
	}
}

// Name returns the vhost name.
func (v *VHost) Name() string { return v.name }

// DefaultExchanges are the exchanges every vhost starts with.
var DefaultExchanges = []metadata.Exchange{
	{Name: "", Type: "direct", Durable: true},
	{Name: "amq.direct", Type: "direct", Durable: true},
	{Name: "amq.fanout", Type: "fanout", Durable: true},
	{Name: "amq.topic", Type: "topic", Durable: true},
	{Name: "amq.headers", Type: "headers", Durable: true},
	{Name: "amq.match", Type: "headers", Durable: true},
	{Name: "amq.rabbitmq.trace", Type: "topic", Durable: true, Internal: true},
}

// Apply updates the runtime for a committed command of this vhost.
func (v *VHost) Apply(c metadata.Command) {
	switch c.Op {
	case metadata.OpDeclareExchange:
		x := c.Exchange
		kind, _ := exchange.ParseKind(x.Type)
		v.mu.Lock()
		if _, ok := v.exchanges[x.Name]; !ok {
			alt, _ := x.Arguments["alternate-exchange"].(string)
			v.exchanges[x.Name] = &Exchange{Def: *x, Kind: kind, Router: exchange.NewRouter(kind), Alternate: alt}
		}
		v.mu.Unlock()
	case metadata.OpDeleteExchange:
		v.mu.Lock()
		v.deleteExchangeLocked(c.Name)
		v.mu.Unlock()
	case metadata.OpDeclareQueue:
		d := c.Queue
		v.mu.Lock()
		if _, ok := v.queues[d.Name]; !ok {
			var st queue.Store
			if d.Durable {
				st = v.store
			}
			local := v.node == "" || d.Node == "" || d.Node == v.node
			replicated := d.Group != 0 && local && v.replicated != nil && v.node == ""
			if replicated {
				st = v.replicatedStore(*d)
			}
			// a clustered node's replicated queue starts as a definition
			// only, like another node's queue: it becomes live on the node
			// leading its group (SetReplicatedHome)
			clusteredReplica := d.Group != 0 && v.node != ""
			if clusteredReplica {
				st = nil
			}
			q := queue.New(queue.Config{VHost: v.name, Name: d.Name, Durable: d.Durable, Exclusive: d.Exclusive, AutoDelete: d.AutoDelete, Owner: d.Owner, Args: d.Arguments, Policy: v.policyFor(d.Name, "queues"), Store: st, Pager: v.pager, Memory: v.memory, PersistAll: replicated})
			if clusteredReplica {
				v.remote.Store(q, NoLeaderYet)
			} else if v.node != "" && d.Node != "" && d.Node != v.node {
				// another node's queue: its home decides expiry and
				// auto-delete, this copy never holds a message
				v.remote.Store(q, d.Node)
			} else {
				q.OnUnused = v.autoDelete
				q.OnExpire = v.autoDelete
			}
			q.OnDeadLetter = v.deadLetter
			q.Start()
			v.queues[d.Name] = q
			v.churn().QueueCreated.Add(1)
		}
		v.mu.Unlock()
	case metadata.OpDeleteQueue:
		v.mu.Lock()
		q := v.queues[c.Name]
		delete(v.queues, c.Name)
		v.unbindAllTo(destKey{c.Name, false})
		v.mu.Unlock()
		if q != nil {
			v.remote.Delete(q)
			v.churn().QueueDeleted.Add(1)
			_, _ = q.Delete(false, false)
		}
	case metadata.OpBind, metadata.OpUnbind:
		b := c.Binding
		v.mu.Lock()
		if x := v.exchanges[b.Source]; x != nil {
			eb := exchange.Binding{Destination: b.Destination, DestIsExchange: b.DestinationType == "exchange", Key: b.RoutingKey, Args: b.Arguments}
			x.rmu.Lock()
			if c.Op == metadata.OpBind {
				if x.Router.Bind(eb) {
					v.index(b.Source, eb)
				}
			} else if x.Router.Unbind(eb) {
				v.unindex(b.Source, eb)
			}
			x.rmu.Unlock()
		}
		v.mu.Unlock()
	case metadata.OpSetPolicy, metadata.OpClearPolicy:
		v.applyPolicies()
	}
	if len(c.AutoDeleted) > 0 {
		// auto-delete exchanges that lost their last binding as a source
		// (decided by the definitions' Apply, so every node agrees)
		v.mu.Lock()
		for _, name := range c.AutoDeleted {
			v.deleteExchangeLocked(name)
		}
		v.mu.Unlock()
	}
	switch c.Op {
	case metadata.OpDeleteVHost:
		v.mu.Lock()
		qs := v.queues
		v.queues = map[string]*queue.Queue{}
		v.exchanges = map[string]*Exchange{}
		v.bindingsTo = map[destKey]map[string]srcBinding{}
		v.deleted = true
		v.mu.Unlock()
		for _, q := range qs {
			_, _ = q.Delete(false, false)
		}
	}
}

// index records a binding of source under its destination. v.mu held.
func (v *VHost) index(source string, b exchange.Binding) {
	k := destKey{b.Destination, b.DestIsExchange}
	m := v.bindingsTo[k]
	if m == nil {
		m = map[string]srcBinding{}
		v.bindingsTo[k] = m
	}
	m[bindingKey(source, b)] = srcBinding{source: source, b: b}
}

// unindex forgets a binding. v.mu held.
func (v *VHost) unindex(source string, b exchange.Binding) {
	k := destKey{b.Destination, b.DestIsExchange}
	if m := v.bindingsTo[k]; m != nil {
		delete(m, bindingKey(source, b))
		if len(m) == 0 {
			delete(v.bindingsTo, k)
		}
	}
}

// unbindAllTo removes every binding to a destination. v.mu held.
func (v *VHost) unbindAllTo(k destKey) {
	for _, sb := range v.bindingsTo[k] {
		if x := v.exchanges[sb.source]; x != nil {
			x.rmu.Lock()
			x.Router.Unbind(sb.b)
			x.rmu.Unlock()
		}
	}
	delete(v.bindingsTo, k)
}

// boundTo reports whether any binding has the destination. v.mu held.
func (v *VHost) boundTo(k destKey) bool { return len(v.bindingsTo[k]) > 0 }

// deleteExchangeLocked removes an exchange with its own bindings and the
// exchange-to-exchange bindings it is the destination of. v.mu held.
func (v *VHost) deleteExchangeLocked(name string) {
	if x := v.exchanges[name]; x != nil {
		for _, b := range x.Router.Bindings() {
			v.unindex(name, b)
		}
	}
	delete(v.exchanges, name)
	v.unbindAllTo(destKey{name, true})
}

func (v *VHost) autoDelete(q *queue.Queue) {
	v.declMu.Lock()
	defer v.declMu.Unlock()
	v.mu.RLock()
	cur := v.queues[q.Name()]
	v.mu.RUnlock()
	if cur != q {
		return
	}
	if err := v.meta.Propose(metadata.Command{Op: metadata.OpDeleteQueue, VHost: v.name, Name: q.Name()}); err != nil {
		v.log.Error("auto-delete of queue failed", "queue", q.Name(), "err", err)
	}
}

// Queues returns a snapshot of the queues.
func (v *VHost) Queues() []*queue.Queue {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]*queue.Queue, 0, len(v.queues))
	for _, q := range v.queues {
		out = append(out, q)
	}
	return out
}

// Bindings lists the bindings the vhost routes by (runtime objects), as
// definitions.
func (v *VHost) Bindings() []metadata.Binding {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []metadata.Binding
	for name, x := range v.exchanges {
		x.rmu.RLock()
		for _, b := range x.Router.Bindings() {
			t := "queue"
			if b.DestIsExchange {
				t = "exchange"
			}
			out = append(out, metadata.Binding{VHost: v.name, Source: name, Destination: b.Destination, DestinationType: t, RoutingKey: b.Key, Arguments: b.Args})
		}
		x.rmu.RUnlock()
	}
	return out
}

// LookupQueue returns the named queue or nil.
func (v *VHost) LookupQueue(name string) *queue.Queue {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.queues[name]
}

// Exchanges returns a snapshot of the exchanges.
func (v *VHost) Exchanges() []*Exchange {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]*Exchange, 0, len(v.exchanges))
	for _, x := range v.exchanges {
		out = append(out, x)
	}
	return out
}

func genQueueName() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "amq.gen-" + base64.RawURLEncoding.EncodeToString(b[:])
}

func (v *VHost) errf(code uint16, m amqp.Method, format string, args ...any) *amqp.Error {
	var cid, mid uint16
	if m != nil {
		cid, mid = m.ClassID(), m.MethodID()
	}
	return amqp.NewError(code, cid, mid, format, args...)
}

func (v *VHost) notFound(m amqp.Method, kind, name string) *amqp.Error {
	return v.errf(amqp.NotFound, m, "no %s '%s' in vhost '%s'", kind, name, v.name)
}

func fmtArg(x any) string {
	switch y := x.(type) {
	case nil:
		return "none"
	case []byte:
		return string(y)
	}
	return fmt.Sprint(x)
}
