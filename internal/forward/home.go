package forward

import (
	"errors"
	"sync/atomic"

	"github.com/warrenmq/warren/internal/queue"
)

// proxy is a consumer on a peer, registered on a local queue. It runs
// with the queue's lock held (queue.Consumer) and never waits.
type proxy struct {
	s      *session
	cid    uint64
	q      *queue.Queue
	tag    string
	noAck  bool
	credit atomic.Int64
}

// Deliver implements queue.Consumer: sends d to the peer while it has
// credit.
func (p *proxy) Deliver(d queue.Delivery) bool {
	if p.credit.Load() <= 0 {
		return false
	}
	s := p.s
	if !p.noAck {
		s.mu.Lock()
		if s.dead {
			s.mu.Unlock()
			return false
		}
		s.remember(p.q, d.ID)
		s.mu.Unlock()
	}
	var fl byte
	if d.Redelivered {
		fl |= flagRedelivered
	}
	if err := s.post(frame(opDeliver, p.cid).u64(d.ID).u8(fl).msg(d.Msg)); err != nil {
		if !p.noAck {
			s.mu.Lock()
			s.settle(p.q, []uint64{d.ID})
			s.mu.Unlock()
		}
		return false
	}
	p.credit.Add(-1)
	return true
}

// Cancelled implements queue.Consumer: the queue was deleted.
func (p *proxy) Cancelled(queue.Handle) {
	s := p.s
	s.mu.Lock()
	if s.proxies != nil {
		delete(s.proxies, p.cid)
	}
	s.mu.Unlock()
	_ = s.post(frame(opCancelled, p.cid))
}

// remember records a delivery the peer must settle (s.mu held).
func (s *session) remember(q *queue.Queue, id uint64) {
	m := s.delivered[q]
	if m == nil {
		m = map[uint64]struct{}{}
		s.delivered[q] = m
	}
	m[id] = struct{}{}
}

// settle forgets deliveries the peer settled and returns those it had
// (s.mu held): an id it does not hold (requeued when an older session
// ended, or never delivered to it) is ignored.
func (s *session) settle(q *queue.Queue, ids []uint64) []uint64 {
	m := s.delivered[q]
	out := ids[:0]
	for _, id := range ids {
		if _, ok := m[id]; ok {
			delete(m, id)
			out = append(out, id)
		}
	}
	if len(m) == 0 {
		delete(s.delivered, q)
	}
	return out
}

// serve handles a request from the peer to a queue of this node.
func (s *session) serve(op byte, id uint64, d *dec) {
	local := s.f.cfg.Local
	switch op {
	case opPublish:
		vh := d.str()
		names := make([]string, d.u16())
		for i := range names {
			names[i] = d.str()
		}
		m := d.msg()
		if d.err != nil {
			return
		}
		out := queue.Stored
		var wait uint64
		for _, n := range names {
			q := local(vh, n)
			if q == nil {
				continue // deleted meanwhile: dropped, as locally
			}
			res, pos := q.Publish(m)
			if res == queue.Rejected {
				out = queue.Refused
			}
			wait = max(wait, pos)
		}
		answer := func(o queue.Outcome) { _ = s.post(frame(opPublished, id).u8(byte(o))) }
		if dur := s.f.cfg.Durability; wait > 0 && dur != nil {
			dur.OnDurable(wait, func(err error) {
				if err != nil {
					answer(queue.Refused)
					return
				}
				answer(out)
			})
			return
		}
		answer(out)

	case opReplyTo:
		vh, key := d.str(), d.str()
		m := d.msg()
		if d.err != nil {
			return
		}
		answer := func() { _ = s.post(frame(opPublished, id).u8(byte(queue.Stored))) }
		fn := s.f.cfg.ReplyTo
		if fn == nil {
			answer()
			return
		}
		// delivering may wait for the requester to read: off the reader;
		// the publishing node's window bounds how many wait here
		go func() {
			fn(vh, key, m) // a reply to a gone consumer is dropped, as locally
			answer()
		}()

	case opConsume:
		vh, name, tag := d.str(), d.str(), d.str()
		fl := d.u8()
		prio := int(int64(d.u64()))
		credit := d.u32()
		if d.err != nil {
			return
		}
		q := local(vh, name)
		if q == nil {
			_ = s.post(frame(opConsumeErr, id).u8(codeNotFound))
			return
		}
		p := &proxy{s: s, cid: id, q: q, tag: tag, noAck: fl&flagNoAck != 0}
		p.credit.Store(int64(credit))
		s.mu.Lock()
		if s.dead {
			s.mu.Unlock()
			return
		}
		s.proxies[id] = p
		s.mu.Unlock()
		err := q.AddConsumer(tag, p, p.noAck, fl&flagExclusive != 0, prio, func() {
			_ = s.post(frame(opConsumeOk, id))
		})
		if err != nil {
			s.mu.Lock()
			if s.proxies != nil {
				delete(s.proxies, id)
			}
			s.mu.Unlock()
			code := byte(codeNotFound)
			if errors.Is(err, queue.ErrExclusiveConsumer) {
				code = codeExclusive
			}
			_ = s.post(frame(opConsumeErr, id).u8(code))
		}

	case opCancel, opCredit:
		n := d.u32()
		s.mu.Lock()
		p := s.proxies[id]
		if op == opCancel && p != nil {
			delete(s.proxies, id)
		}
		s.mu.Unlock()
		if p == nil {
			if op == opCancel {
				_ = s.post(frame(opCancelled, id)) // gone already
			}
			return
		}
		if op == opCancel {
			p.q.RemoveConsumer(p.tag, p)
			// after every delivery sent to it: the peer forgets it then
			_ = s.post(frame(opCancelled, id))
			return
		}
		p.credit.Add(int64(n))
		p.q.Kick()

	case opAck, opDiscard, opRequeue:
		vh, name := d.str(), d.str()
		ids := d.ids()
		q := local(vh, name)
		if d.err != nil || q == nil {
			return
		}
		s.mu.Lock()
		if s.dead {
			s.mu.Unlock()
			return
		}
		ids = s.settle(q, ids)
		s.mu.Unlock()
		if len(ids) == 0 {
			return
		}
		switch op {
		case opAck:
			q.Ack(ids...)
		case opDiscard:
			q.Discard(ids...)
		default:
			q.Requeue(ids...)
		}

	case opGet:
		vh, name := d.str(), d.str()
		noAck := d.u8()&flagNoAck != 0
		q := local(vh, name)
		if d.err != nil {
			return
		}
		if q == nil {
			_ = s.post(frame(opReply, id).u8(codeNotFound).u64(0).u64(0).u64(0))
			return
		}
		dl, ok := q.Get(noAck)
		if !ok {
			_ = s.post(frame(opReply, id).u8(codeEmpty).u64(0).u64(0).u64(0))
			return
		}
		if !noAck {
			s.mu.Lock()
			if s.dead {
				s.mu.Unlock()
				q.Requeue(dl.ID)
				return
			}
			s.remember(q, dl.ID)
			s.mu.Unlock()
		}
		var fl byte
		if dl.Redelivered {
			fl |= flagRedelivered
		}
		err := s.post(frame(opReply, id).u8(codeOK).u64(uint64(dl.Remaining)).u64(0).u64(0).u64(dl.ID).u8(fl).msg(dl.Msg))
		if err != nil && !noAck {
			s.mu.Lock()
			ids := s.settle(q, []uint64{dl.ID})
			s.mu.Unlock()
			q.Requeue(ids...)
		}

	case opFigures:
		vh := d.str()
		if d.err != nil {
			return
		}
		var qs []*queue.Queue
		if lq := s.f.cfg.LocalQueues; lq != nil {
			qs = lq(vh)
		}
		b := frame(opFiguresReply, id).u32(uint32(len(qs)))
		for _, q := range qs {
			b = b.figures(q.Name(), q.Figures())
		}
		_ = s.post(b)

	case opPurge, opCounts:
		vh, name := d.str(), d.str()
		q := local(vh, name)
		if d.err != nil {
			return
		}
		if q == nil {
			_ = s.post(frame(opReply, id).u8(codeNotFound).u64(0).u64(0).u64(0))
			return
		}
		if op == opPurge {
			_ = s.post(frame(opReply, id).u8(codeOK).u64(uint64(q.Purge())).u64(0).u64(0))
			return
		}
		q.Touch() // a declare through another node renews the lease (x-expires)
		r, u, c := q.Counts()
		_ = s.post(frame(opReply, id).u8(codeOK).u64(uint64(r)).u64(uint64(u)).u64(uint64(c)))
	}
}
