// Package forward lets a client on any node of a cluster use a queue
// whose home is another node (ADR 0005, "normal mode"): the publisher's
// node routes and sends each message to the queues' homes; consumers,
// basic.get, acks, nacks, requeues, purges and counts go to the home
// over the inter-node link (internal/cluster), never through consensus.
//
// Two roles share one session per connected peer:
//   - as the client of a remote queue (this node has the AMQP client), a
//     remoteQueue is the queue.Handle a channel uses; it holds the
//     consumers it registered there and the deliveries not yet taken;
//   - as a queue's home, a proxy is the queue.Consumer standing for a
//     consumer on the peer, with credit: it takes at most as many
//     deliveries as the peer's consumer has room for (its prefetch, or a
//     window when unlimited) and the peer returns credit as its consumer
//     takes them. Every delivery handed to the peer that is not settled
//     is remembered, and requeued when the peer is lost.
//
// A session ends when its connection does: every publish still waiting
// for its home's answer resolves as Lost (a nack under confirms),
// consumers of that home's queues are cancelled (basic.cancel when the
// client asked for it), acks for deliveries of the old session are
// dropped (the home requeued those messages), and the home removes the
// proxies and requeues what they held.
package forward

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenmq/warren/internal/cluster"
	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/vhost"
)

// Transport is the inter-node link (cluster.Link).
type Transport interface {
	Post(to uint64, k cluster.Kind, payload []byte) error
	Handle(k cluster.Kind, h cluster.Handler)
	Watch(fn func(peer uint64, up bool))
	Connected(id uint64) bool
}

// Durability tells when a local store position is on disk.
type Durability interface {
	OnDurable(pos uint64, fn func(error))
}

// Config is what a Forwarder needs from its node.
type Config struct {
	Transport Transport
	// Node returns the id of the node named name (false: not a member).
	Node func(name string) (uint64, bool)
	// Local returns queue name of vhost when this node is its home.
	Local func(vhost, name string) *queue.Queue
	// LocalQueues lists the queues of vhost this node is home to (for
	// the management API of other nodes).
	LocalQueues func(vhost string) []*queue.Queue
	// ReplyTo delivers a reply to a direct reply-to name this node handed
	// out (false: no such consumer); it may wait while its client does
	// not read, so it runs off the link's reader.
	ReplyTo func(vhost, key string, m *queue.Message) bool
	// Durability is the local message store (nil: nothing persisted).
	Durability Durability
	// Window bounds the bytes of messages sent to one node and not yet
	// answered; a publisher waits beyond it (credit flow). Default 16 MiB.
	Window int
	// Credit is what a consumer with unlimited prefetch (or no-ack) may
	// have in flight from a remote queue. Default 256.
	Credit int
	// Timeout bounds a request to a queue's home (consume, get, purge,
	// counts). Default 15 s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Forwarder implements vhost.Forwarder over a Transport.
type Forwarder struct {
	cfg Config
	ids atomic.Uint64

	mu   sync.Mutex
	sess map[uint64]*session // per connected peer
}

var _ vhost.Forwarder = (*Forwarder)(nil)

// New starts forwarding over cfg.Transport: register it before peers
// connect.
func New(cfg Config) *Forwarder {
	if cfg.Window <= 0 {
		cfg.Window = 16 << 20
	}
	if cfg.Credit <= 0 {
		cfg.Credit = 256
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{cfg: cfg, sess: map[uint64]*session{}}
	cfg.Transport.Handle(cluster.KindQueue, f.handle)
	cfg.Transport.Watch(f.watch)
	return f
}

// ErrTimeout is returned when a queue's home does not answer in time.
var ErrTimeout = errors.New("forward: the queue's home node did not answer in time")

func (f *Forwarder) watch(peer uint64, up bool) {
	f.mu.Lock()
	old := f.sess[peer]
	delete(f.sess, peer)
	if up {
		f.sess[peer] = newSession(f, peer)
	}
	f.mu.Unlock()
	if old != nil {
		old.close()
	}
}

// session returns the current session with peer (nil when there is no
// connection).
func (f *Forwarder) session(peer uint64) *session {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sess[peer]
	if s == nil && f.cfg.Transport.Connected(peer) {
		s = newSession(f, peer)
		f.sess[peer] = s
	}
	return s
}

func (f *Forwarder) home(name string) (*session, error) {
	id, ok := f.cfg.Node(name)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a member of this cluster", vhost.ErrHomeDown, name)
	}
	s := f.session(id)
	if s == nil {
		return nil, fmt.Errorf("%w: no connection to %s", vhost.ErrHomeDown, name)
	}
	return s, nil
}

// Up implements vhost.Forwarder.
func (f *Forwarder) Up(home string) bool {
	id, ok := f.cfg.Node(home)
	return ok && f.cfg.Transport.Connected(id)
}

// Queue implements vhost.Forwarder.
func (f *Forwarder) Queue(home, vh, name string) (queue.Handle, error) {
	s, err := f.home(home)
	if err != nil {
		return nil, err
	}
	return s.handle(vh, name)
}

// Publish implements vhost.Forwarder.
func (f *Forwarder) Publish(home, vh string, queues []string, m *queue.Message) *queue.Pending {
	s, err := f.home(home)
	if err != nil {
		return queue.Resolved(queue.Lost)
	}
	return s.publish(vh, queues, m)
}

// PublishReplyTo implements vhost.Forwarder.
func (f *Forwarder) PublishReplyTo(home, vh, key string, m *queue.Message) *queue.Pending {
	s, err := f.home(home)
	if err != nil {
		return queue.Resolved(queue.Lost)
	}
	return s.send(frame(opReplyTo, 0).str(vh).str(key), m)
}

// Purge implements vhost.Forwarder.
func (f *Forwarder) Purge(home, vh, name string) (int, error) {
	s, err := f.home(home)
	if err != nil {
		return 0, err
	}
	r, err := s.call(frame(opPurge, f.ids.Add(1)).str(vh).str(name))
	if err != nil {
		return 0, err
	}
	if r.code != codeOK {
		return 0, nil // gone meanwhile: nothing to purge
	}
	return int(r.n[0]), nil
}

// Counts implements vhost.Forwarder.
func (f *Forwarder) Counts(home, vh, name string) (ready, unacked, consumers int, err error) {
	s, err := f.home(home)
	if err != nil {
		return 0, 0, 0, err
	}
	r, err := s.call(frame(opCounts, f.ids.Add(1)).str(vh).str(name))
	if err != nil {
		return 0, 0, 0, err
	}
	return int(r.n[0]), int(r.n[1]), int(r.n[2]), nil
}

// Figures returns the figures of every queue of vhost whose home is
// node home, by name (one request for all of them).
func (f *Forwarder) Figures(home, vh string) (map[string]queue.Figures, error) {
	s, err := f.home(home)
	if err != nil {
		return nil, err
	}
	r, err := s.call(frame(opFigures, f.ids.Add(1)).str(vh))
	if err != nil {
		return nil, err
	}
	return r.figs, nil
}

// handle dispatches one frame from peer (on the link's reader).
func (f *Forwarder) handle(peer uint64, p []byte) {
	s := f.session(peer)
	if s == nil {
		return
	}
	d := &dec{b: p}
	op := d.u8()
	id := d.u64()
	if d.err != nil {
		f.cfg.Logger.Warn("forward: malformed frame dropped; run the same Warren version on every node", "peer", peer)
		return
	}
	switch op {
	case opPublish, opConsume, opCancel, opCredit, opAck, opDiscard, opRequeue, opGet, opPurge, opCounts, opFigures, opReplyTo:
		s.request(op, id, d)
	case opPublished, opConsumeOk, opConsumeErr, opDeliver, opCancelled, opReply, opFiguresReply:
		s.answer(op, id, d)
	default:
		f.cfg.Logger.Warn("forward: unknown operation dropped; run the same Warren version on every node", "peer", peer, "op", op)
	}
}

// session is this node's state with one connected peer, in both roles;
// it ends with the connection.
type session struct {
	f    *Forwarder
	peer uint64

	mu   sync.Mutex
	dead bool
	// client role
	pubs      map[uint64]*pub
	inflight  int
	waiting   int           // publishers waiting for room
	room      chan struct{} // closed when inflight shrinks (and someone waits) or the session ends
	calls     map[uint64]chan reply
	consumers map[uint64]*remoteConsumer
	handles   map[[2]string]*remoteQueue
	// home role: requests wait in reqs for the session's worker, which
	// serves them in arrival order off the link's reader (an enqueue into
	// a replicated queue waits for its group, whose votes come through
	// that same reader)
	reqs      []request
	reqWake   chan struct{}
	proxies   map[uint64]*proxy
	delivered map[*queue.Queue]map[uint64]struct{}
}

type pub struct {
	p    *queue.Pending
	size int
}

type reply struct {
	figs  map[string]queue.Figures // opFiguresReply
	code  byte
	n     [3]uint64
	id    uint64
	redel bool
	msg   *queue.Message
}

func newSession(f *Forwarder, peer uint64) *session {
	return &session{
		f: f, peer: peer, room: make(chan struct{}),
		pubs: map[uint64]*pub{}, calls: map[uint64]chan reply{},
		consumers: map[uint64]*remoteConsumer{}, handles: map[[2]string]*remoteQueue{},
		proxies: map[uint64]*proxy{}, delivered: map[*queue.Queue]map[uint64]struct{}{},
		reqWake: make(chan struct{}, 1),
	}
}

// request is one frame from the peer to a queue of this node.
type request struct {
	op byte
	id uint64
	d  dec
}

// request queues a request for the worker, starting it on the first.
// The volume is bounded by the peer: its publish window, its consumers'
// credit and its waiting calls.
func (s *session) request(op byte, id uint64, d *dec) {
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return
	}
	start := s.reqs == nil
	s.reqs = append(s.reqs, request{op, id, *d})
	if start {
		go s.work()
	}
	s.mu.Unlock()
	select {
	case s.reqWake <- struct{}{}:
	default:
	}
}

// work serves the peer's requests in order until the session ends.
func (s *session) work() {
	var batch []request
	for {
		s.mu.Lock()
		if s.dead {
			s.mu.Unlock()
			return
		}
		batch, s.reqs = s.reqs, batch[:0]
		if s.reqs == nil {
			s.reqs = []request{} // non-nil: the worker runs
		}
		s.mu.Unlock()
		for i := range batch {
			r := &batch[i]
			s.serve(r.op, r.id, &r.d)
			*r = request{}
		}
		if len(batch) == 0 {
			<-s.reqWake
		}
	}
}

func (s *session) post(b enc) error {
	return s.f.cfg.Transport.Post(s.peer, cluster.KindQueue, b)
}

// close ends the session: the connection to its peer is gone.
func (s *session) close() {
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return
	}
	s.dead = true
	pubs, calls, consumers := s.pubs, s.calls, s.consumers
	proxies, delivered := s.proxies, s.delivered
	s.pubs, s.calls, s.consumers, s.proxies, s.delivered = nil, nil, nil, nil, nil
	close(s.room)
	s.mu.Unlock()
	select {
	case s.reqWake <- struct{}{}: // the worker sees the end
	default:
	}
	// client role: nothing in flight to the peer will be answered
	for _, p := range pubs {
		p.p.Resolve(queue.Lost)
	}
	for _, c := range calls {
		close(c)
	}
	for _, rc := range consumers {
		rc.lost()
	}
	// home role: the peer's consumers are gone and what it held returns
	for _, p := range proxies {
		p.q.RemoveConsumer(p.tag, p)
	}
	for q, ids := range delivered {
		list := make([]uint64, 0, len(ids))
		for id := range ids {
			list = append(list, id)
		}
		q.Requeue(list...)
	}
	if n := len(pubs) + len(consumers) + len(proxies); n > 0 {
		s.f.cfg.Logger.Warn("forward: connection to a node lost: its unanswered publishes are nacked, consumers of its queues cancelled, and what its consumers held here requeued", "peer", s.peer, "publishes", len(pubs), "consumers", len(consumers), "remote_consumers", len(proxies))
	}
}

// call sends a request and waits for its reply.
func (s *session) call(b enc) (reply, error) {
	id := beU64(b[1:9])
	ch := make(chan reply, 1)
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return reply{}, vhost.ErrHomeDown
	}
	s.calls[id] = ch
	s.mu.Unlock()
	if err := s.post(b); err != nil {
		s.forget(id)
		return reply{}, fmt.Errorf("%w: %v", vhost.ErrHomeDown, err)
	}
	t := time.NewTimer(s.f.cfg.Timeout)
	defer t.Stop()
	select {
	case r, ok := <-ch:
		if !ok {
			return reply{}, vhost.ErrHomeDown
		}
		return r, nil
	case <-t.C:
		s.forget(id)
		return reply{}, ErrTimeout
	}
}

func (s *session) forget(call uint64) {
	s.mu.Lock()
	if s.calls != nil {
		delete(s.calls, call)
	}
	s.mu.Unlock()
}

func beU64(b []byte) uint64 {
	d := dec{b: b}
	return d.u64()
}

var errDead = errors.New("forward: the connection to the queue's home node was lost")
