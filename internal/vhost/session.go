package vhost

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strconv"
	"strings"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/exchange"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/queue"
)

// Session is one connection's view of a vhost: every operation is checked
// against the user's permissions. A Session is used by one goroutine (the
// connection's reader).
type Session struct {
	v      *VHost
	user   string
	perm   *auth.Matcher
	perms  *PermissionSource // nil: perm never changes
	wcache map[string]bool   // write permission per exchange
	wgen   uint64            // permission generation wcache was filled at
	dests  []exchange.Destination
	qbuf   []*queue.Queue
}

// PermissionSource gives a session its user's current permissions in the
// vhost: Generation changes whenever any permission (or user, or vhost)
// changes, and is cheap; Permissions (nil: none) is asked only when it
// moved.
type PermissionSource struct {
	Generation  func() uint64
	Permissions func() *auth.Matcher
}

// Session returns a view for user with the compiled permission perm.
func (v *VHost) Session(user string, perm *auth.Matcher) *Session {
	return &Session{v: v, user: user, perm: perm, wcache: map[string]bool{}}
}

// SessionWith returns a view for user that checks src on every operation,
// so permission changes reach open connections at once (RabbitMQ checks
// each operation; a revoked permission refuses the next one with 403).
func (v *VHost) SessionWith(user string, src PermissionSource) *Session {
	gen := src.Generation()
	return &Session{v: v, user: user, perm: src.Permissions(), perms: &src, wcache: map[string]bool{}, wgen: gen}
}

// matcher returns the current permissions; when they changed it reloads
// them and drops the write cache.
func (s *Session) matcher() *auth.Matcher {
	if s.perms == nil {
		return s.perm
	}
	if gen := s.perms.Generation(); gen != s.wgen {
		// generation first: a change landing meanwhile moves it again
		s.perm = s.perms.Permissions()
		clear(s.wcache)
		s.wgen = gen
	}
	return s.perm
}

// Name returns the vhost's name.
func (s *Session) Name() string { return s.v.name }

type permKind int

const (
	permConfigure permKind = iota
	permWrite
	permRead
)

func resourceName(name string) string {
	if name == "" {
		return "amq.default"
	}
	return name
}

func (s *Session) check(k permKind, kind, name string, m amqp.Method) error {
	res := resourceName(name)
	var ok bool
	if p := s.matcher(); p != nil {
		switch k {
		case permConfigure:
			ok = p.CanConfigure(res)
		case permWrite:
			ok = p.CanWrite(res)
		case permRead:
			ok = p.CanRead(res)
		}
	}
	if ok {
		return nil
	}
	return s.v.errf(amqp.AccessRefused, m, "access to %s '%s' in vhost '%s' refused for user '%s'", kind, res, s.v.name, s.user)
}

// ---- exchanges ----

// DeclareExchange implements exchange.declare.
func (s *Session) DeclareExchange(m *amqp.ExchangeDeclare) error {
	v := s.v
	if m.Exchange == "" {
		return v.errf(amqp.AccessRefused, m, "operation not permitted on the default exchange")
	}
	v.declMu.Lock()
	defer v.declMu.Unlock()
	v.mu.RLock()
	cur := v.exchanges[m.Exchange]
	v.mu.RUnlock()
	if m.Passive {
		if cur == nil {
			return v.notFound(m, "exchange", m.Exchange)
		}
		return nil
	}
	kind, ok := exchange.ParseKind(m.Type)
	if !ok {
		return v.errf(amqp.CommandInvalid, m, "unknown exchange type '%s'", m.Type)
	}
	if err := s.check(permConfigure, "exchange", m.Exchange, m); err != nil {
		return err
	}
	if cur != nil {
		d := cur.Def
		switch {
		case string(kind) != d.Type:
			return s.inequivalent(m, "exchange", m.Exchange, "type", m.Type, d.Type)
		case m.Durable != d.Durable:
			return s.inequivalent(m, "exchange", m.Exchange, "durable", m.Durable, d.Durable)
		case m.AutoDelete != d.AutoDelete:
			return s.inequivalent(m, "exchange", m.Exchange, "auto_delete", m.AutoDelete, d.AutoDelete)
		case m.Internal != d.Internal:
			return s.inequivalent(m, "exchange", m.Exchange, "internal", m.Internal, d.Internal)
		}
		if k, a, b, diff := argsDiff(m.Arguments, d.Arguments, nil); diff {
			return s.inequivalent(m, "exchange", m.Exchange, k, a, b)
		}
		return nil
	}
	if strings.HasPrefix(m.Exchange, "amq.") {
		return v.errf(amqp.AccessRefused, m, "exchange name '%s' contains reserved prefix 'amq.*'", m.Exchange)
	}
	if alt, ok := m.Arguments["alternate-exchange"]; ok {
		ae, isStr := alt.(string)
		if !isStr {
			return v.errf(amqp.PreconditionFailed, m, "invalid type '%s' for arg 'alternate-exchange' in exchange '%s' in vhost '%s'", typeName(alt), m.Exchange, v.name)
		}
		// rabbit_channel: declaring an exchange with an alternate exchange
		// needs read on the exchange and write on the alternate one
		if err := s.check(permRead, "exchange", m.Exchange, m); err != nil {
			return err
		}
		if err := s.check(permWrite, "exchange", ae, m); err != nil {
			return err
		}
	}
	return v.meta.Propose(metadata.Command{Op: metadata.OpDeclareExchange, Exchange: &metadata.Exchange{
		Name: m.Exchange, VHost: v.name, Type: string(kind), Durable: m.Durable, AutoDelete: m.AutoDelete, Internal: m.Internal, Arguments: plainTable(m.Arguments),
	}})
}

func (s *Session) inequivalent(m amqp.Method, kind, name, arg string, got, cur any) error {
	g, c := quoteArg(got), quoteArg(cur)
	if a, ok := amqp.IntValue(got); ok {
		if b, ok := amqp.IntValue(cur); ok {
			// same type class: RabbitMQ (rabbit_misc:assert_args_equivalence1)
			// prints the bare values, "received '2000' but current is '1000'"
			g, c = "'"+strconv.FormatInt(a, 10)+"'", "'"+strconv.FormatInt(b, 10)+"'"
		}
	}
	return s.v.errf(amqp.PreconditionFailed, m, "inequivalent arg '%s' for %s '%s' in vhost '%s': received %s but current is %s", arg, kind, name, s.v.name, g, c)
}

func quoteArg(x any) string {
	switch y := x.(type) {
	case bool:
		if y {
			return "'true'"
		}
		return "'false'"
	case string:
		return "'" + y + "'"
	case nil:
		return "none"
	}
	return "the value '" + fmtArg(x) + "'"
}

// DeleteExchange implements exchange.delete.
func (s *Session) DeleteExchange(m *amqp.ExchangeDelete) error {
	v := s.v
	if m.Exchange == "" {
		return v.errf(amqp.AccessRefused, m, "operation not permitted on the default exchange")
	}
	if strings.HasPrefix(m.Exchange, "amq.") {
		return v.errf(amqp.AccessRefused, m, "deletion of system exchange '%s' in vhost '%s' not allowed", m.Exchange, v.name)
	}
	if err := s.check(permConfigure, "exchange", m.Exchange, m); err != nil {
		return err
	}
	v.declMu.Lock()
	defer v.declMu.Unlock()
	v.mu.RLock()
	x := v.exchanges[m.Exchange]
	// a source of bindings or a destination of an exchange-to-exchange
	// binding is in use
	inUse := x != nil && (x.Router.Len() > 0 || v.boundTo(destKey{m.Exchange, true}))
	v.mu.RUnlock()
	if x == nil {
		// RabbitMQ 3.10 answers delete-ok for a missing exchange
		// (deleting is idempotent; clients' recovery relies on it).
		return nil
	}
	if m.IfUnused && inUse {
		return v.errf(amqp.PreconditionFailed, m, "exchange '%s' in vhost '%s' in use", m.Exchange, v.name)
	}
	return v.meta.Propose(metadata.Command{Op: metadata.OpDeleteExchange, VHost: v.name, Name: m.Exchange})
}

func (s *Session) bind(m amqp.Method, src, dst string, dstIsX bool, key string, args amqp.Table, unbind bool, owner uint64) error {
	v := s.v
	dkind := "queue"
	if dstIsX {
		dkind = "exchange"
	}
	if err := s.check(permWrite, dkind, dst, m); err != nil {
		return err
	}
	if err := s.check(permRead, "exchange", src, m); err != nil {
		return err
	}
	if src == "" || (dstIsX && dst == "") {
		return v.errf(amqp.AccessRefused, m, "operation not permitted on the default exchange")
	}
	v.declMu.Lock()
	defer v.declMu.Unlock()
	v.mu.RLock()
	x := v.exchanges[src]
	var dstOK bool
	var q *queue.Queue
	if dstIsX {
		dstOK = v.exchanges[dst] != nil
	} else {
		q = v.queues[dst]
		dstOK = q != nil
	}
	v.mu.RUnlock()
	if unbind && (x == nil || !dstOK) {
		// RabbitMQ 3.10 answers unbind-ok when the binding does not
		// exist, also when its source or destination does not.
		return nil
	}
	if x == nil {
		return v.notFound(m, "exchange", src)
	}
	if !dstOK {
		return v.notFound(m, dkind, dst)
	}
	if q != nil {
		if err := s.exclusiveCheck(q, owner, m); err != nil {
			return err
		}
	}
	if !unbind {
		if why := exchange.ValidateBinding(x.Kind, plainTable(args)); why != "" {
			return v.errf(amqp.PreconditionFailed, m, "%s", why)
		}
	}
	dt := "queue"
	if dstIsX {
		dt = "exchange"
	}
	op := metadata.OpBind
	if unbind {
		op = metadata.OpUnbind
	}
	return v.meta.Propose(metadata.Command{Op: op, Binding: &metadata.Binding{
		Source: src, VHost: v.name, Destination: dst, DestinationType: dt, RoutingKey: key, Arguments: plainTable(args),
	}})
}

// BindExchange implements exchange.bind.
func (s *Session) BindExchange(m *amqp.ExchangeBind) error {
	return s.bind(m, m.Source, m.Destination, true, m.RoutingKey, m.Arguments, false, 0)
}

// UnbindExchange implements exchange.unbind.
func (s *Session) UnbindExchange(m *amqp.ExchangeUnbind) error {
	return s.bind(m, m.Source, m.Destination, true, m.RoutingKey, m.Arguments, true, 0)
}

// BindQueue implements queue.bind.
func (s *Session) BindQueue(m *amqp.QueueBind, owner uint64) error {
	return s.bind(m, m.Exchange, m.Queue, false, m.RoutingKey, m.Arguments, false, owner)
}

// UnbindQueue implements queue.unbind.
func (s *Session) UnbindQueue(m *amqp.QueueUnbind, owner uint64) error {
	return s.bind(m, m.Exchange, m.Queue, false, m.RoutingKey, m.Arguments, true, owner)
}

// ---- queues ----

func (s *Session) exclusiveCheck(q *queue.Queue, owner uint64, m amqp.Method) error {
	c := q.Config()
	_, remote := s.v.remoteHome(q) // owned by a connection of another node
	if c.Exclusive && (c.Owner != owner || remote) {
		return s.v.errf(amqp.ResourceLocked, m, "cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.", c.Name, s.v.name)
	}
	return nil
}

// declared answers the declare of an existing queue with its counts,
// from its home when that is another node (404 when it is down, as
// RabbitMQ answers for a durable queue whose node is down). A declare,
// passive or not, renews an x-expires lease.
func (s *Session) declared(q *queue.Queue, name string, m amqp.Method) (string, uint32, uint32, error) {
	if home, remote := s.v.remoteHome(q); remote {
		if _, err := s.remoteCheck(q, m); err != nil {
			return "", 0, 0, err
		}
		r, _, c, err := s.v.remoteCounts(q, home, m)
		if err != nil {
			return "", 0, 0, err
		}
		return name, uint32(r), uint32(c), nil
	}
	q.Touch()
	r, _, c := q.Counts()
	return name, uint32(r), uint32(c), nil
}

// DeclareQueue implements queue.declare.
func (s *Session) DeclareQueue(m *amqp.QueueDeclare, owner uint64) (string, uint32, uint32, error) {
	v := s.v
	name := m.Queue
	v.churn().QueueDeclared.Add(1)
	v.declMu.Lock()
	defer v.declMu.Unlock()
	if name == "" {
		if m.Passive {
			return "", 0, 0, v.notFound(m, "queue", name)
		}
		name = genQueueName()
	}
	if name == ReplyTo || strings.HasPrefix(name, ReplyToPrefix) {
		// the direct reply-to pseudo-queue always exists
		return name, 0, 0, nil
	}
	v.mu.RLock()
	q := v.queues[name]
	v.mu.RUnlock()
	if m.Passive {
		if q == nil {
			return "", 0, 0, v.notFound(m, "queue", name)
		}
		if err := s.exclusiveCheck(q, owner, m); err != nil {
			return "", 0, 0, err
		}
		return s.declared(q, name, m)
	}
	if err := s.check(permConfigure, "queue", name, m); err != nil {
		return "", 0, 0, err
	}
	if q != nil {
		if err := s.exclusiveCheck(q, owner, m); err != nil {
			return "", 0, 0, err
		}
		c := q.Config()
		switch {
		case m.Durable != c.Durable:
			return "", 0, 0, s.inequivalent(m, "queue", name, "durable", m.Durable, c.Durable)
		case m.AutoDelete != c.AutoDelete:
			return "", 0, 0, s.inequivalent(m, "queue", name, "auto_delete", m.AutoDelete, c.AutoDelete)
		case m.Exclusive != c.Exclusive:
			return "", 0, 0, s.v.errf(amqp.ResourceLocked, m, "cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.", name, v.name)
		}
		if k, a, b, diff := argsDiff(dropClassicType(m.Arguments), dropClassicType(c.Args), equivalenceArgs); diff {
			return "", 0, 0, s.inequivalent(m, "queue", name, k, a, b)
		}
		return s.declared(q, name, m)
	}
	if strings.HasPrefix(name, "amq.") && m.Queue != "" {
		return "", 0, 0, v.errf(amqp.AccessRefused, m, "queue name '%s' contains reserved prefix 'amq.*'", name)
	}
	if err := validateQueueArgs(m.Arguments, name, v.name, m); err != nil {
		return "", 0, 0, err
	}
	if dlx, ok := m.Arguments["x-dead-letter-exchange"].(string); ok {
		// rabbit_channel: a dead-letter exchange needs read on the queue
		// and write on the exchange
		if err := s.check(permRead, "queue", name, m); err != nil {
			return "", 0, 0, err
		}
		if err := s.check(permWrite, "exchange", dlx, m); err != nil {
			return "", 0, 0, err
		}
	}
	def := &metadata.Queue{Name: name, VHost: v.name, Durable: m.Durable, AutoDelete: m.AutoDelete, Exclusive: m.Exclusive, Arguments: plainTable(m.Arguments), Node: v.home(name, m.Arguments, m.Exclusive)}
	if m.Exclusive {
		def.Owner = owner
	}
	if err := v.meta.Propose(metadata.Command{Op: metadata.OpDeclareQueue, Queue: def, Conditional: v.node != ""}); err != nil {
		// in a cluster, another node may have declared it a moment ago
		switch {
		case errors.Is(err, metadata.ErrInequivalent):
			return "", 0, 0, v.errf(amqp.PreconditionFailed, m, "%s", err.Error())
		case errors.Is(err, metadata.ErrLocked):
			return "", 0, 0, v.errf(amqp.ResourceLocked, m, "%s", err.Error())
		}
		return "", 0, 0, v.errf(amqp.InternalError, m, "declare failed: %v", err)
	}
	// Every queue is bound to the default exchange by its name; that
	// binding is implicit (the default exchange looks queues up directly).
	return name, 0, 0, nil
}

// lookupQueue finds queue name for an operation on its messages, with
// its home node when that is another node ("" for a local queue).
func (s *Session) lookupQueue(name string, owner uint64, m amqp.Method) (*queue.Queue, string, error) {
	s.v.mu.RLock()
	q := s.v.queues[name]
	s.v.mu.RUnlock()
	if q == nil {
		return nil, "", s.v.notFound(m, "queue", name)
	}
	home, err := s.remoteCheck(q, m)
	if err != nil {
		return nil, "", err
	}
	if err := s.exclusiveCheck(q, owner, m); err != nil {
		return nil, "", err
	}
	return q, home, nil
}

// remoteCheck returns the home of a queue that lives on another node of
// the cluster ("" for a local queue), or 404 when that node is down or
// there is no way to reach it (RabbitMQ's answer for a queue whose home
// node it cannot reach).
func (s *Session) remoteCheck(q *queue.Queue, m amqp.Method) (string, error) {
	home, ok := s.v.remoteHome(q)
	if !ok {
		return "", nil
	}
	if s.v.fwd == nil || !s.v.fwd.Up(home) {
		return "", s.v.homeDown(m, q, home)
	}
	return home, nil
}

// DeleteQueue implements queue.delete.
func (s *Session) DeleteQueue(m *amqp.QueueDelete, owner uint64) (uint32, error) {
	v := s.v
	if err := s.check(permConfigure, "queue", m.Queue, m); err != nil {
		return 0, err
	}
	v.declMu.Lock()
	defer v.declMu.Unlock()
	v.mu.RLock()
	q := v.queues[m.Queue]
	v.mu.RUnlock()
	if q == nil {
		// RabbitMQ 3.10 answers delete-ok with message_count 0 for a
		// missing queue (rabbit_channel: fun (not_found) -> {ok, 0}).
		return 0, nil
	}
	if err := s.exclusiveCheck(q, owner, m); err != nil {
		return 0, err
	}
	r, _, c := q.Counts()
	if home, remote := v.remoteHome(q); remote {
		// the counts live on the queue's home
		var err error
		if r, _, c, err = v.remoteCounts(q, home, m); err != nil {
			if m.IfUnused || m.IfEmpty {
				return 0, err
			}
			r, c = 0, 0 // deleting it needs no answer from its home
		}
	}
	if m.IfUnused && c > 0 {
		return 0, v.errf(amqp.PreconditionFailed, m, "queue '%s' in vhost '%s' in use", m.Queue, v.name)
	}
	if m.IfEmpty && r > 0 {
		return 0, v.errf(amqp.PreconditionFailed, m, "queue '%s' in vhost '%s' is not empty", m.Queue, v.name)
	}
	if err := v.meta.Propose(metadata.Command{Op: metadata.OpDeleteQueue, VHost: v.name, Name: m.Queue}); err != nil {
		return 0, v.errf(amqp.InternalError, m, "delete failed: %v", err)
	}
	return uint32(r), nil
}

// PurgeQueue implements queue.purge.
func (s *Session) PurgeQueue(m *amqp.QueuePurge, owner uint64) (uint32, error) {
	if err := s.check(permRead, "queue", m.Queue, m); err != nil {
		return 0, err
	}
	q, home, err := s.lookupQueue(m.Queue, owner, m)
	if err != nil {
		return 0, err
	}
	if home != "" {
		n, err := s.v.fwd.Purge(home, s.v.name, m.Queue)
		if err != nil {
			return 0, s.v.homeDown(m, q, home)
		}
		return uint32(n), nil
	}
	return uint32(q.Purge()), nil
}

// Queue returns a local queue for a get through the HTTP API, after the
// read check (a queue of another node: 404 naming its home).
func (s *Session) Queue(name string, owner uint64) (*queue.Queue, error) {
	m := &amqp.BasicGet{}
	if err := s.check(permRead, "queue", name, m); err != nil {
		return nil, err
	}
	q, home, err := s.lookupQueue(name, owner, m)
	if err != nil {
		return nil, err
	}
	if home != "" {
		return nil, s.v.errf(amqp.NotFound, m, "queue '%s' in vhost '%s' lives on node %s: get its messages through that node's API", name, s.v.name, home)
	}
	return q, nil
}

// QueueFor returns the queue for basic.consume or basic.get (m), after
// the read check: the queue itself, or a handle on it at its home node.
// Errors name m's class and method.
func (s *Session) QueueFor(m amqp.Method, name string, owner uint64) (queue.Handle, error) {
	if err := s.check(permRead, "queue", name, m); err != nil {
		return nil, err
	}
	q, home, err := s.lookupQueue(name, owner, m)
	if err != nil {
		return nil, err
	}
	if home != "" {
		h, err := s.v.fwd.Queue(home, s.v.name, name)
		if err != nil {
			return nil, s.v.homeDown(m, q, home)
		}
		return h, nil
	}
	return q, nil
}

// ConnectionClosed deletes the exclusive queues owner declared.
func (s *Session) ConnectionClosed(owner uint64) {
	v := s.v
	v.mu.RLock()
	var names []string
	for n, q := range v.queues {
		if c := q.Config(); c.Exclusive && c.Owner == owner {
			if _, remote := v.remoteHome(q); remote {
				continue // another node's connection owns it
			}
			names = append(names, n)
		}
	}
	v.mu.RUnlock()
	if len(names) == 0 {
		return
	}
	// one queue at a time: other connections' declares get the lock in
	// between instead of waiting for thousands of deletions
	for _, n := range names {
		v.declMu.Lock()
		v.mu.RLock()
		q := v.queues[n]
		v.mu.RUnlock()
		if q != nil && q.Config().Exclusive && q.Config().Owner == owner {
			if err := v.meta.Propose(metadata.Command{Op: metadata.OpDeleteQueue, VHost: v.name, Name: n}); err != nil {
				v.log.Error("deleting exclusive queue failed", "queue", n, "err", err)
			}
		}
		v.declMu.Unlock()
	}
}

// ---- publishing ----

var publishMethod = &amqp.BasicPublish{}

// CanPublish checks that the exchange exists and the user may write to it.
func (s *Session) CanPublish(name string) error {
	s.v.mu.RLock()
	x := s.v.exchanges[name]
	s.v.mu.RUnlock()
	return s.canPublish(name, x)
}

func (s *Session) canPublish(name string, x *Exchange) error {
	if x == nil {
		return s.v.notFound(publishMethod, "exchange", name)
	}
	if s.perms != nil {
		s.matcher() // drops the cache if permissions changed
	}
	ok, cached := s.wcache[name]
	if !cached {
		ok = s.check(permWrite, "exchange", name, publishMethod) == nil
		if len(s.wcache) > 1024 {
			clear(s.wcache)
		}
		s.wcache[name] = ok
	}
	if !ok {
		return s.check(permWrite, "exchange", name, publishMethod)
	}
	if x.Def.Internal {
		return s.v.errf(amqp.AccessRefused, publishMethod, "cannot publish to internal exchange '%s' in vhost '%s'", name, s.v.name)
	}
	return nil
}

// Publish routes msg and enqueues it on every matching queue. It returns
// how many queues took it and whether any refused it (reject-publish).
func (s *Session) Publish(exName, key string, msg *queue.Message) (queue.Routed, error) {
	v := s.v
	if len(key) > 255 {
		// only a non-AMQP entry (HTTP) can carry one; it could not be
		// delivered (routing-key is a short string)
		return queue.Routed{}, v.errf(amqp.PreconditionFailed, publishMethod, "routing key of %d bytes is longer than 255 bytes", len(key))
	}
	v.mu.RLock()
	x := v.exchanges[exName]
	if err := s.canPublish(exName, x); err != nil {
		v.mu.RUnlock()
		return queue.Routed{}, err
	}
	qs := s.qbuf[:0]
	if exName == "" && strings.HasPrefix(key, ReplyToPrefix) {
		v.mu.RUnlock()
		if home := ReplyToNode(key); v.node != "" && home != "" && home != v.node {
			// the requester is a client of another node
			if v.fwd == nil || !v.fwd.Up(home) {
				return queue.Routed{Unreachable: 1}, nil
			}
			return queue.Routed{Queues: 1, Remote: []*queue.Pending{v.fwd.PublishReplyTo(home, v.name, key, msg)}}, nil
		}
		if v.DeliverReplyTo(key, msg) {
			return queue.Routed{Queues: 1}, nil
		}
		return queue.Routed{}, nil
	}
	if exName == "" {
		if q := v.queues[key]; q != nil {
			qs = append(qs, q)
		}
		v.mu.RUnlock()
	} else {
		// route without the vhost lock: declares and other publishes go on
		// while a slow route runs
		v.mu.RUnlock()
		var headers map[string]any
		qs = v.route(x, key, msg, &headers, qs, 0, &s.dests)
		if len(qs) == 0 && x.Alternate != "" {
			if ax := v.lookupExchange(x.Alternate); ax != nil {
				qs = v.route(ax, key, msg, &headers, qs, 0, &s.dests)
			}
		}
	}
	var r queue.Routed
	if v.node != "" {
		qs = s.publishRemote(qs, msg, &r)
	}
	for i, q := range qs {
		res, ref := q.Publish(msg)
		switch res {
		case queue.Enqueued:
			r.Queues++
		case queue.Rejected:
			r.Rejected = true
		}
		r.WaitFor = max(r.WaitFor, ref)
		qs[i] = nil
	}
	s.qbuf = qs[:0]
	return r, nil
}

// route appends the queues x routes key to, following exchange-to-exchange
// bindings (each exchange visited once) and alternate exchanges of
// exchanges reached that way. Call it without v.mu: it takes the
// exchange's router lock to route and v.mu only to look names up.
func (v *VHost) route(x *Exchange, key string, msg *queue.Message, headers *map[string]any, out []*queue.Queue, depth int, scratch *[]exchange.Destination) []*queue.Queue {
	if x.Kind == exchange.Headers && *headers == nil {
		*headers = map[string]any{}
		if msg != nil {
			if p, err := amqp.DecodeProperties(msg.Props); err == nil && p.Headers != nil {
				*headers = plainTable(p.Headers)
			}
		}
	}
	x.rmu.RLock()
	dests := x.Router.Route(key, *headers, (*scratch)[:0])
	x.rmu.RUnlock()
	*scratch = dests[:0]
	for _, d := range dests {
		if d.IsExchange {
			// the nested route calls reuse the scratch slice: keep a copy
			dests = append([]exchange.Destination(nil), dests...)
			break
		}
	}
	var visited map[string]bool
	var seen map[*queue.Queue]struct{} // de-duplication once out is large
	var next []*Exchange
	v.mu.RLock()
	for _, d := range dests {
		if !d.IsExchange {
			q := v.queues[d.Name]
			if q == nil {
				continue
			}
			if seen == nil && len(out) > 32 {
				seen = make(map[*queue.Queue]struct{}, 2*len(dests))
				for _, o := range out {
					seen[o] = struct{}{}
				}
			}
			if seen != nil {
				if _, dup := seen[q]; dup {
					continue
				}
				seen[q] = struct{}{}
			} else if containsQueue(out, q) {
				continue
			}
			out = append(out, q)
			continue
		}
		if depth > 32 {
			continue
		}
		if visited == nil {
			visited = map[string]bool{x.Def.Name: true}
		}
		if visited[d.Name] {
			continue
		}
		visited[d.Name] = true
		if nx := v.exchanges[d.Name]; nx != nil {
			next = append(next, nx)
		}
	}
	v.mu.RUnlock()
	for _, nx := range next {
		before := len(out)
		out = v.route(nx, key, msg, headers, out, depth+1, scratch)
		if len(out) == before && nx.Alternate != "" {
			if ax := v.lookupExchange(nx.Alternate); ax != nil && !visited[ax.Def.Name] {
				out = v.route(ax, key, msg, headers, out, depth+1, scratch)
			}
		}
	}
	return out
}

// lookupExchange returns the named exchange or nil.
func (v *VHost) lookupExchange(name string) *Exchange {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.exchanges[name]
}

func containsQueue(qs []*queue.Queue, q *queue.Queue) bool {
	for _, x := range qs {
		if x == q {
			return true
		}
	}
	return false
}

// plainTable converts an AMQP table to map[string]any (nested tables too).
func plainTable(t amqp.Table) map[string]any {
	if t == nil {
		return nil
	}
	out := make(map[string]any, len(t))
	for k, v := range t {
		out[k] = plainValue(v)
	}
	return out
}

func plainValue(v any) any {
	switch x := v.(type) {
	case amqp.Table:
		return plainTable(x)
	case []any:
		o := make([]any, len(x))
		for i := range x {
			o[i] = plainValue(x[i])
		}
		return o
	}
	return v
}

// dropClassicType returns args without x-queue-type when it is 'classic':
// a queue declared without the argument is a classic queue, and RabbitMQ
// 3.10 takes a redeclaration with x-queue-type 'classic' as equivalent.
func dropClassicType[T ~map[string]any](args T) T {
	if v, ok := args["x-queue-type"]; !ok || fmtArg(v) != "classic" {
		return args
	}
	out := make(T, len(args))
	for k, v := range args {
		if k != "x-queue-type" {
			out[k] = v
		}
	}
	return out
}

// argsDiff compares declared arguments with the current ones. With only
// non-nil, just those keys are compared (RabbitMQ compares a fixed set for
// queues). It returns the first differing key and both values.
func argsDiff(got amqp.Table, cur map[string]any, only map[string]bool) (string, any, any, bool) {
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range cur {
		keys[k] = true
	}
	for k := range keys {
		if only != nil && !only[k] {
			continue
		}
		a, b := normalise(got[k]), normalise(cur[k])
		if !reflect.DeepEqual(a, b) {
			return k, got[k], cur[k], true
		}
	}
	return "", nil, nil, false
}

func normalise(v any) any {
	if n, ok := amqp.IntValue(v); ok {
		return n
	}
	switch x := v.(type) {
	case []byte:
		return string(x)
	case amqp.Table:
		return plainTable(x)
	}
	return v
}

// ReplyTo is the direct reply-to pseudo-queue; ReplyToPrefix starts the
// per-channel names it hands out.
const (
	ReplyTo       = "amq.rabbitmq.reply-to"
	ReplyToPrefix = ReplyTo + "."
)

// ReplyToTag is the node part of the direct reply-to names a clustered
// node hands out: its name, base64url-encoded (names have no dots then).
func ReplyToTag(node string) string { return "w" + base64.RawURLEncoding.EncodeToString([]byte(node)) }

// ReplyToNode returns the node a direct reply-to name was handed out by
// ("" when it does not name one: a standalone node's names).
func ReplyToNode(key string) string {
	rest := strings.TrimPrefix(key, ReplyToPrefix)
	tag, _, _ := strings.Cut(rest, ".")
	if !strings.HasPrefix(tag, "w") {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(tag[1:])
	if err != nil || !strings.Contains(string(b), "@") {
		return ""
	}
	return string(b)
}

// DeliverReplyTo hands msg to the channel that registered reply name key
// on this node (false: none, or it is gone). It may wait while that
// client does not read.
func (v *VHost) DeliverReplyTo(key string, msg *queue.Message) bool {
	fn, ok := v.replyTo.Load(key)
	return ok && fn.(func(*queue.Message) bool)(msg)
}

// RegisterReplyTo implements direct reply-to registration.
func (s *Session) RegisterReplyTo(name string, deliver func(*queue.Message) bool) {
	s.v.replyTo.Store(name, deliver)
}

// UnregisterReplyTo removes a direct reply-to target.
func (s *Session) UnregisterReplyTo(name string) { s.v.replyTo.Delete(name) }
