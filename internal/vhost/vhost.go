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
// Lock order: declMu → mu → queue locks. Publish holds mu for reading only
// while routing; queues are published to after it is released.
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

	replyTo sync.Map // amq.rabbitmq.reply-to.* name → func(*queue.Message) bool

	store  queue.Store   // persistent messages of durable queues (nil: none)
	pager  queue.Store   // transient messages paged out under memory pressure
	memory *queue.Memory // the node's budget for message bodies in memory

	counters *Counters // queue churn (nil: not counted)
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
		name:      name,
		meta:      meta,
		log:       log.With("vhost", name),
		exchanges: make(map[string]*Exchange),
		queues:    make(map[string]*queue.Queue),
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
		delete(v.exchanges, c.Name)
		for _, x := range v.exchanges {
			for _, b := range x.Router.Bindings() {
				if b.DestIsExchange && b.Destination == c.Name {
					x.Router.Unbind(b)
				}
			}
		}
		v.mu.Unlock()
	case metadata.OpDeclareQueue:
		d := c.Queue
		v.mu.Lock()
		if _, ok := v.queues[d.Name]; !ok {
			var st queue.Store
			if d.Durable {
				st = v.store
			}
			q := queue.New(queue.Config{VHost: v.name, Name: d.Name, Durable: d.Durable, Exclusive: d.Exclusive, AutoDelete: d.AutoDelete, Owner: d.Owner, Args: d.Arguments, Policy: v.policyFor(d.Name, "queues"), Store: st, Pager: v.pager, Memory: v.memory})
			q.OnUnused = v.autoDelete
			q.OnExpire = v.autoDelete
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
		for _, x := range v.exchanges {
			for _, b := range x.Router.Bindings() {
				if !b.DestIsExchange && b.Destination == c.Name {
					x.Router.Unbind(b)
				}
			}
		}
		v.mu.Unlock()
		if q != nil {
			v.churn().QueueDeleted.Add(1)
			_, _ = q.Delete(false, false)
		}
	case metadata.OpBind, metadata.OpUnbind:
		b := c.Binding
		v.mu.Lock()
		if x := v.exchanges[b.Source]; x != nil {
			eb := exchange.Binding{Destination: b.Destination, DestIsExchange: b.DestinationType == "exchange", Key: b.RoutingKey, Args: b.Arguments}
			if c.Op == metadata.OpBind {
				x.Router.Bind(eb)
			} else {
				x.Router.Unbind(eb)
			}
		}
		v.mu.Unlock()
	case metadata.OpSetPolicy, metadata.OpClearPolicy:
		v.applyPolicies()
	case metadata.OpDeleteVHost:
		v.mu.Lock()
		qs := v.queues
		v.queues = map[string]*queue.Queue{}
		v.exchanges = map[string]*Exchange{}
		v.deleted = true
		v.mu.Unlock()
		for _, q := range qs {
			_, _ = q.Delete(false, false)
		}
	}
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
