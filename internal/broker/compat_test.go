package broker_test

// Behaviour RabbitMQ 3.10 clients rely on, checked through real clients
// (amqp091-go) and, where a client library hides the detail (class and
// method ids, the socket after close-ok), through the raw codec.
//
// Every test here runs against an in-process Warren node; with
// WARREN_COMPAT_RABBITMQ set to a RabbitMQ URL (a vhost of its own, e.g.
// amqp://guest:guest@127.0.0.1:5672/compat-h) it runs the same checks
// against that broker too, so the expectations are RabbitMQ's, not ours.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/amqp"
)

// compatTargets runs fn against Warren and, if configured, RabbitMQ.
func compatTargets(t *testing.T, fn func(t *testing.T, url string)) {
	t.Run("warren", func(t *testing.T) {
		_, u := node(t)
		fn(t, u)
	})
	if u := os.Getenv("WARREN_COMPAT_RABBITMQ"); u != "" {
		t.Run("rabbitmq", func(t *testing.T) { fn(t, u) })
	}
}

// uniq returns a name unique to this run (RabbitMQ keeps state between runs).
func uniq(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// exchangeExists declares name passively on a fresh channel.
func exchangeExists(t *testing.T, c *amqp091.Connection, name string) bool {
	t.Helper()
	ch := channel(t, c)
	err := ch.ExchangeDeclarePassive(name, "direct", false, false, false, false, nil)
	if err == nil {
		ch.Close()
		return true
	}
	amqpErr(t, err, 404, true)
	return false
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCompatAutoDeleteExchange(t *testing.T) {
	compatTargets(t, func(t *testing.T, url string) {
		c := dial(t, url)
		ch := channel(t, c)
		adx := func(name string) {
			must(t, ch.ExchangeDeclare(name, "direct", false, true, false, false, nil))
		}
		q := func(name string) {
			_, err := ch.QueueDeclare(name, false, false, true, false, nil)
			must(t, err)
		}
		gone := func(names ...string) {
			t.Helper()
			for _, n := range names {
				if exchangeExists(t, c, n) {
					t.Errorf("auto-delete exchange %s still exists", n)
				}
			}
		}
		kept := func(names ...string) {
			t.Helper()
			for _, n := range names {
				if !exchangeExists(t, c, n) {
					t.Errorf("exchange %s was deleted", n)
				}
			}
		}

		// unbinding the last binding deletes it
		x1, q1 := uniq("ad-unbind"), uniq("q")
		adx(x1)
		q(q1)
		must(t, ch.QueueBind(q1, "k", x1, false, nil))
		must(t, ch.QueueUnbind(q1, "k", x1, nil))
		gone(x1)

		// deleting the bound queue deletes it, but only with the last binding
		x2, q2a, q2b := uniq("ad-qdel"), uniq("q"), uniq("q")
		adx(x2)
		q(q2a)
		q(q2b)
		must(t, ch.QueueBind(q2a, "k", x2, false, nil))
		must(t, ch.QueueBind(q2b, "k", x2, false, nil))
		_, err := ch.QueueDelete(q2a, false, false, false)
		must(t, err)
		kept(x2)
		_, err = ch.QueueDelete(q2b, false, false, false)
		must(t, err)
		gone(x2)

		// deleting the destination exchange deletes the source
		x3, d3 := uniq("ad-src"), uniq("dst")
		adx(x3)
		must(t, ch.ExchangeDeclare(d3, "fanout", false, false, false, false, nil))
		must(t, ch.ExchangeBind(d3, "k", x3, false, nil))
		must(t, ch.ExchangeDelete(d3, false, false))
		gone(x3)

		// cascade: a -> b -> queue; deleting the queue deletes b, whose
		// binding from a goes with it, which deletes a
		a, b, q4 := uniq("ad-a"), uniq("ad-b"), uniq("q")
		adx(a)
		adx(b)
		q(q4)
		must(t, ch.ExchangeBind(b, "k", a, false, nil))
		must(t, ch.QueueBind(q4, "k", b, false, nil))
		_, err = ch.QueueDelete(q4, false, false, false)
		must(t, err)
		gone(a, b)

		// only losing a binding as the source counts: an auto-delete
		// exchange that was only a destination stays, and so does one that
		// never had a binding
		src, dst, never := uniq("src"), uniq("ad-dstonly"), uniq("ad-never")
		must(t, ch.ExchangeDeclare(src, "direct", false, false, false, false, nil))
		adx(dst)
		adx(never)
		must(t, ch.ExchangeBind(dst, "k", src, false, nil))
		must(t, ch.ExchangeUnbind(dst, "k", src, false, nil))
		kept(dst, never)
		for _, n := range []string{src, dst, never} {
			must(t, ch.ExchangeDelete(n, false, false))
		}
	})
}

func TestCompatExclusiveQueueGoneBeforeCloseOk(t *testing.T) {
	compatTargets(t, func(t *testing.T, url string) {
		c1, err := amqp091.Dial(url)
		must(t, err)
		ch1 := channel(t, c1)
		name := uniq("excl")
		_, err = ch1.QueueDeclare(name, false, false, true, false, nil)
		must(t, err)
		// Close returns once close-ok arrived: no retry, no sleep.
		must(t, c1.Close())
		ch2 := channel(t, dial(t, url))
		_, err = ch2.QueueDeclarePassive(name, false, false, true, false, nil)
		amqpErr(t, err, 404, true)
	})
}

// rawOpen dials url with the codec and opens the connection and channel 1.
func rawOpen(t *testing.T, u string) *rawClient {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	c := rawDial(t, pu.Host)
	pass, _ := pu.User.Password()
	vh := strings.TrimPrefix(pu.Path, "/")
	if vh == "" {
		vh = "/"
	}
	vh, _ = url.PathUnescape(vh)
	c.nc.Write(amqp.ProtocolHeader)
	if _, ok := c.recv().(*amqp.ConnectionStart); !ok {
		t.Fatal("no connection.start")
	}
	c.send(0, &amqp.ConnectionStartOk{ClientProperties: amqp.Table{}, Mechanism: "PLAIN", Response: "\x00" + pu.User.Username() + "\x00" + pass, Locale: "en_US"})
	if _, ok := c.recv().(*amqp.ConnectionTune); !ok {
		t.Fatal("no connection.tune")
	}
	c.send(0, &amqp.ConnectionTuneOk{ChannelMax: 10, FrameMax: 131072})
	c.send(0, &amqp.ConnectionOpen{VirtualHost: vh})
	if m, ok := c.recv().(*amqp.ConnectionOpenOk); !ok {
		t.Fatalf("no connection.open-ok: %#v", m)
	}
	c.send(1, &amqp.ChannelOpen{})
	if _, ok := c.recv().(*amqp.ChannelOpenOk); !ok {
		t.Fatal("no channel.open-ok")
	}
	return c
}

// TestCompatNoResetAfterCloseOk: after close-ok the broker keeps reading
// (and discarding) until the client hangs up, so frames the client sent
// after its connection.close never make the kernel reset the connection.
func TestCompatNoResetAfterCloseOk(t *testing.T) {
	compatTargets(t, func(t *testing.T, url string) {
		c := rawOpen(t, url)
		c.send(0, &amqp.ConnectionClose{ReplyCode: 200, ReplyText: "bye"})
		if _, ok := c.recv().(*amqp.ConnectionCloseOk); !ok {
			t.Fatal("no connection.close-ok")
		}
		// frames after close (amqplib acks or publishes in flight)
		for i := 0; i < 3; i++ {
			buf, _ := amqp.AppendMethodFrame(nil, 1, &amqp.BasicAck{DeliveryTag: uint64(i + 1)})
			if _, err := c.nc.Write(buf); err != nil {
				t.Fatalf("write after close-ok: %v", err)
			}
		}
		// the broker must still be there, waiting for us to hang up
		c.nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		var one [1]byte
		_, err := c.nc.Read(one[:])
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("broker closed the socket while the client was still sending: %v", err)
		}
		// now hang up our side: the broker closes cleanly (FIN, no RST)
		c.nc.(*net.TCPConn).CloseWrite()
		c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.nc.Read(one[:])
		if strings.HasSuffix(t.Name(), "/rabbitmq") && errors.Is(err, syscall.ECONNRESET) {
			return // RabbitMQ's sockets linger 0: every close is a reset
		}
		if !errors.Is(err, io.EOF) {
			t.Fatalf("after the client hung up, want EOF, got %v", err)
		}
	})
}

// expectClose reads until a channel.close or connection.close and checks
// its code, class and method ids and the start of its text.
func (c *rawClient) expectClose(conn bool, code, class, method uint16, text string) {
	c.t.Helper()
	for {
		switch m := c.recv().(type) {
		case *amqp.ChannelClose:
			if conn {
				c.t.Fatalf("want connection.close %d, got channel.close %d %q (%d/%d)", code, m.ReplyCode, m.ReplyText, m.ClassId, m.MethodId)
			}
			c.check(m.ReplyCode, m.ClassId, m.MethodId, m.ReplyText, code, class, method, text)
			return
		case *amqp.ConnectionClose:
			if !conn {
				c.t.Fatalf("want channel.close %d, got connection.close %d %q (%d/%d)", code, m.ReplyCode, m.ReplyText, m.ClassId, m.MethodId)
			}
			c.check(m.ReplyCode, m.ClassId, m.MethodId, m.ReplyText, code, class, method, text)
			return
		}
	}
}

func (c *rawClient) check(gc, gcl, gm uint16, gt string, code, class, method uint16, text string) {
	c.t.Helper()
	if gc != code || gcl != class || gm != method {
		c.t.Errorf("got %d (class %d, method %d) %q; want %d (class %d, method %d)", gc, gcl, gm, gt, code, class, method)
	}
	if !strings.HasPrefix(gt, text) {
		c.t.Errorf("reply text %q, want it to start with %q", gt, text)
	}
}

// TestCompatErrorsNameTheirMethod audits the class and method id every
// error names, and its scope.
func TestCompatErrorsNameTheirMethod(t *testing.T) {
	type step struct {
		m    amqp.Method
		body bool // send an empty content after m (basic.publish)
		ok   bool // expect one reply before the next step
	}
	cases := []struct {
		name         string
		steps        func(n string) []step
		conn         bool
		code, cl, mt uint16
		text         string
	}{
		{"basic.get missing queue", func(n string) []step { return []step{{m: &amqp.BasicGet{Queue: n}}} }, false, 404, 60, 70, "NOT_FOUND - no queue '"},
		{"basic.consume missing queue", func(n string) []step { return []step{{m: &amqp.BasicConsume{Queue: n}}} }, false, 404, 60, 20, "NOT_FOUND - no queue '"},
		{"basic.get empty name, none declared", func(n string) []step { return []step{{m: &amqp.BasicGet{}}} }, false, 404, 60, 70, "NOT_FOUND - no previously declared queue"},
		{"basic.consume empty name, none declared", func(n string) []step { return []step{{m: &amqp.BasicConsume{}}} }, false, 404, 60, 20, "NOT_FOUND - no previously declared queue"},
		{"queue.purge empty name, none declared", func(n string) []step { return []step{{m: &amqp.QueuePurge{}}} }, false, 404, 50, 30, "NOT_FOUND - no previously declared queue"},
		{"queue.delete empty name, none declared", func(n string) []step { return []step{{m: &amqp.QueueDelete{}}} }, false, 404, 50, 40, "NOT_FOUND - no previously declared queue"},
		{"queue.bind empty name, none declared", func(n string) []step {
			return []step{{m: &amqp.QueueBind{Exchange: "amq.direct"}}}
		}, false, 404, 50, 20, "NOT_FOUND - no previously declared queue"},
		{"queue.unbind empty name, none declared", func(n string) []step {
			return []step{{m: &amqp.QueueUnbind{Exchange: "amq.direct"}}}
		}, false, 404, 50, 50, "NOT_FOUND - no previously declared queue"},
		{"queue.declare passive missing", func(n string) []step { return []step{{m: &amqp.QueueDeclare{Queue: n, Passive: true}}} }, false, 404, 50, 10, "NOT_FOUND - no queue '"},
		{"queue.declare reserved name", func(n string) []step { return []step{{m: &amqp.QueueDeclare{Queue: "amq." + n}}} }, false, 403, 50, 10, "ACCESS_REFUSED - queue name 'amq."},
		{"queue.bind missing exchange", func(n string) []step {
			return []step{{m: &amqp.QueueDeclare{Queue: n, Exclusive: true}, ok: true}, {m: &amqp.QueueBind{Queue: n, Exchange: n}}}
		}, false, 404, 50, 20, "NOT_FOUND - no exchange '"},
		{"queue.bind missing queue", func(n string) []step { return []step{{m: &amqp.QueueBind{Queue: n, Exchange: "amq.direct"}}} }, false, 404, 50, 20, "NOT_FOUND - no queue '"},
		// RabbitMQ 3.10 answers unbind-ok whenever the binding does not
		// exist, even when its queue or exchanges do not either
		{"queue.unbind missing queue", func(n string) []step { return []step{{m: &amqp.QueueUnbind{Queue: n, Exchange: "amq.direct"}}} }, false, 0, 0, 0, ""},
		{"queue.unbind missing exchange", func(n string) []step {
			return []step{{m: &amqp.QueueDeclare{Queue: n, Exclusive: true}, ok: true}, {m: &amqp.QueueUnbind{Queue: n, Exchange: n}}}
		}, false, 0, 0, 0, ""},
		{"exchange.unbind missing source", func(n string) []step {
			return []step{{m: &amqp.ExchangeUnbind{Destination: "amq.fanout", Source: n}}}
		}, false, 0, 0, 0, ""},
		{"queue.delete missing", func(n string) []step { return []step{{m: &amqp.QueueDelete{Queue: n}}} }, false, 0, 0, 0, ""},
		{"exchange.delete missing", func(n string) []step { return []step{{m: &amqp.ExchangeDelete{Exchange: n}}} }, false, 0, 0, 0, ""},
		{"queue.purge missing", func(n string) []step { return []step{{m: &amqp.QueuePurge{Queue: n}}} }, false, 404, 50, 30, "NOT_FOUND - no queue '"},
		{"queue.bind default exchange", func(n string) []step {
			return []step{{m: &amqp.QueueDeclare{Queue: n, Exclusive: true}, ok: true}, {m: &amqp.QueueBind{Queue: n, RoutingKey: "k"}}}
		}, false, 403, 50, 20, "ACCESS_REFUSED - operation not permitted on the default exchange"},
		{"exchange.declare passive missing", func(n string) []step {
			return []step{{m: &amqp.ExchangeDeclare{Exchange: n, Type: "direct", Passive: true}}}
		}, false, 404, 40, 10, "NOT_FOUND - no exchange '"},
		{"exchange.declare reserved name", func(n string) []step {
			return []step{{m: &amqp.ExchangeDeclare{Exchange: "amq." + n, Type: "direct"}}}
		}, false, 403, 40, 10, "ACCESS_REFUSED - exchange name 'amq."},
		{"exchange.declare bad type", func(n string) []step {
			return []step{{m: &amqp.ExchangeDeclare{Exchange: n, Type: "nonsense"}}}
		}, true, 503, 40, 10, "COMMAND_INVALID - unknown exchange type 'nonsense'"},
		{"exchange.delete system exchange", func(n string) []step { return []step{{m: &amqp.ExchangeDelete{Exchange: "amq.direct"}}} }, false, 403, 40, 20, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '"},
		{"exchange.delete default exchange", func(n string) []step { return []step{{m: &amqp.ExchangeDelete{Exchange: ""}}} }, false, 403, 40, 20, "ACCESS_REFUSED - operation not permitted on the default exchange"},
		{"exchange.bind missing source", func(n string) []step {
			return []step{{m: &amqp.ExchangeBind{Destination: "amq.fanout", Source: n}}}
		}, false, 404, 40, 30, "NOT_FOUND - no exchange '"},
		{"exchange.unbind missing destination", func(n string) []step {
			return []step{{m: &amqp.ExchangeUnbind{Destination: n, Source: "amq.fanout"}}}
		}, false, 0, 0, 0, ""},
		{"basic.publish missing exchange", func(n string) []step { return []step{{m: &amqp.BasicPublish{Exchange: n}, body: true}} }, false, 404, 60, 40, "NOT_FOUND - no exchange '"},
		{"basic.ack unknown tag", func(n string) []step { return []step{{m: &amqp.BasicAck{DeliveryTag: 7}}} }, false, 406, 60, 80, "PRECONDITION_FAILED - unknown delivery tag 7"},
		{"basic.reject unknown tag", func(n string) []step { return []step{{m: &amqp.BasicReject{DeliveryTag: 7}}} }, false, 406, 60, 90, "PRECONDITION_FAILED - unknown delivery tag 7"},
		{"basic.nack unknown tag", func(n string) []step { return []step{{m: &amqp.BasicNack{DeliveryTag: 7}}} }, false, 406, 60, 120, "PRECONDITION_FAILED - unknown delivery tag 7"},
		{"basic.qos prefetch_size", func(n string) []step { return []step{{m: &amqp.BasicQos{PrefetchSize: 10}}} }, true, 540, 60, 10, "NOT_IMPLEMENTED - prefetch_size!=0 (10)"},
		{"basic.consume reused tag", func(n string) []step {
			return []step{
				{m: &amqp.QueueDeclare{Queue: n, Exclusive: true}, ok: true},
				{m: &amqp.BasicConsume{Queue: n, ConsumerTag: "t"}, ok: true},
				{m: &amqp.BasicConsume{Queue: n, ConsumerTag: "t"}},
			}
		}, true, 530, 60, 20, "NOT_ALLOWED - attempt to reuse consumer tag 't'"},
		{"queue.delete if-unused", func(n string) []step {
			return []step{
				{m: &amqp.QueueDeclare{Queue: n, Exclusive: true}, ok: true},
				{m: &amqp.BasicConsume{Queue: n, ConsumerTag: "t"}, ok: true},
				{m: &amqp.QueueDelete{Queue: n, IfUnused: true}},
			}
		}, false, 406, 50, 40, "PRECONDITION_FAILED - queue '"},
		{"tx.commit not transactional", func(n string) []step { return []step{{m: &amqp.TxCommit{}}} }, false, 406, 90, 20, "PRECONDITION_FAILED - channel is not transactional"},
		{"tx.rollback not transactional", func(n string) []step { return []step{{m: &amqp.TxRollback{}}} }, false, 406, 90, 30, "PRECONDITION_FAILED - channel is not transactional"},
		{"tx.select in confirm mode", func(n string) []step {
			return []step{{m: &amqp.ConfirmSelect{}, ok: true}, {m: &amqp.TxSelect{}}}
		}, false, 406, 90, 10, "PRECONDITION_FAILED - cannot switch from confirm to tx mode"},
		{"confirm.select in tx mode", func(n string) []step {
			return []step{{m: &amqp.TxSelect{}, ok: true}, {m: &amqp.ConfirmSelect{}}}
		}, false, 406, 85, 10, "PRECONDITION_FAILED - cannot switch from tx to confirm mode"},
		{"exchange.bind to the default exchange", func(n string) []step {
			return []step{{m: &amqp.ExchangeBind{Destination: "", Source: "amq.direct", RoutingKey: "k"}}}
		}, false, 403, 40, 30, "ACCESS_REFUSED - operation not permitted on the default exchange"},
		{"queue.bind headers bad x-match", func(n string) []step {
			return []step{
				{m: &amqp.QueueDeclare{Queue: n, Exclusive: true}, ok: true},
				{m: &amqp.QueueBind{Queue: n, Exchange: "amq.headers", Arguments: amqp.Table{"x-match": "some"}}},
			}
		}, false, 406, 50, 20, "PRECONDITION_FAILED - Invalid x-match field value <<\"some\">>; expected all, any, all-with-x, or any-with-x"},
		{"basic.recover requeue=false", func(n string) []step { return []step{{m: &amqp.BasicRecover{Requeue: false}}} }, true, 540, 60, 110, "NOT_IMPLEMENTED - requeue=false"},
		{"channel.flow active=false", func(n string) []step { return []step{{m: &amqp.ChannelFlow{Active: false}}} }, true, 540, 20, 20, "NOT_IMPLEMENTED - active=false"},
		{"queue.declare unknown x-queue-type", func(n string) []step {
			return []step{{m: &amqp.QueueDeclare{Queue: n, Exclusive: true, Arguments: amqp.Table{"x-queue-type": "bogus"}}}}
		}, false, 406, 50, 10, "PRECONDITION_FAILED - "},
	}
	compatTargets(t, func(t *testing.T, url string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := rawOpen(t, url)
				name := uniq("audit")
				for _, s := range tc.steps(name) {
					c.send(1, s.m)
					if s.body {
						buf := amqp.AppendHeaderFrame(nil, 1, 60, 0, nil)
						c.nc.Write(buf)
					}
					if s.ok {
						m := c.recv()
						if _, bad := m.(*amqp.ChannelClose); bad {
							t.Fatalf("setup step %s failed: %#v", s.m.Name(), m)
						}
					}
				}
				if tc.code == 0 {
					// success: the method's -ok, then a probe shows the
					// channel is still open
					m := c.recv()
					if _, bad := m.(*amqp.ChannelClose); bad {
						t.Fatalf("want success, got %#v", m)
					}
					if _, bad := m.(*amqp.ConnectionClose); bad {
						t.Fatalf("want success, got %#v", m)
					}
					if d, ok := m.(*amqp.QueueDeleteOk); ok && d.MessageCount != 0 {
						t.Fatalf("queue.delete-ok of a missing queue with message_count %d", d.MessageCount)
					}
					return
				}
				c.expectClose(tc.conn, tc.code, tc.cl, tc.mt, tc.text)
			})
		}
	})
}

// TestCompatEmptyQueueNameMeansLastDeclared: in queue.bind, queue.unbind,
// queue.purge, queue.delete, basic.get and basic.consume the empty queue
// name is the queue last declared on the channel (and an empty binding key
// with it is that queue's name).
func TestCompatEmptyQueueNameMeansLastDeclared(t *testing.T) {
	compatTargets(t, func(t *testing.T, url string) {
		c := dial(t, url)
		ch := channel(t, c)
		must(t, ch.Confirm(false))
		conf := ch.NotifyPublish(make(chan amqp091.Confirmation, 8))
		q, err := ch.QueueDeclare("", false, false, true, false, nil)
		must(t, err)
		// queue.bind "" with key "" binds the last queue by its own name
		must(t, ch.QueueBind("", "", "amq.direct", false, nil))
		publish(t, ch, "amq.direct", q.Name, "one")
		publish(t, ch, "amq.direct", q.Name, "two")
		for i := 0; i < 2; i++ {
			if c := <-conf; !c.Ack {
				t.Fatal("publish nacked")
			}
		}
		m, ok, err := ch.Get("", true)
		must(t, err)
		if !ok || string(m.Body) != "one" {
			t.Fatalf("basic.get \"\": %v %q", ok, m.Body)
		}
		n, err := ch.QueuePurge("", false)
		must(t, err)
		if n != 1 {
			t.Fatalf("queue.purge \"\" purged %d, want 1", n)
		}
		must(t, ch.QueueUnbind("", "", "amq.direct", nil))
		publish(t, ch, "amq.direct", q.Name, "unrouted")
		if c := <-conf; !c.Ack {
			t.Fatal("publish nacked")
		}
		d, err := ch.Consume("", "c1", true, false, false, false, nil)
		must(t, err)
		publish(t, ch, "", q.Name, "three")
		if m := recv(t, d); string(m.Body) != "three" {
			t.Fatalf("basic.consume \"\" got %q (the unbound publish must not arrive)", m.Body)
		}
		must(t, ch.Cancel("c1", false))
		publish(t, ch, "", q.Name, "four")
		if c := <-conf; !c.Ack {
			t.Fatal("publish nacked")
		}
		if _, err := ch.QueueDelete("", false, false, false); err != nil {
			t.Fatal(err)
		}
		ch2 := channel(t, c)
		_, err = ch2.QueueDeclarePassive(q.Name, false, false, true, false, nil)
		amqpErr(t, err, 404, true)
	})
}

// TestCompatQueueTypes: classic is accepted; quorum and stream are refused
// with 406 and a text saying what to declare instead.
func TestCompatQueueTypes(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	if _, err := ch.QueueDeclare(uniq("classic"), true, false, false, false, amqp091.Table{"x-queue-type": "classic"}); err != nil {
		t.Fatalf("x-queue-type classic refused: %v", err)
	}
	if _, err := ch.QueueDeclare(uniq("quorum"), true, false, false, false, amqp091.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatalf("x-queue-type quorum refused: %v", err)
	}
	for _, typ := range []string{"stream"} {
		ch := channel(t, c)
		_, err := ch.QueueDeclare(uniq(typ), true, false, false, false, amqp091.Table{"x-queue-type": typ})
		e := amqpErr(t, err, 406, true)
		if !strings.Contains(e.Reason, typ+" queues are not") || !strings.Contains(e.Reason, "as a classic queue") {
			t.Errorf("x-queue-type %s: reply %q does not say what to use instead", typ, e.Reason)
		}
	}
}

// TestCompatChannelFlowStopRefused: RabbitMQ 3.10 closes the connection
// with 540 NOT_IMPLEMENTED on channel.flow(active=false); active=true is
// answered.
func TestCompatChannelFlowStopRefused(t *testing.T) {
	compatTargets(t, func(t *testing.T, url string) {
		c := dial(t, url)
		ch := channel(t, c)
		must(t, ch.Flow(true))
		closed := c.NotifyClose(make(chan *amqp091.Error, 1))
		err := ch.Flow(false)
		amqpErr(t, err, 540, true)
		if e := waitClose(t, closed); e == nil || e.Code != 540 || e.Reason != "NOT_IMPLEMENTED - active=false" {
			t.Fatalf("connection close: %v", e)
		}
	})
}

// TestCompatQueueArgumentErrors: the reasons for bad queue arguments are
// RabbitMQ's, word for word after the queue's name.
func TestCompatQueueArgumentErrors(t *testing.T) {
	cases := []struct {
		args amqp091.Table
		want string // the reply text's end
	}{
		{amqp091.Table{"x-max-priority": int32(300)}, "{max_value_exceeded,300}"},
		{amqp091.Table{"x-max-priority": int32(-1)}, "{value_negative,-1}"},
		{amqp091.Table{"x-expires": int32(0)}, "{value_zero,0}"},
		{amqp091.Table{"x-expires": int32(-5)}, "{value_negative,-5}"},
		{amqp091.Table{"x-message-ttl": "10"}, `"expected integer, got longstr"`},
		{amqp091.Table{"x-message-ttl": int64(400_000_000_000)}, "{value_too_large,400000000000}"},
		{amqp091.Table{"x-max-length": int32(-1)}, "{value_negative,-1}"},
		{amqp091.Table{"x-overflow": "nope"}, "invalid_overflow"},
		{amqp091.Table{"x-queue-mode": "eager"}, `"unsupported queue mode 'eager'"`},
		{amqp091.Table{"x-queue-type": "foo"}, `"unsupported queue type 'foo'"`},
		{amqp091.Table{"x-single-active-consumer": "yes"}, "{unacceptable_type,longstr}"},
		{amqp091.Table{"x-dead-letter-routing-key": "k"}, "routing_key_but_no_dlx_defined"},
		{amqp091.Table{"x-queue-version": int32(3)}, `"unsupported queue version '3'"`},
	}
	compatTargets(t, func(t *testing.T, url string) {
		c := dial(t, url)
		for _, tc := range cases {
			ch := channel(t, c)
			_, err := ch.QueueDeclare(uniq("args"), false, true, false, false, tc.args)
			e := amqpErr(t, err, 406, true)
			if !strings.HasSuffix(e.Reason, "': "+tc.want) {
				t.Errorf("%v: reply %q, want it to end with %q", tc.args, e.Reason, tc.want)
			}
		}
		// whole texts where RabbitMQ words them differently
		for _, tc := range []struct {
			args amqp091.Table
			want string // the text before and after the queue name
		}{
			{amqp091.Table{"x-dead-letter-exchange": int32(3)}, "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue '"},
			{amqp091.Table{"x-max-age": "1D"}, "PRECONDITION_FAILED - invalid arg 'x-max-age' for queue '"},
			{amqp091.Table{"x-delivery-limit": int32(3)}, "PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue '"},
		} {
			ch := channel(t, c)
			_, err := ch.QueueDeclare(uniq("args"), false, true, false, false, tc.args)
			e := amqpErr(t, err, 406, true)
			if !strings.HasPrefix(e.Reason, tc.want) {
				t.Errorf("%v: reply %q, want it to start with %q", tc.args, e.Reason, tc.want)
			}
		}
		ch := channel(t, c)
		q := uniq("cons")
		_, err := ch.QueueDeclare(q, false, true, true, false, nil)
		must(t, err)
		_, err = ch.Consume(q, "", false, false, false, false, amqp091.Table{"x-priority": "high"})
		e := amqpErr(t, err, 406, true)
		if !strings.HasSuffix(e.Reason, `': "expected integer, got longstr"`) || !strings.Contains(e.Reason, "invalid arg 'x-priority' for queue '"+q+"'") {
			t.Errorf("consumer x-priority: reply %q", e.Reason)
		}
		ch = channel(t, c)
		_, err = ch.Consume(q, "", false, false, false, false, amqp091.Table{"x-cancel-on-ha-failover": "x"})
		e = amqpErr(t, err, 406, true)
		if !strings.HasSuffix(e.Reason, "': {unacceptable_type,longstr}") {
			t.Errorf("consumer x-cancel-on-ha-failover: reply %q", e.Reason)
		}
		// a queue declared without x-queue-type is classic: redeclaring it
		// with x-queue-type 'classic' is equivalent
		ch = channel(t, c)
		name := uniq("classic")
		_, err = ch.QueueDeclare(name, false, true, true, false, nil)
		must(t, err)
		_, err = ch.QueueDeclare(name, false, true, true, false, amqp091.Table{"x-queue-type": "classic"})
		must(t, err)
	})
}

// TestCompatLoginFailure: a failed login is a connection.close 403 only for
// clients announcing the authentication_failure_close capability; others
// see the socket close (amqp091-go reports ErrCredentials).
func TestCompatLoginFailure(t *testing.T) {
	compatTargets(t, func(t *testing.T, u string) {
		_, err := amqp091.Dial(strings.Replace(u, "guest:guest", "guest:wrong", 1))
		if !errors.Is(err, amqp091.ErrCredentials) {
			t.Errorf("amqp091-go with a bad password: want ErrCredentials, got %v", err)
		}
		pu, _ := url.Parse(u)
		c := rawDial(t, pu.Host)
		c.nc.Write(amqp.ProtocolHeader)
		if _, ok := c.recv().(*amqp.ConnectionStart); !ok {
			t.Fatal("no connection.start")
		}
		c.send(0, &amqp.ConnectionStartOk{
			ClientProperties: amqp.Table{"capabilities": amqp.Table{"authentication_failure_close": true}},
			Mechanism:        "PLAIN", Response: "\x00guest\x00wrong", Locale: "en_US",
		})
		c.expectClose(true, 403, 0, 0, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.")
	})
}
