package vhost

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/queue"
)

// testEnv is a vhost "vh" over an in-memory metadata store, wired as the
// broker wires it: every committed command reaches VHost.Apply, and
// permission changes move a generation counter sessions watch.
type testEnv struct {
	meta *metadata.Store
	v    *VHost
	gen  atomic.Uint64
}

const testVHost = "vh"

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{meta: metadata.NewStore(metadata.NewLocalLog())}
	e.v = New(testVHost, e.meta, nil)
	e.meta.Observe(func(c metadata.Command) {
		switch c.Op {
		case metadata.OpAddVHost, metadata.OpPutUser, metadata.OpDeleteUser:
			e.gen.Add(1)
			return
		case metadata.OpSetPermissions, metadata.OpClearPermissions:
			e.gen.Add(1)
			return
		}
		e.v.Apply(c)
	})
	e.propose(t, metadata.Command{Op: metadata.OpAddVHost, VHost: testVHost})
	for _, x := range DefaultExchanges {
		x.VHost = testVHost
		e.v.Apply(metadata.Command{Op: metadata.OpDeclareExchange, Exchange: &x})
	}
	e.setPerms(t, "alice", ".*", ".*", ".*")
	return e
}

func (e *testEnv) propose(t *testing.T, c metadata.Command) {
	t.Helper()
	if err := e.meta.Propose(c); err != nil {
		t.Fatalf("propose %s: %v", c.Op, err)
	}
}

func (e *testEnv) setPerms(t *testing.T, user, conf, write, read string) {
	t.Helper()
	e.propose(t, metadata.Command{Op: metadata.OpPutUser, User: &metadata.User{Name: user}})
	e.propose(t, metadata.Command{Op: metadata.OpSetPermissions, Permission: &metadata.Permission{User: user, VHost: testVHost, Configure: conf, Write: write, Read: read}})
}

// session returns user's view, reading permissions from the store as the
// broker does.
func (e *testEnv) session(user string) *Session {
	return e.v.SessionWith(user, PermissionSource{
		Generation: e.gen.Load,
		Permissions: func() *auth.Matcher {
			var p metadata.Permission
			var ok bool
			e.meta.Read(func(st *metadata.State) { p, ok = st.Permissions[[2]string{user, testVHost}] })
			if !ok {
				return nil
			}
			m, err := auth.CompilePermission(auth.Permission{Configure: p.Configure, Write: p.Write, Read: p.Read})
			if err != nil {
				panic(err)
			}
			return m
		},
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr checks err is an *amqp.Error with exactly this code, class,
// method and text.
func wantErr(t *testing.T, err error, code, class, method uint16, text string) {
	t.Helper()
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		t.Fatalf("got error %v, want AMQP %d %q", err, code, text)
	}
	if ae.Code != code || ae.ClassID != class || ae.MethodID != method || ae.Text != text {
		t.Fatalf("got AMQP %d (%d,%d) %q\nwant AMQP %d (%d,%d) %q", ae.Code, ae.ClassID, ae.MethodID, ae.Text, code, class, method, text)
	}
	if ae.Hard() {
		t.Fatalf("AMQP %d is a connection error; vhost operations fail with channel errors", ae.Code)
	}
}

func declareQ(t *testing.T, s *Session, name string, args amqp.Table) {
	t.Helper()
	got, _, _, err := s.DeclareQueue(&amqp.QueueDeclare{Queue: name, Arguments: args}, 1)
	must(t, err)
	if got != name {
		t.Fatalf("declared %q, got name %q", name, got)
	}
}

func declareX(t *testing.T, s *Session, name, kind string, args amqp.Table) {
	t.Helper()
	must(t, s.DeclareExchange(&amqp.ExchangeDeclare{Exchange: name, Type: kind, Arguments: args}))
}

func bindQ(t *testing.T, s *Session, q, x, key string, args amqp.Table) {
	t.Helper()
	must(t, s.BindQueue(&amqp.QueueBind{Queue: q, Exchange: x, RoutingKey: key, Arguments: args}, 1))
}

func msg(t *testing.T, x, key, body string, headers amqp.Table) *queue.Message {
	t.Helper()
	var props []byte
	if headers != nil {
		p := amqp.Properties{Headers: headers}
		var err error
		props, err = p.Append(nil)
		must(t, err)
	}
	return &queue.Message{Exchange: x, RoutingKey: key, Body: []byte(body), Props: props}
}

// ready returns the ready counts of the named queues.
func (e *testEnv) ready(t *testing.T, names ...string) []int {
	t.Helper()
	out := make([]int, len(names))
	for i, n := range names {
		q := e.v.LookupQueue(n)
		if q == nil {
			t.Fatalf("queue %q does not exist", n)
		}
		out[i], _, _ = q.Counts()
	}
	return out
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// publishRoutes publishes one message and checks how many queues took it
// and the ready counts of qs afterwards.
func (e *testEnv) publishRoutes(t *testing.T, s *Session, m *queue.Message, wantQueues int, qs []string, want []int) {
	t.Helper()
	r, err := s.Publish(m.Exchange, m.RoutingKey, m)
	must(t, err)
	if r.Queues != wantQueues || r.Rejected {
		t.Fatalf("publish to %q/%q: routed to %d queues (rejected %v), want %d", m.Exchange, m.RoutingKey, r.Queues, r.Rejected, wantQueues)
	}
	if got := e.ready(t, qs...); !equalInts(got, want) {
		t.Fatalf("publish to %q/%q: ready counts of %v = %v, want %v", m.Exchange, m.RoutingKey, qs, got, want)
	}
}

func TestRoutingByExchangeType(t *testing.T) {
	e := newTestEnv(t)
	s := e.session("alice")
	qs := []string{"q1", "q2", "q3"}
	for _, q := range qs {
		declareQ(t, s, q, nil)
	}
	// default exchange: by queue name only
	e.publishRoutes(t, s, msg(t, "", "q2", "a", nil), 1, qs, []int{0, 1, 0})
	e.publishRoutes(t, s, msg(t, "", "nope", "a", nil), 0, qs, []int{0, 1, 0})

	// direct
	bindQ(t, s, "q1", "amq.direct", "k1", nil)
	bindQ(t, s, "q3", "amq.direct", "k1", nil)
	bindQ(t, s, "q2", "amq.direct", "k2", nil)
	e.publishRoutes(t, s, msg(t, "amq.direct", "k1", "b", nil), 2, qs, []int{1, 1, 1})
	e.publishRoutes(t, s, msg(t, "amq.direct", "k3", "b", nil), 0, qs, []int{1, 1, 1})

	// fanout ignores the key
	bindQ(t, s, "q1", "amq.fanout", "ignored", nil)
	bindQ(t, s, "q2", "amq.fanout", "", nil)
	e.publishRoutes(t, s, msg(t, "amq.fanout", "whatever", "c", nil), 2, qs, []int{2, 2, 1})

	// topic: * is one word, # zero or more
	bindQ(t, s, "q1", "amq.topic", "a.*.c", nil)
	bindQ(t, s, "q2", "amq.topic", "a.#", nil)
	bindQ(t, s, "q3", "amq.topic", "#.z", nil)
	e.publishRoutes(t, s, msg(t, "amq.topic", "a.b.c", "d", nil), 2, qs, []int{3, 3, 1})
	e.publishRoutes(t, s, msg(t, "amq.topic", "a.b.b.c", "d", nil), 1, qs, []int{3, 4, 1})
	e.publishRoutes(t, s, msg(t, "amq.topic", "z", "d", nil), 1, qs, []int{3, 4, 2})
	e.publishRoutes(t, s, msg(t, "amq.topic", "b.c", "d", nil), 0, qs, []int{3, 4, 2})

	// headers: x-match all / any
	bindQ(t, s, "q1", "amq.headers", "", amqp.Table{"x-match": "all", "a": "1", "b": "2"})
	bindQ(t, s, "q2", "amq.headers", "", amqp.Table{"x-match": "any", "a": "1", "b": "2"})
	e.publishRoutes(t, s, msg(t, "amq.headers", "", "h", amqp.Table{"a": "1"}), 1, qs, []int{3, 5, 2})
	e.publishRoutes(t, s, msg(t, "amq.headers", "", "h", amqp.Table{"a": "1", "b": "2"}), 2, qs, []int{4, 6, 2})
	e.publishRoutes(t, s, msg(t, "amq.headers", "", "h", amqp.Table{"a": "2"}), 0, qs, []int{4, 6, 2})
	e.publishRoutes(t, s, msg(t, "amq.headers", "", "h", nil), 0, qs, []int{4, 6, 2})

	// a queue bound twice to one exchange gets one copy
	bindQ(t, s, "q3", "amq.direct", "k2", nil)
	bindQ(t, s, "q3", "amq.direct", "k2b", nil)
	e.publishRoutes(t, s, msg(t, "amq.direct", "k2", "x", nil), 2, qs, []int{4, 7, 3})

	// the body arrives intact at the queue
	d, ok := e.v.LookupQueue("q1").Get(true)
	if !ok || string(d.Msg.Body) != "a" && string(d.Msg.Body) != "b" {
		t.Fatalf("q1 head: ok=%v body %q", ok, d.Msg.Body)
	}
	if string(d.Msg.Body) != "b" {
		t.Fatalf("q1's first message is %q, want %q (the first publish reaching it)", d.Msg.Body, "b")
	}
}

func TestExchangeToExchangeAndAlternate(t *testing.T) {
	e := newTestEnv(t)
	s := e.session("alice")
	qs := []string{"orders", "audit", "unrouted"}
	for _, q := range qs {
		declareQ(t, s, q, nil)
	}
	declareX(t, s, "ae", "fanout", nil)
	bindQ(t, s, "unrouted", "ae", "", nil)
	declareX(t, s, "front", "topic", amqp.Table{"alternate-exchange": "ae"})
	declareX(t, s, "back", "direct", nil)
	must(t, s.BindExchange(&amqp.ExchangeBind{Destination: "back", Source: "front", RoutingKey: "order.*"}))
	bindQ(t, s, "orders", "back", "order.new", nil)
	bindQ(t, s, "audit", "front", "#", nil)

	// front → audit directly, and front → back → orders
	e.publishRoutes(t, s, msg(t, "front", "order.new", "1", nil), 2, qs, []int{1, 1, 0})
	// front → back matches, back has no binding for order.old: only audit
	e.publishRoutes(t, s, msg(t, "front", "order.old", "2", nil), 1, qs, []int{1, 2, 0})

	// with audit unbound, an unroutable message goes to the alternate
	must(t, s.UnbindQueue(&amqp.QueueUnbind{Queue: "audit", Exchange: "front", RoutingKey: "#"}, 1))
	e.publishRoutes(t, s, msg(t, "front", "misc", "3", nil), 1, qs, []int{1, 2, 1})
	d, ok := e.v.LookupQueue("unrouted").Get(true)
	if !ok || string(d.Msg.Body) != "3" || d.Msg.RoutingKey != "misc" {
		t.Fatalf("unrouted: ok=%v body %q key %q, want body 3 key misc", ok, d.Msg.Body, d.Msg.RoutingKey)
	}
	// routed messages never reach the alternate
	e.publishRoutes(t, s, msg(t, "front", "order.new", "4", nil), 1, qs, []int{2, 2, 0})

	// exchange.unbind cuts the path
	must(t, s.UnbindExchange(&amqp.ExchangeUnbind{Destination: "back", Source: "front", RoutingKey: "order.*"}))
	e.publishRoutes(t, s, msg(t, "front", "order.new", "5", nil), 1, qs, []int{2, 2, 1})
}

func TestDeclareErrors(t *testing.T) {
	e := newTestEnv(t)
	s := e.session("alice")

	_, _, _, err := s.DeclareQueue(&amqp.QueueDeclare{Queue: "missing", Passive: true}, 1)
	wantErr(t, err, amqp.NotFound, 50, 10, "NOT_FOUND - no queue 'missing' in vhost 'vh'")
	err = s.DeclareExchange(&amqp.ExchangeDeclare{Exchange: "missingx", Passive: true})
	wantErr(t, err, amqp.NotFound, 40, 10, "NOT_FOUND - no exchange 'missingx' in vhost 'vh'")

	_, _, _, err = s.DeclareQueue(&amqp.QueueDeclare{Queue: "d", Durable: true}, 1)
	must(t, err)
	_, _, _, err = s.DeclareQueue(&amqp.QueueDeclare{Queue: "d"}, 1)
	wantErr(t, err, amqp.PreconditionFailed, 50, 10, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'd' in vhost 'vh': received 'false' but current is 'true'")
	declareQ(t, s, "ttl", amqp.Table{"x-message-ttl": int32(1000)})
	_, _, _, err = s.DeclareQueue(&amqp.QueueDeclare{Queue: "ttl", Arguments: amqp.Table{"x-message-ttl": int32(2000)}}, 1)
	wantErr(t, err, amqp.PreconditionFailed, 50, 10, "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'ttl' in vhost 'vh': received '2000' but current is '1000'")
	// the same value in another integer width is equivalent
	declareQ(t, s, "ttl", amqp.Table{"x-message-ttl": int64(1000)})
	err = s.DeclareExchange(&amqp.ExchangeDeclare{Exchange: "", Type: "direct"})
	wantErr(t, err, amqp.AccessRefused, 40, 10, "ACCESS_REFUSED - operation not permitted on the default exchange")
	declareX(t, s, "x", "direct", nil)
	err = s.DeclareExchange(&amqp.ExchangeDeclare{Exchange: "x", Type: "fanout"})
	wantErr(t, err, amqp.PreconditionFailed, 40, 10, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost 'vh': received 'fanout' but current is 'direct'")

	// exclusive queue of connection 1, used from connection 2
	_, _, _, err = s.DeclareQueue(&amqp.QueueDeclare{Queue: "ex", Exclusive: true}, 1)
	must(t, err)
	locked := "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'ex' in vhost 'vh'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
	_, _, _, err = s.DeclareQueue(&amqp.QueueDeclare{Queue: "ex", Exclusive: true}, 2)
	wantErr(t, err, amqp.ResourceLocked, 50, 10, locked)
	_, _, _, err = s.DeclareQueue(&amqp.QueueDeclare{Queue: "ex", Passive: true}, 2)
	wantErr(t, err, amqp.ResourceLocked, 50, 10, locked)
	_, err = s.QueueFor(&amqp.BasicConsume{}, "ex", 2)
	wantErr(t, err, amqp.ResourceLocked, 60, 20, locked)
	_, err = s.QueueFor(&amqp.BasicGet{}, "ex", 2)
	wantErr(t, err, amqp.ResourceLocked, 60, 70, locked)
	if _, err = s.QueueFor(&amqp.BasicConsume{}, "ex", 1); err != nil {
		t.Fatalf("the owner consuming from its exclusive queue: %v", err)
	}
	// the owner's connection closing deletes it
	s.ConnectionClosed(1)
	if q := e.v.LookupQueue("ex"); q != nil {
		t.Fatal("exclusive queue survived its connection")
	}
	if q := e.v.LookupQueue("d"); q == nil {
		t.Fatal("a non-exclusive queue was deleted with the connection")
	}

	_, _, _, err = s.DeclareQueue(&amqp.QueueDeclare{Queue: "amq.mine"}, 1)
	wantErr(t, err, amqp.AccessRefused, 50, 10, "ACCESS_REFUSED - queue name 'amq.mine' contains reserved prefix 'amq.*'")

	// binding to missing things
	err = s.BindQueue(&amqp.QueueBind{Queue: "d", Exchange: "nox"}, 1)
	wantErr(t, err, amqp.NotFound, 50, 20, "NOT_FOUND - no exchange 'nox' in vhost 'vh'")
	err = s.BindQueue(&amqp.QueueBind{Queue: "noq", Exchange: "x"}, 1)
	wantErr(t, err, amqp.NotFound, 50, 20, "NOT_FOUND - no queue 'noq' in vhost 'vh'")
	// unbinding something missing is unbind-ok (RabbitMQ 3.10)
	must(t, s.UnbindQueue(&amqp.QueueUnbind{Queue: "noq", Exchange: "nox"}, 1))
	_, err = s.Publish("nox", "", msg(t, "nox", "", "b", nil))
	wantErr(t, err, amqp.NotFound, 60, 40, "NOT_FOUND - no exchange 'nox' in vhost 'vh'")
}

func TestDeleteMissingIsOk(t *testing.T) {
	e := newTestEnv(t)
	s := e.session("alice")
	n, err := s.DeleteQueue(&amqp.QueueDelete{Queue: "never"}, 1)
	if err != nil || n != 0 {
		t.Fatalf("delete of a missing queue: n=%d err=%v, want delete-ok 0", n, err)
	}
	must(t, s.DeleteExchange(&amqp.ExchangeDelete{Exchange: "never"}))

	declareQ(t, s, "q", nil)
	e.publishRoutes(t, s, msg(t, "", "q", "1", nil), 1, []string{"q"}, []int{1})
	e.publishRoutes(t, s, msg(t, "", "q", "2", nil), 1, []string{"q"}, []int{2})
	_, err = s.DeleteQueue(&amqp.QueueDelete{Queue: "q", IfEmpty: true}, 1)
	wantErr(t, err, amqp.PreconditionFailed, 50, 40, "PRECONDITION_FAILED - queue 'q' in vhost 'vh' is not empty")
	n, err = s.DeleteQueue(&amqp.QueueDelete{Queue: "q"}, 1)
	if err != nil || n != 2 {
		t.Fatalf("delete: n=%d err=%v, want 2 messages", n, err)
	}
	if e.v.LookupQueue("q") != nil {
		t.Fatal("queue still there after delete-ok")
	}
	err = s.DeleteExchange(&amqp.ExchangeDelete{Exchange: "amq.direct"})
	wantErr(t, err, amqp.AccessRefused, 40, 20, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost 'vh' not allowed")
}

func TestPermissionDenied(t *testing.T) {
	e := newTestEnv(t)
	admin := e.session("alice")
	declareQ(t, admin, "shared", nil)
	declareX(t, admin, "logs", "fanout", nil)
	// bob may configure and read only bob-*, write only logs
	e.setPerms(t, "bob", "^bob-.*", "^logs$", "^bob-.*")
	s := e.session("bob")

	_, _, _, err := s.DeclareQueue(&amqp.QueueDeclare{Queue: "shared"}, 7)
	wantErr(t, err, amqp.AccessRefused, 50, 10, "ACCESS_REFUSED - access to queue 'shared' in vhost 'vh' refused for user 'bob'")
	declareQ(t, s, "bob-q", nil)
	_, err = s.QueueFor(&amqp.BasicConsume{}, "shared", 7)
	wantErr(t, err, amqp.AccessRefused, 60, 20, "ACCESS_REFUSED - access to queue 'shared' in vhost 'vh' refused for user 'bob'")
	_, err = s.Publish("", "shared", msg(t, "", "shared", "x", nil))
	wantErr(t, err, amqp.AccessRefused, 60, 40, "ACCESS_REFUSED - access to exchange 'amq.default' in vhost 'vh' refused for user 'bob'")
	if _, err = s.Publish("logs", "", msg(t, "logs", "", "x", nil)); err != nil {
		t.Fatalf("publish to logs, which bob may write: %v", err)
	}
	// bind needs write on the queue: bob cannot write bob-q
	err = s.BindQueue(&amqp.QueueBind{Queue: "bob-q", Exchange: "logs"}, 7)
	wantErr(t, err, amqp.AccessRefused, 50, 20, "ACCESS_REFUSED - access to queue 'bob-q' in vhost 'vh' refused for user 'bob'")
	err = s.DeleteExchange(&amqp.ExchangeDelete{Exchange: "logs"})
	wantErr(t, err, amqp.AccessRefused, 40, 20, "ACCESS_REFUSED - access to exchange 'logs' in vhost 'vh' refused for user 'bob'")

	// a permission change reaches the open session at once
	e.setPerms(t, "bob", "^bob-.*", "", "^bob-.*")
	_, err = s.Publish("logs", "", msg(t, "logs", "", "x", nil))
	wantErr(t, err, amqp.AccessRefused, 60, 40, "ACCESS_REFUSED - access to exchange 'logs' in vhost 'vh' refused for user 'bob'")
	e.propose(t, metadata.Command{Op: metadata.OpClearPermissions, Name: "bob", VHost: testVHost})
	_, _, _, err = s.DeclareQueue(&amqp.QueueDeclare{Queue: "bob-2"}, 7)
	wantErr(t, err, amqp.AccessRefused, 50, 10, "ACCESS_REFUSED - access to queue 'bob-2' in vhost 'vh' refused for user 'bob'")
}

func TestAutoDeleteExchangeGoesWithLastBinding(t *testing.T) {
	e := newTestEnv(t)
	s := e.session("alice")
	declareQ(t, s, "a", nil)
	declareQ(t, s, "b", nil)
	must(t, s.DeclareExchange(&amqp.ExchangeDeclare{Exchange: "ad", Type: "direct", AutoDelete: true}))
	// never bound: stays
	if e.v.lookupExchange("ad") == nil {
		t.Fatal("auto-delete exchange gone before it had a binding")
	}
	bindQ(t, s, "a", "ad", "k", nil)
	bindQ(t, s, "b", "ad", "k", nil)
	must(t, s.UnbindQueue(&amqp.QueueUnbind{Queue: "a", Exchange: "ad", RoutingKey: "k"}, 1))
	if e.v.lookupExchange("ad") == nil {
		t.Fatal("auto-delete exchange deleted while a binding remains")
	}
	// deleting the last bound queue removes the last binding
	_, err := s.DeleteQueue(&amqp.QueueDelete{Queue: "b"}, 1)
	must(t, err)
	if e.v.lookupExchange("ad") != nil {
		t.Fatal("auto-delete exchange survived losing its last binding")
	}
	var inState bool
	e.meta.Read(func(st *metadata.State) { _, inState = st.Exchanges[[2]string{testVHost, "ad"}] })
	if inState {
		t.Fatal("auto-delete exchange still in the definitions")
	}
	err = s.DeclareExchange(&amqp.ExchangeDeclare{Exchange: "ad", Passive: true})
	wantErr(t, err, amqp.NotFound, 40, 10, "NOT_FOUND - no exchange 'ad' in vhost 'vh'")
}

func deathOf(t *testing.T, m *queue.Message) amqp.Table {
	t.Helper()
	p, err := amqp.DecodeProperties(m.Props)
	must(t, err)
	deaths, _ := p.Headers["x-death"].([]any)
	if len(deaths) != 1 {
		t.Fatalf("x-death = %#v, want one entry", p.Headers["x-death"])
	}
	d, _ := deaths[0].(amqp.Table)
	return d
}

func TestDeadLetterOnReject(t *testing.T) {
	e := newTestEnv(t)
	s := e.session("alice")
	declareX(t, s, "dlx", "direct", nil)
	declareQ(t, s, "dlq", nil)
	bindQ(t, s, "dlq", "dlx", "dead", nil)
	declareQ(t, s, "work", amqp.Table{"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "dead"})
	e.publishRoutes(t, s, msg(t, "", "work", "payload", nil), 1, []string{"work", "dlq"}, []int{1, 0})
	q := e.v.LookupQueue("work")
	d, ok := q.Get(false)
	if !ok {
		t.Fatal("basic.get found nothing")
	}
	// requeue does not dead-letter
	q.Requeue(d.ID)
	if got := e.ready(t, "work", "dlq"); !equalInts(got, []int{1, 0}) {
		t.Fatalf("after requeue: %v, want [1 0]", got)
	}
	d, _ = q.Get(false)
	q.Discard(d.ID)
	if got := e.ready(t, "work", "dlq"); !equalInts(got, []int{0, 1}) {
		t.Fatalf("after reject: %v, want [0 1]", got)
	}
	dd, ok := e.v.LookupQueue("dlq").Get(true)
	if !ok || string(dd.Msg.Body) != "payload" || dd.Msg.Exchange != "dlx" || dd.Msg.RoutingKey != "dead" {
		t.Fatalf("dead letter: ok=%v body %q exchange %q key %q", ok, dd.Msg.Body, dd.Msg.Exchange, dd.Msg.RoutingKey)
	}
	x := deathOf(t, dd.Msg)
	if x["reason"] != "rejected" || x["queue"] != "work" || x["exchange"] != "" || x["count"] != int64(1) {
		t.Fatalf("x-death = %#v", x)
	}
	if rks, _ := x["routing-keys"].([]any); len(rks) != 1 || rks[0] != "work" {
		t.Fatalf("x-death routing-keys = %#v, want [work]", x["routing-keys"])
	}
}

func TestDeadLetterOnExpiry(t *testing.T) {
	e := newTestEnv(t)
	s := e.session("alice")
	declareX(t, s, "dlx", "fanout", nil)
	declareQ(t, s, "dlq", nil)
	bindQ(t, s, "dlq", "dlx", "", nil)
	declareQ(t, s, "short", amqp.Table{"x-message-ttl": int32(5), "x-dead-letter-exchange": "dlx"})
	declareQ(t, s, "plain", amqp.Table{"x-message-ttl": int32(5)}) // no DLX: expired messages are dropped
	_, err := s.Publish("", "short", msg(t, "", "short", "old", nil))
	must(t, err)
	_, err = s.Publish("", "plain", msg(t, "", "plain", "old", nil))
	must(t, err)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := e.ready(t, "short", "dlq", "plain")
		if equalInts(got, []int{0, 1, 0}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ready counts of short, dlq, plain = %v, want [0 1 0]", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	dd, _ := e.v.LookupQueue("dlq").Get(true)
	x := deathOf(t, dd.Msg)
	if x["reason"] != "expired" || x["queue"] != "short" || dd.Msg.RoutingKey != "short" {
		t.Fatalf("x-death = %#v, routing key %q", x, dd.Msg.RoutingKey)
	}
}
