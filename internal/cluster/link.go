package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"time"
)

// Config configures a Link.
type Config struct {
	Name   NodeName // this node
	ID     uint64   // this node's id, not 0
	Cookie []byte   // the cluster's shared secret (the cookie file's content)
	// Listen is the address of the inter-node port (default
	// ":25672"; "127.0.0.1:0" picks a free port).
	Listen string
	// TLS, when set, encrypts every connection and authenticates both
	// ends by certificate, on top of the cookie: it holds this node's
	// certificate (Certificates) and the CAs that signed the other
	// nodes' (RootCAs; also used for client certificates unless
	// ClientCAs is set). A peer's certificate must be valid for the host
	// part of its node name unless ServerName is set.
	TLS *tls.Config
	// MaxFrame bounds a frame's payload, sent or received (default 16 MiB).
	MaxFrame int
	// MaxQueued bounds the bytes of flow-controlled frames waiting for a
	// peer (default 8 MiB); Send blocks beyond it.
	MaxQueued int
	// MaxDroppable bounds the bytes of droppable frames waiting for a
	// peer (default 4 MiB); TrySend fails beyond it.
	MaxDroppable int
	// HandshakeTimeout bounds connecting and the handshake (default 5 s).
	HandshakeTimeout time.Duration
	// Keepalive is how often an idle connection sends a keepalive
	// (default 1 s); a connection that receives nothing for DeadAfter
	// (default 10 s) is closed, as is one whose writes are blocked for
	// WriteTimeout (default 15 s).
	Keepalive    time.Duration
	DeadAfter    time.Duration
	WriteTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between two dials of a
	// peer (default 100 ms and 5 s; doubled after each failure).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	// OnRequest, when set, answers the one request a node that is not a
	// member sends after proving the cookie (warrenctl join_cluster on
	// that node: see Request). It runs on the connection's goroutine and
	// may take time (a membership change).
	OnRequest func(from NodeName, req []byte) ([]byte, error)
}

// Peer is another node of the cluster.
type Peer struct {
	ID   uint64
	Name NodeName
	// Addr is the address of its inter-node port; empty means its host
	// on DefaultDistPort.
	Addr string
}

// Handler receives the payload of a frame of its kind from node from.
// It runs on the connection's reader goroutine: it must be quick, and
// must not wait for a flow-controlled Send (two nodes waiting for each
// other's readers would never wake).
type Handler func(from uint64, payload []byte)

// Errors of the sending side.
var (
	ErrClosed       = errors.New("cluster: link closed")
	ErrUnknownPeer  = errors.New("cluster: unknown node")
	ErrNotConnected = errors.New("cluster: not connected")
	ErrQueueFull    = errors.New("cluster: send queue full")
)

// Link is a node's inter-node port: one authenticated connection to each
// peer (the node with the lower id dials and redials), carrying typed
// frames in both directions. Safe for concurrent use.
type Link struct {
	cfg    Config
	lg     *slog.Logger
	hs     handshaker
	ln     net.Listener
	srvTLS *tls.Config
	sem    chan struct{} // handshakes in progress (bounded)
	done   chan struct{}

	hmu      sync.RWMutex
	handlers [256]Handler
	watchers []func(peer uint64, up bool)

	mu          sync.Mutex
	peers       map[uint64]*peer
	pending     map[net.Conn]struct{} // accepted, not yet authenticated
	closed      bool
	lastRefusal string
	wg          sync.WaitGroup
}

type outFrame struct {
	kind    Kind
	payload []byte
}

type peer struct {
	Peer
	ctx  context.Context // ends when removed or the link closes
	stop context.CancelFunc
	est  sync.Mutex // serialises connection changes (down before up)
	last *conn      // the latest connection established (under est)

	mu          sync.Mutex
	cur         *conn
	urgent      []outFrame // droppable frames, sent first
	urgentBytes int
	bulk        []outFrame // flow-controlled frames
	bulkBytes   int        // queued or being written
	room        chan struct{}
	wake        chan struct{}
	lastDialErr string
	warnedKinds map[Kind]bool
}

type conn struct {
	nc   net.Conn
	p    *peer
	done chan struct{}
	once sync.Once
	// prev is the connection this one replaced; this one's reader hands
	// frames to the handlers only after prev's reader has stopped, so
	// frames a peer sent on an older connection never arrive after
	// frames it sent on a newer one.
	prev     *conn
	readDone chan struct{} // closed when the reader stops dispatching
}

// Listen opens the inter-node port and starts accepting connections
// from known peers. Register handlers and watchers, then add peers.
func Listen(cfg Config) (*Link, error) {
	if cfg.ID == 0 {
		return nil, errors.New("cluster: node id 0 is reserved")
	}
	if err := cfg.Name.Validate(); err != nil {
		return nil, fmt.Errorf("cluster: node name %q: %w", cfg.Name, err)
	}
	if len(cfg.Cookie) == 0 {
		return nil, errors.New("cluster: the cookie is empty: give every node the same cookie file")
	}
	setDefault(&cfg.Listen, fmt.Sprintf(":%d", DefaultDistPort))
	setDefault(&cfg.MaxFrame, DefaultMaxFrame)
	setDefault(&cfg.MaxQueued, 8<<20)
	setDefault(&cfg.MaxDroppable, 4<<20)
	setDefault(&cfg.HandshakeTimeout, 5*time.Second)
	setDefault(&cfg.Keepalive, time.Second)
	setDefault(&cfg.DeadAfter, 10*time.Second)
	setDefault(&cfg.WriteTimeout, 15*time.Second)
	setDefault(&cfg.MinBackoff, 100*time.Millisecond)
	setDefault(&cfg.MaxBackoff, 5*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster: opening the inter-node port %s: %w; choose another with --dist-port", cfg.Listen, err)
	}
	l := &Link{
		cfg: cfg, lg: cfg.Logger.With("node", cfg.Name.String()), ln: ln,
		hs:  handshaker{self: cfg.Name, id: cfg.ID, cookie: append([]byte(nil), cfg.Cookie...), requests: cfg.OnRequest != nil},
		sem: make(chan struct{}, 64), done: make(chan struct{}),
		peers: map[uint64]*peer{}, pending: map[net.Conn]struct{}{},
	}
	if cfg.TLS != nil {
		l.srvTLS = cfg.TLS.Clone()
		if l.srvTLS.ClientAuth == tls.NoClientCert {
			l.srvTLS.ClientAuth = tls.RequireAndVerifyClientCert
		}
		if l.srvTLS.ClientCAs == nil {
			l.srvTLS.ClientCAs = l.srvTLS.RootCAs
		}
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Addr is the address the inter-node port listens on.
func (l *Link) Addr() net.Addr { return l.ln.Addr() }

// Handle registers the handler of a kind (KindControl is the link's).
func (l *Link) Handle(k Kind, h Handler) {
	if k == KindControl {
		panic("cluster: KindControl frames belong to the link")
	}
	l.hmu.Lock()
	l.handlers[k] = h
	l.hmu.Unlock()
}

// Watch registers fn, called when a peer's connection comes up or goes
// down (after its queued frames were discarded). For one peer, calls
// come in order, down before the next up. fn must be quick and must not
// call AddPeer, RemovePeer or Close.
func (l *Link) Watch(fn func(peer uint64, up bool)) {
	l.hmu.Lock()
	l.watchers = append(l.watchers, fn)
	l.hmu.Unlock()
}

func (l *Link) notify(id uint64, up bool) {
	l.hmu.RLock()
	ws := l.watchers
	l.hmu.RUnlock()
	for _, fn := range ws {
		fn(id, up)
	}
}

// AddPeer makes p a known node: its connections are accepted, and when
// this node's id is the lower it dials p and keeps redialling.
func (l *Link) AddPeer(p Peer) error {
	if p.ID == 0 || p.ID == l.cfg.ID {
		return fmt.Errorf("cluster: peer %s has node id %d, which is reserved or this node's", p.Name, p.ID)
	}
	if err := p.Name.Validate(); err != nil {
		return fmt.Errorf("cluster: peer name %q: %w", p.Name, err)
	}
	if p.Addr == "" {
		p.Addr = p.Name.Addr(DefaultDistPort)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if _, ok := l.peers[p.ID]; ok {
		return fmt.Errorf("cluster: node id %d is already a peer", p.ID)
	}
	for _, o := range l.peers {
		if o.Name == p.Name {
			return fmt.Errorf("cluster: node name %s is already taken (node id %d); node names are unique in a cluster", p.Name, o.ID)
		}
	}
	if p.Name == l.cfg.Name {
		return fmt.Errorf("cluster: node name %s is this node's; node names are unique in a cluster", p.Name)
	}
	pr := &peer{Peer: p, room: make(chan struct{}), wake: make(chan struct{}, 1)}
	pr.ctx, pr.stop = context.WithCancel(context.Background())
	l.peers[p.ID] = pr
	if l.cfg.ID < p.ID {
		l.wg.Add(1)
		go l.dialLoop(pr)
	}
	return nil
}

// RemovePeer forgets a node and closes its connection.
func (l *Link) RemovePeer(id uint64) {
	l.mu.Lock()
	p := l.peers[id]
	delete(l.peers, id)
	l.mu.Unlock()
	if p != nil {
		l.stopPeer(p)
	}
}

func (l *Link) stopPeer(p *peer) {
	p.stop()
	p.est.Lock()
	p.mu.Lock()
	c := p.cur
	p.mu.Unlock()
	if c != nil {
		l.drop(c, ErrClosed)
	}
	p.est.Unlock()
}

// Connected reports whether node id has an authenticated connection.
func (l *Link) Connected(id uint64) bool {
	p, err := l.peer(id)
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur != nil
}

// Close stops accepting and dialling, closes every connection (queued
// frames are discarded) and waits for the link's goroutines.
func (l *Link) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	peers := l.peers
	l.peers = map[uint64]*peer{}
	for c := range l.pending {
		c.Close()
	}
	l.mu.Unlock()
	err := l.ln.Close()
	for _, p := range peers {
		l.stopPeer(p)
	}
	l.wg.Wait()
	return err
}

func (l *Link) peer(id uint64) (*peer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	p := l.peers[id]
	if p == nil {
		return nil, fmt.Errorf("%w: node id %d", ErrUnknownPeer, id)
	}
	return p, nil
}

func (l *Link) checkSize(n int) error {
	if n > l.cfg.MaxFrame {
		return fmt.Errorf("%w: %d bytes exceed the inter-node frame limit of %d bytes", ErrFrameTooLarge, n, l.cfg.MaxFrame)
	}
	return nil
}

// TrySend queues a droppable frame for node to without waiting: it
// fails with ErrQueueFull when the peer's droppable queue is full (the
// peer is slow) and ErrNotConnected when there is no connection. Raft
// traffic is droppable. Droppable frames go out before flow-controlled
// ones. The link owns payload from now on.
func (l *Link) TrySend(to uint64, k Kind, payload []byte) error {
	if err := l.checkSize(len(payload)); err != nil {
		return err
	}
	p, err := l.peer(to)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.cur == nil:
		return fmt.Errorf("%w to %s", ErrNotConnected, p.Name)
	case len(p.urgent) > 0 && p.urgentBytes+len(payload) > l.cfg.MaxDroppable:
		return fmt.Errorf("%w: %s has %d bytes waiting", ErrQueueFull, p.Name, p.urgentBytes)
	}
	p.urgent = append(p.urgent, outFrame{k, payload})
	p.urgentBytes += len(payload)
	p.signal()
	return nil
}

// Send queues a flow-controlled frame for node to, waiting while the
// peer has Config.MaxQueued bytes waiting (a slow peer slows its senders
// down instead of filling memory). It fails with ErrNotConnected when
// there is no connection or the connection is lost while waiting; a
// frame queued is written unless the connection breaks (watch the
// peer's down events). The link owns payload from now on.
func (l *Link) Send(ctx context.Context, to uint64, k Kind, payload []byte) error {
	if err := l.checkSize(len(payload)); err != nil {
		return err
	}
	p, err := l.peer(to)
	if err != nil {
		return err
	}
	var session *conn
	for {
		p.mu.Lock()
		if p.cur == nil || (session != nil && p.cur != session) {
			p.mu.Unlock()
			return fmt.Errorf("%w to %s", ErrNotConnected, p.Name)
		}
		session = p.cur
		if p.bulkBytes == 0 || p.bulkBytes+len(payload) <= l.cfg.MaxQueued {
			p.bulk = append(p.bulk, outFrame{k, payload})
			p.bulkBytes += len(payload)
			p.signal()
			p.mu.Unlock()
			return nil
		}
		room := p.room
		p.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.ctx.Done():
			return ErrClosed
		}
	}
}

// Post queues a flow-controlled frame for node to without waiting for
// room: for frames whose volume the peer bounds itself (answers to its
// requests within its window, deliveries within its consumers' credit),
// which must not wait on a reader goroutine or under a lock. It fails
// with ErrNotConnected when there is no connection. The link owns
// payload from now on.
func (l *Link) Post(to uint64, k Kind, payload []byte) error {
	if err := l.checkSize(len(payload)); err != nil {
		return err
	}
	p, err := l.peer(to)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return fmt.Errorf("%w to %s", ErrNotConnected, p.Name)
	}
	p.bulk = append(p.bulk, outFrame{k, payload})
	p.bulkBytes += len(payload)
	p.signal()
	return nil
}

func (p *peer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// freeRoomLocked wakes the senders waiting for room.
func (p *peer) freeRoomLocked() {
	close(p.room)
	p.room = make(chan struct{})
}

// maxBatch bounds the flow-controlled bytes the writer takes at once,
// so droppable frames queued meanwhile wait for little.
const maxBatch = 256 << 10

// take moves the frames for connection c into batch: every droppable
// frame, then flow-controlled ones up to maxBatch bytes (at least one),
// whose bytes still count against the bound until written. It returns
// the flow-controlled bytes taken and whether c is still current.
func (p *peer) take(c *conn, batch []outFrame) ([]outFrame, int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != c {
		return batch, 0, false
	}
	batch = append(batch, p.urgent...)
	clear(p.urgent)
	p.urgent, p.urgentBytes = p.urgent[:0], 0
	n, bytes := 0, 0
	for n < len(p.bulk) && (n == 0 || bytes+len(p.bulk[n].payload) <= maxBatch) {
		bytes += len(p.bulk[n].payload)
		n++
	}
	batch = append(batch, p.bulk[:n]...)
	clear(p.bulk[:n])
	p.bulk = p.bulk[n:]
	if len(p.bulk) == 0 {
		p.bulk = nil
	}
	return batch, bytes, true
}

// dialLoop keeps a connection to a peer with a higher id, redialling
// with exponential backoff (and jitter) after each failure or loss.
func (l *Link) dialLoop(p *peer) {
	defer l.wg.Done()
	backoff := l.cfg.MinBackoff
	for {
		c, err := l.dial(p)
		if err == nil {
			backoff = l.cfg.MinBackoff
			select {
			case <-c.done:
			case <-p.ctx.Done():
				return
			}
		} else if p.ctx.Err() != nil {
			return // removed, or the link closed
		} else {
			l.logDialError(p, err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-time.After(wait):
		case <-p.ctx.Done():
			return
		}
		backoff = min(2*backoff, l.cfg.MaxBackoff)
	}
}

func (l *Link) logDialError(p *peer, err error) {
	msg := err.Error()
	p.mu.Lock()
	repeat := p.lastDialErr == msg
	p.lastDialErr = msg
	p.mu.Unlock()
	if repeat {
		l.lg.Debug("cluster: cannot connect", "peer", p.Name.String(), "addr", p.Addr, "err", err)
		return
	}
	if errors.Is(err, ErrRefused) {
		l.lg.Warn("cluster: connection refused", "peer", p.Name.String(), "addr", p.Addr, "err", err)
		return
	}
	l.lg.Info("cluster: cannot connect; retrying", "peer", p.Name.String(), "addr", p.Addr, "err", err)
}

func (l *Link) dial(p *peer) (*conn, error) {
	ctx, cancel := context.WithTimeout(p.ctx, l.cfg.HandshakeTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", p.Addr)
	if err != nil {
		return nil, err
	}
	// the handshake ends with ctx: timed out, or the peer removed
	unwatch := context.AfterFunc(ctx, func() { nc.Close() })
	if l.cfg.TLS != nil {
		cfg := l.cfg.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = p.Name.Host
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("cluster: TLS handshake with %s: %w", p.Name, err)
		}
		nc = tc
	}
	err = l.hs.dial(nc, p.Name, p.ID)
	if !unwatch() {
		err = context.Cause(ctx)
	}
	if err != nil && !errors.Is(err, ErrRefused) {
		err = fmt.Errorf("cluster: handshake with %s at %s: %w", p.Name, p.Addr, err)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	c := l.established(p, nc)
	if c == nil {
		return nil, ErrClosed
	}
	return c, nil
}

func (l *Link) acceptLoop() {
	defer l.wg.Done()
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			l.lg.Error("cluster: accepting on the inter-node port", "err", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-l.done:
				return
			}
			continue
		}
		select {
		case l.sem <- struct{}{}:
		default:
			l.lg.Warn("cluster: too many connections in handshake; closing one", "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			nc.Close()
			<-l.sem
			return
		}
		l.pending[nc] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			l.serveAccepted(nc)
		}()
	}
}

func (l *Link) known(id uint64) (NodeName, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.peers[id]; p != nil {
		return p.Name, true
	}
	return NodeName{}, false
}

func (l *Link) serveAccepted(raw net.Conn) {
	defer func() {
		l.mu.Lock()
		delete(l.pending, raw)
		l.mu.Unlock()
		<-l.sem
	}()
	nc := raw
	nc.SetDeadline(time.Now().Add(l.cfg.HandshakeTimeout))
	if l.srvTLS != nil {
		tc := tls.Server(nc, l.srvTLS)
		if err := tc.Handshake(); err != nil {
			l.lg.Warn("cluster: TLS handshake failed; refused", "remote", raw.RemoteAddr().String(), "err", err)
			nc.Close()
			return
		}
		nc = tc
	}
	id, name, err := l.hs.accept(nc, l.known)
	if err != nil {
		l.logRefusal(raw, err)
		nc.Close()
		return
	}
	if id == 0 {
		l.serveRequest(nc, name)
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	p, perr := l.peer(id)
	if perr != nil || l.established(p, nc) == nil {
		nc.Close()
		return
	}
	l.lg.Debug("cluster: accepted", "peer", name.String())
}

func (l *Link) logRefusal(raw net.Conn, err error) {
	msg := err.Error()
	l.mu.Lock()
	repeat := l.lastRefusal == msg
	l.lastRefusal = msg
	l.mu.Unlock()
	lvl := slog.LevelWarn
	if repeat || !errors.Is(err, ErrRefused) {
		lvl = slog.LevelDebug // a probe or a scanner, or said before
	}
	l.lg.Log(context.Background(), lvl, "cluster: incoming connection refused", "remote", raw.RemoteAddr().String(), "err", err)
}

// established makes nc the peer's connection (replacing an older one,
// whose loss is announced first) and starts its reader and writer.
func (l *Link) established(p *peer, nc net.Conn) *conn {
	p.est.Lock()
	defer p.est.Unlock()
	select {
	case <-p.ctx.Done():
		return nil
	default:
	}
	if p.last != nil {
		// the previous connection, if not gone yet; if it is going, this
		// waits until its loss was announced
		l.drop(p.last, errors.New("replaced by a newer connection"))
	}
	c := &conn{nc: nc, p: p, done: make(chan struct{}), prev: p.last, readDone: make(chan struct{})}
	p.last = c
	p.mu.Lock()
	p.cur = c
	p.lastDialErr = ""
	p.mu.Unlock()
	l.lg.Info("cluster: connected", "peer", p.Name.String(), "remote", nc.RemoteAddr().String())
	l.notify(p.ID, true)
	l.wg.Add(2)
	go l.readLoop(c)
	go l.writeLoop(c)
	return c
}

// drop closes c; if it was its peer's connection, the queued frames are
// discarded, waiting senders fail and watchers hear of the loss.
func (l *Link) drop(c *conn, why error) {
	c.once.Do(func() {
		c.nc.Close()
		close(c.done)
		p := c.p
		p.mu.Lock()
		current := p.cur == c
		if current {
			p.cur = nil
			clear(p.urgent)
			clear(p.bulk)
			p.urgent, p.bulk = nil, nil
			p.urgentBytes, p.bulkBytes = 0, 0
			p.freeRoomLocked()
		}
		p.mu.Unlock()
		if !current {
			return
		}
		if errors.Is(why, ErrClosed) {
			l.lg.Debug("cluster: disconnected", "peer", p.Name.String())
		} else {
			l.lg.Warn("cluster: connection lost", "peer", p.Name.String(), "err", why)
		}
		l.notify(p.ID, false)
	})
}

func (l *Link) readLoop(c *conn) {
	defer l.wg.Done()
	defer close(c.readDone)
	if prev := c.prev; prev != nil {
		c.prev = nil
		<-prev.readDone // dropped already: it stops at its next frame
	}
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var hdr [frameHeader]byte
	var armed time.Time // when the read deadline was last pushed back
	for {
		if now := time.Now(); now.Sub(armed) > l.cfg.DeadAfter/4 {
			c.nc.SetReadDeadline(now.Add(l.cfg.DeadAfter))
			armed = now
		}
		k, payload, err := readFrame(r, &hdr, l.cfg.MaxFrame)
		if err != nil {
			select {
			case <-c.done:
			default:
				if errors.Is(err, ErrFrameTooLarge) {
					err = fmt.Errorf("%w from %s; both nodes must run the same Warren version", err, c.p.Name)
				}
			}
			l.drop(c, err)
			return
		}
		if k == KindControl {
			continue
		}
		select {
		case <-c.done:
			// dropped or replaced: frames still buffered from this
			// connection must not overtake a newer connection's
			return
		default:
		}
		l.hmu.RLock()
		h := l.handlers[k]
		l.hmu.RUnlock()
		if h == nil {
			l.warnKind(c.p, k)
			continue
		}
		h(c.p.ID, payload)
	}
}

func (l *Link) warnKind(p *peer, k Kind) {
	p.mu.Lock()
	if p.warnedKinds == nil {
		p.warnedKinds = map[Kind]bool{}
	}
	seen := p.warnedKinds[k]
	p.warnedKinds[k] = true
	p.mu.Unlock()
	if !seen {
		l.lg.Warn("cluster: frames of a kind this node does not handle are dropped; run the same Warren version on every node", "peer", p.Name.String(), "kind", k.String())
	}
}

// writeLoop writes the peer's frames on c, droppable ones first, through
// one buffer flushed whenever the queues are empty: frames queued
// together leave in one write.
func (l *Link) writeLoop(c *conn) {
	defer l.wg.Done()
	p := c.p
	w := bufio.NewWriterSize(c.nc, 64<<10)
	ka := time.NewTicker(l.cfg.Keepalive)
	defer ka.Stop()
	wrote := false
	var hdr [frameHeader]byte
	var batch []outFrame
	for {
		var bulk int
		var ok bool
		batch, bulk, ok = p.take(c, batch[:0])
		if !ok {
			return
		}
		if len(batch) > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(l.cfg.WriteTimeout))
			var err error
			for _, f := range batch {
				w.Write(appendFrameHeader(hdr[:0], f.kind, len(f.payload)))
				if _, err = w.Write(f.payload); err != nil {
					break
				}
			}
			clear(batch)
			wrote = true
			if bulk > 0 {
				p.mu.Lock()
				if p.cur == c {
					p.bulkBytes -= bulk
					p.freeRoomLocked()
				}
				p.mu.Unlock()
			}
			if err != nil {
				l.drop(c, err)
				return
			}
			continue
		}
		if w.Buffered() > 0 {
			runtime.Gosched() // let senders add to this write
			if p.pending() {
				continue
			}
			c.nc.SetWriteDeadline(time.Now().Add(l.cfg.WriteTimeout))
			if err := w.Flush(); err != nil {
				l.drop(c, err)
				return
			}
		}
		select {
		case <-p.wake:
		case <-c.done:
			return
		case <-ka.C:
			if !wrote {
				c.nc.SetWriteDeadline(time.Now().Add(l.cfg.WriteTimeout))
				w.Write(appendFrameHeader(hdr[:0], KindControl, 0))
				if err := w.Flush(); err != nil {
					l.drop(c, err)
					return
				}
			}
			wrote = false
		}
	}
}

func (p *peer) pending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.urgent) > 0 || len(p.bulk) > 0
}
