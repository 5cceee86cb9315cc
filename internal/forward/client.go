package forward

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/warrenmq/warren/internal/queue"
)

// remoteQueue is the handle on a queue at the session's peer. Its mutex
// plays the queue lock for its consumers: Deliver and Cancelled run with
// it held, as with a local queue.
type remoteQueue struct {
	s           *session
	vhost, name string

	mu        sync.Mutex
	consumers []*remoteConsumer
}

// remoteConsumer is a channel's consumer on a remote queue.
type remoteConsumer struct {
	rq       *remoteQueue
	cid      uint64
	c        queue.Consumer
	tag      string
	noAck    bool
	credit   int // granted at consume
	accepted func()
	ready    chan error

	// under rq.mu
	live    bool
	gone    bool
	pending []queue.Delivery // arrived while the consumer had no room
	owed    int              // credit taken and not yet returned
}

// Prefetcher is implemented by consumers that know how many unacked
// deliveries they accept (a channel's consumer: its prefetch count).
type Prefetcher interface {
	Prefetch() int
}

func (s *session) handle(vh, name string) (*remoteQueue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, errDead
	}
	k := [2]string{vh, name}
	rq := s.handles[k]
	if rq == nil {
		rq = &remoteQueue{s: s, vhost: vh, name: name}
		s.handles[k] = rq
	}
	return rq, nil
}

// Name implements queue.Handle.
func (rq *remoteQueue) Name() string { return rq.name }

// AddConsumer implements queue.Handle: registers a proxy consumer at the
// queue's home and waits for its answer.
func (rq *remoteQueue) AddConsumer(tag string, c queue.Consumer, noAck, exclusive bool, priority int, accepted func()) error {
	s := rq.s
	credit := s.f.cfg.Credit
	if pf, ok := c.(Prefetcher); ok && !noAck {
		if n := pf.Prefetch(); n > 0 {
			credit = n
		}
	}
	rc := &remoteConsumer{rq: rq, cid: s.f.ids.Add(1), c: c, tag: tag, noAck: noAck, credit: credit, accepted: accepted, ready: make(chan error, 1)}
	rq.mu.Lock()
	rq.consumers = append(rq.consumers, rc)
	rq.mu.Unlock()
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		rq.drop(rc)
		return queue.ErrDeleted
	}
	s.consumers[rc.cid] = rc
	s.mu.Unlock()
	var fl byte
	if noAck {
		fl |= flagNoAck
	}
	if exclusive {
		fl |= flagExclusive
	}
	if err := s.post(frame(opConsume, rc.cid).str(rq.vhost).str(rq.name).str(tag).u8(fl).u64(uint64(int64(priority))).u32(uint32(credit))); err != nil {
		s.dropConsumer(rc.cid)
		rq.drop(rc)
		return queue.ErrDeleted
	}
	t := time.NewTimer(s.f.cfg.Timeout)
	defer t.Stop()
	select {
	case err := <-rc.ready:
		return err
	case <-t.C:
		rq.RemoveConsumer(tag, c)
		return ErrTimeout
	}
}

// drop removes rc from the handle's list.
func (rq *remoteQueue) drop(rc *remoteConsumer) {
	rq.mu.Lock()
	for i, x := range rq.consumers {
		if x == rc {
			rq.consumers = append(rq.consumers[:i], rq.consumers[i+1:]...)
			break
		}
	}
	rq.mu.Unlock()
}

func (s *session) dropConsumer(cid uint64) {
	s.mu.Lock()
	if s.consumers != nil {
		delete(s.consumers, cid)
	}
	s.mu.Unlock()
}

// RemoveConsumer implements queue.Handle: cancels the proxy at the home
// and gives back the deliveries that never reached the channel.
func (rq *remoteQueue) RemoveConsumer(tag string, c queue.Consumer) {
	rq.mu.Lock()
	var rc *remoteConsumer
	for i, x := range rq.consumers {
		if x.tag == tag && x.c == c {
			rc = x
			rq.consumers = append(rq.consumers[:i], rq.consumers[i+1:]...)
			break
		}
	}
	var back []uint64
	if rc != nil {
		rc.gone = true
		if !rc.noAck {
			for _, d := range rc.pending {
				back = append(back, d.ID)
			}
		}
		rc.pending = nil
	}
	rq.mu.Unlock()
	if rc == nil {
		return
	}
	// rc stays known until the home answers cancelled: deliveries it
	// sent before go back (below, in answer)
	_ = rq.s.post(frame(opCancel, rc.cid).u32(0))
	if len(back) > 0 {
		rq.settle(opRequeue, back)
	}
}

// Get implements queue.Handle. A home that fails to answer reads as an
// empty queue (basic.get-empty).
func (rq *remoteQueue) Get(noAck bool) (queue.Delivery, bool) {
	var fl byte
	if noAck {
		fl |= flagNoAck
	}
	r, err := rq.s.call(frame(opGet, rq.s.f.ids.Add(1)).str(rq.vhost).str(rq.name).u8(fl))
	if err != nil || r.code != codeOK {
		if err != nil {
			rq.s.f.cfg.Logger.Warn("forward: basic.get through another node failed; answered get-empty", "queue", rq.name, "vhost", rq.vhost, "err", err)
		}
		return queue.Delivery{}, false
	}
	return queue.Delivery{Queue: rq, Msg: r.msg, ID: r.id, Redelivered: r.redel, Remaining: uint32(r.n[0])}, true
}

// Ack implements queue.Handle.
func (rq *remoteQueue) Ack(ids ...uint64) { rq.settle(opAck, ids) }

// Discard implements queue.Handle.
func (rq *remoteQueue) Discard(ids ...uint64) { rq.settle(opDiscard, ids) }

// Requeue implements queue.Handle.
func (rq *remoteQueue) Requeue(ids ...uint64) { rq.settle(opRequeue, ids) }

// settle sends acks, discards or requeues to the home. After the session
// ended they are dropped: the home requeued those deliveries already.
func (rq *remoteQueue) settle(op byte, ids []uint64) {
	if len(ids) == 0 {
		return
	}
	rq.s.mu.Lock()
	dead := rq.s.dead
	rq.s.mu.Unlock()
	if dead {
		return
	}
	_ = rq.s.post(frame(op, 0).str(rq.vhost).str(rq.name).ids(ids))
}

// Kick implements queue.Handle: consumers that may have room again take
// the deliveries waiting for them.
func (rq *remoteQueue) Kick() {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	for _, rc := range rq.consumers {
		rc.drain()
	}
}

// drain offers waiting deliveries in order (rq.mu held).
func (rc *remoteConsumer) drain() {
	n := 0
	for len(rc.pending) > 0 && !rc.gone && rc.c.Deliver(rc.pending[0]) {
		rc.pending[0] = queue.Delivery{}
		rc.pending = rc.pending[1:]
		n++
	}
	if len(rc.pending) == 0 {
		rc.pending = nil
	}
	rc.returnCredit(n)
}

// returnCredit gives the home credit for n deliveries the consumer took,
// in batches of a quarter of the grant (rq.mu held).
func (rc *remoteConsumer) returnCredit(n int) {
	rc.owed += n
	if rc.owed > 0 && rc.owed >= max(1, rc.credit/4) {
		_ = rc.rq.s.post(frame(opCredit, rc.cid).u32(uint32(rc.owed)))
		rc.owed = 0
	}
}

// lost cancels the consumer: the session with the home ended.
func (rc *remoteConsumer) lost() {
	rq := rc.rq
	rq.mu.Lock()
	wasLive := rc.live && !rc.gone
	rc.gone = true
	rc.pending = nil
	for i, x := range rq.consumers {
		if x == rc {
			rq.consumers = append(rq.consumers[:i], rq.consumers[i+1:]...)
			break
		}
	}
	if wasLive {
		rc.c.Cancelled(rq)
	}
	rq.mu.Unlock()
	select {
	case rc.ready <- queue.ErrDeleted:
	default:
	}
}

// publish sends m to queues of vh at the peer, waiting while the window
// of unanswered bytes to it is full.
func (s *session) publish(vh string, queues []string, m *queue.Message) *queue.Pending {
	b := frame(opPublish, 0).str(vh).u16(uint16(len(queues)))
	for _, q := range queues {
		b = b.str(q)
	}
	return s.send(b, m)
}

// send sends a publish frame (its head in b, the message appended here)
// under the next sequence number, waiting while the window of unanswered
// bytes to the peer is full.
func (s *session) send(b enc, m *queue.Message) *queue.Pending {
	size := len(m.Body) + len(m.Props) + 64
	p := &pub{p: &queue.Pending{}, size: size}
	s.mu.Lock()
	for !s.dead && s.inflight > 0 && s.inflight+size > s.f.cfg.Window {
		room := s.room
		s.waiting++
		s.mu.Unlock()
		<-room
		s.mu.Lock()
		s.waiting--
	}
	if s.dead {
		s.mu.Unlock()
		return queue.Resolved(queue.Lost)
	}
	seq := s.f.ids.Add(1)
	s.pubs[seq] = p
	s.inflight += size
	s.mu.Unlock()
	binary.BigEndian.PutUint64(b[1:9], seq)
	if err := s.post(b.msg(m)); err != nil {
		s.answered(seq, queue.Lost)
	}
	return p.p
}

// answered resolves publish seq.
func (s *session) answered(seq uint64, o queue.Outcome) {
	s.mu.Lock()
	p := s.pubs[seq]
	if p != nil {
		delete(s.pubs, seq)
		s.inflight -= p.size
		if s.waiting > 0 {
			close(s.room)
			s.room = make(chan struct{})
		}
	}
	s.mu.Unlock()
	if p != nil {
		p.p.Resolve(o)
	}
}

// answer handles a frame from the home of a queue this node uses.
func (s *session) answer(op byte, id uint64, d *dec) {
	switch op {
	case opPublished:
		o := queue.Outcome(d.u8())
		if d.err != nil || o < queue.Stored || o > queue.Lost {
			o = queue.Lost
		}
		s.answered(id, o)

	case opConsumeOk, opConsumeErr, opDeliver, opCancelled:
		s.mu.Lock()
		rc := s.consumers[id]
		if rc != nil && (op == opConsumeErr || op == opCancelled) {
			delete(s.consumers, id)
		}
		s.mu.Unlock()
		if rc == nil {
			return // the session's consumers are all known until cancelled
		}
		rq := rc.rq
		switch op {
		case opConsumeOk:
			rq.mu.Lock()
			rc.live = !rc.gone
			if rc.live && rc.accepted != nil {
				rc.accepted()
			}
			rq.mu.Unlock()
			rc.ready <- nil
		case opConsumeErr:
			rq.drop(rc)
			if d.u8() == codeExclusive {
				rc.ready <- queue.ErrExclusiveConsumer
			} else {
				rc.ready <- queue.ErrDeleted
			}
		case opCancelled:
			rq.mu.Lock()
			wasLive := rc.live && !rc.gone
			rc.gone = true
			rc.pending = nil
			for i, x := range rq.consumers {
				if x == rc {
					rq.consumers = append(rq.consumers[:i], rq.consumers[i+1:]...)
					break
				}
			}
			if wasLive {
				rc.c.Cancelled(rq)
			}
			rq.mu.Unlock()
		case opDeliver:
			dl := queue.Delivery{Queue: rq, ID: d.u64()}
			dl.Redelivered = d.u8()&flagRedelivered != 0
			dl.Msg = d.msg()
			if d.err != nil {
				return
			}
			rq.mu.Lock()
			switch {
			case rc.gone:
				rq.mu.Unlock()
				if !rc.noAck {
					rq.settle(opRequeue, []uint64{dl.ID})
				}
				return
			case len(rc.pending) == 0 && rc.c.Deliver(dl):
				rc.returnCredit(1)
			default:
				rc.pending = append(rc.pending, dl)
			}
			rq.mu.Unlock()
		}

	case opFiguresReply:
		n := int(d.u32())
		r := reply{figs: make(map[string]queue.Figures, min(n, 1<<16))}
		for range n {
			name, f := d.figures()
			if d.err != nil {
				return
			}
			r.figs[name] = f
		}
		s.replied(id, r)

	case opReply:
		r := reply{code: d.u8()}
		r.n[0], r.n[1], r.n[2] = d.u64(), d.u64(), d.u64()
		if r.code == codeOK && len(d.b) > 0 {
			r.id = d.u64()
			r.redel = d.u8()&flagRedelivered != 0
			r.msg = d.msg()
		}
		if d.err != nil {
			return
		}
		s.replied(id, r)
	}
}

// replied hands r to the caller waiting for call id.
func (s *session) replied(id uint64, r reply) {
	s.mu.Lock()
	ch := s.calls[id]
	if ch != nil {
		delete(s.calls, id)
	}
	s.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}
