package queue

import (
	"fmt"
	"testing"
)

// rec is a scripted consumer: it accepts up to room deliveries.
type rec struct {
	room      int
	got       []Delivery
	cancelled bool
}

func (r *rec) Deliver(d Delivery) bool {
	if r.room == 0 {
		return false
	}
	r.room--
	r.got = append(r.got, d)
	return true
}

func (r *rec) Cancelled(Handle) { r.cancelled = true }

func msg(s string) *Message { return &Message{Body: []byte(s)} }

func bodies(ds []Delivery) string {
	s := ""
	for _, d := range ds {
		s += string(d.Msg.Body)
	}
	return s
}

func TestFIFOAndRoundRobin(t *testing.T) {
	q := New(Config{Name: "q"})
	a, b := &rec{room: 100}, &rec{room: 100}
	for i := 0; i < 4; i++ {
		q.Publish(msg(fmt.Sprint(i)))
	}
	if err := q.AddConsumer("a", a, false, false, 0, nil); err != nil {
		t.Fatal(err)
	}
	if bodies(a.got) != "0123" {
		t.Fatalf("backlog to first consumer: %q", bodies(a.got))
	}
	q.AddConsumer("b", b, false, false, 0, nil)
	for i := 4; i < 8; i++ {
		q.Publish(msg(fmt.Sprint(i)))
	}
	if bodies(a.got) != "012346" && bodies(a.got) != "012357" {
		t.Fatalf("round robin a=%q b=%q", bodies(a.got), bodies(b.got))
	}
	if len(b.got) != 2 {
		t.Fatalf("b got %d", len(b.got))
	}
}

func TestBlockedConsumerAndKick(t *testing.T) {
	q := New(Config{Name: "q"})
	c := &rec{room: 1}
	q.AddConsumer("c", c, false, false, 0, nil)
	q.Publish(msg("a"))
	q.Publish(msg("b"))
	if len(c.got) != 1 {
		t.Fatalf("got %d", len(c.got))
	}
	if r, u, _ := q.Counts(); r != 1 || u != 1 {
		t.Fatalf("ready=%d unacked=%d", r, u)
	}
	c.room = 1
	q.Kick()
	if bodies(c.got) != "ab" {
		t.Fatalf("after kick %q", bodies(c.got))
	}
}

func TestRequeueKeepsOrderAndMarksRedelivered(t *testing.T) {
	q := New(Config{Name: "q"})
	for _, s := range []string{"a", "b", "c"} {
		q.Publish(msg(s))
	}
	d1, _ := q.Get(false)
	d2, _ := q.Get(false)
	q.Requeue(d2.ID, d1.ID)
	var out string
	for {
		d, ok := q.Get(true)
		if !ok {
			break
		}
		out += string(d.Msg.Body)
		if string(d.Msg.Body) != "c" && !d.Redelivered {
			t.Fatalf("%s not marked redelivered", d.Msg.Body)
		}
	}
	if out != "abc" {
		t.Fatalf("order after requeue %q", out)
	}
}

func TestPriorityConsumers(t *testing.T) {
	q := New(Config{Name: "q"})
	lo, hi := &rec{room: 10}, &rec{room: 1}
	q.AddConsumer("lo", lo, false, false, 0, nil)
	q.AddConsumer("hi", hi, false, false, 5, nil)
	q.Publish(msg("1"))
	q.Publish(msg("2"))
	if bodies(hi.got) != "1" || bodies(lo.got) != "2" {
		t.Fatalf("hi=%q lo=%q", bodies(hi.got), bodies(lo.got))
	}
}

func TestExclusiveConsumer(t *testing.T) {
	q := New(Config{Name: "q"})
	if err := q.AddConsumer("a", &rec{}, false, true, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := q.AddConsumer("b", &rec{}, false, false, 0, nil); err != ErrExclusiveConsumer {
		t.Fatalf("got %v", err)
	}
}

func TestDeleteCancelsAndConditions(t *testing.T) {
	q := New(Config{Name: "q"})
	c := &rec{}
	q.AddConsumer("c", c, false, false, 0, nil)
	q.Publish(msg("x"))
	if _, err := q.Delete(true, false); err != ErrInUse {
		t.Fatalf("if-unused: %v", err)
	}
	if _, err := q.Delete(false, true); err != ErrNotEmpty {
		t.Fatalf("if-empty: %v", err)
	}
	n, err := q.Delete(false, false)
	if err != nil || n != 1 || !c.cancelled {
		t.Fatalf("delete n=%d err=%v cancelled=%v", n, err, c.cancelled)
	}
	if r, _ := q.Publish(msg("y")); r != Dropped {
		t.Fatal("publish to a deleted queue accepted")
	}
}

func TestAutoDeleteOnLastConsumer(t *testing.T) {
	q := New(Config{Name: "q", AutoDelete: true})
	called := 0
	q.OnUnused = func(*Queue) { called++ }
	c := &rec{}
	q.AddConsumer("c", c, false, false, 0, nil)
	q.RemoveConsumer("c", c)
	if called != 1 {
		t.Fatalf("OnUnused called %d times", called)
	}
}

func TestNoAckForgetsMessage(t *testing.T) {
	q := New(Config{Name: "q"})
	c := &rec{room: 5}
	q.AddConsumer("c", c, true, false, 0, nil)
	q.Publish(msg("x"))
	if _, u, _ := q.Counts(); u != 0 {
		t.Fatalf("no-ack delivery tracked as unacked (%d)", u)
	}
}

func BenchmarkPublishDeliver(b *testing.B) {
	q := New(Config{Name: "q"})
	c := &rec{room: -1}
	q.AddConsumer("c", sink{}, true, false, 0, nil)
	_ = c
	m := msg("0123456789abcdef")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		q.Publish(m)
	}
}

type sink struct{}

func (sink) Deliver(Delivery) bool { return true }
func (sink) Cancelled(Handle)      {}
