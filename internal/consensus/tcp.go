package consensus

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// TCPTransport carries every group's messages between two nodes over one
// TCP connection per pair: the node with the lower id dials, both send on
// it, and it is redialled (with backoff) when it breaks. A connection
// starts with a hello frame proving the cluster cookie; a peer with
// another cookie is refused.
//
// Frames: 4-byte big-endian length, then envelopes, each a uvarint group
// id and a uvarint-length-prefixed raftpb.Message.
type TCPTransport struct {
	id     uint64
	cookie [32]byte
	lg     *slog.Logger
	ln     net.Listener

	mu     sync.Mutex
	host   *Host
	addrs  map[uint64]string
	peers  map[uint64]*peer
	closed bool
	wg     sync.WaitGroup
}

type peer struct {
	id  uint64
	out chan []Envelope

	mu   sync.Mutex
	conn net.Conn // current connection (nil: none)
	wake chan struct{}
}

const (
	helloMagic = "WRNR"
	maxFrame   = 64 << 20
	peerQueue  = 4096
)

// ListenTCP listens on addr for node id. peers maps the other nodes' ids
// to their addresses; cookie is the cluster's shared secret.
func ListenTCP(id uint64, addr string, peers map[uint64]string, cookie string, lg *slog.Logger) (*TCPTransport, error) {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("consensus: listening on %s: %w", addr, err)
	}
	t := &TCPTransport{id: id, cookie: sha256.Sum256([]byte("warren-raft\x00" + cookie)), lg: lg, ln: ln, addrs: map[uint64]string{}, peers: map[uint64]*peer{}}
	for pid, a := range peers {
		if pid != id {
			t.addrs[pid] = a
		}
	}
	return t, nil
}

// Addr is the listening address.
func (t *TCPTransport) Addr() net.Addr { return t.ln.Addr() }

// Start delivers incoming messages to h and connects to the peers.
func (t *TCPTransport) Start(h *Host) {
	t.mu.Lock()
	t.host = h
	for pid := range t.addrs {
		p := t.peerLocked(pid)
		if t.id < pid {
			t.wg.Add(1)
			go t.dialLoop(p)
		}
	}
	t.mu.Unlock()
	t.wg.Add(1)
	go t.acceptLoop()
}

func (t *TCPTransport) peerLocked(pid uint64) *peer {
	p := t.peers[pid]
	if p == nil {
		p = &peer{id: pid, out: make(chan []Envelope, peerQueue), wake: make(chan struct{}, 1)}
		t.peers[pid] = p
		t.wg.Add(1)
		go t.writeLoop(p)
	}
	return p
}

// Send queues envelopes for node to; when its queue is full (the peer is
// slow or gone) they are dropped, which Raft tolerates.
func (t *TCPTransport) Send(to uint64, envs []Envelope) {
	t.mu.Lock()
	defer t.mu.Unlock() // Close closes the queues under the same lock
	p := t.peers[to]
	if t.closed || p == nil {
		return
	}
	select {
	case p.out <- envs:
	default:
	}
}

// Close stops listening, closes every connection and waits for the
// transport's goroutines.
func (t *TCPTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	peers := t.peers
	for _, p := range peers {
		close(p.out)
	}
	t.mu.Unlock()
	err := t.ln.Close()
	for _, p := range peers {
		p.mu.Lock()
		if p.conn != nil {
			p.conn.Close()
		}
		p.mu.Unlock()
	}
	t.wg.Wait()
	return err
}

func (t *TCPTransport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

func (t *TCPTransport) hello() []byte {
	b := append([]byte(helloMagic), make([]byte, 8)...)
	binary.BigEndian.PutUint64(b[4:], t.id)
	return append(b, t.cookie[:]...)
}

// dialLoop keeps a connection to a higher-id peer.
func (t *TCPTransport) dialLoop(p *peer) {
	defer t.wg.Done()
	backoff := 50 * time.Millisecond
	for !t.isClosed() {
		t.mu.Lock()
		addr := t.addrs[p.id]
		t.mu.Unlock()
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			if _, err = c.Write(t.hello()); err == nil {
				backoff = 50 * time.Millisecond
				t.serve(p, c)
				continue
			}
			c.Close()
		}
		if t.isClosed() {
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (t *TCPTransport) acceptLoop() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			hello := make([]byte, len(helloMagic)+8+32)
			if _, err := io.ReadFull(c, hello); err != nil || string(hello[:4]) != helloMagic {
				t.lg.Warn("consensus: connection without a valid hello refused", "remote", c.RemoteAddr())
				c.Close()
				return
			}
			pid := binary.BigEndian.Uint64(hello[4:12])
			if subtle.ConstantTimeCompare(hello[12:], t.cookie[:]) != 1 {
				t.lg.Warn("consensus: peer with another cookie refused; check that every node has the same cookie", "remote", c.RemoteAddr(), "node", pid)
				c.Close()
				return
			}
			t.mu.Lock()
			_, known := t.addrs[pid]
			var p *peer
			if known && pid < t.id && !t.closed {
				p = t.peerLocked(pid)
			}
			t.mu.Unlock()
			if p == nil {
				t.lg.Warn("consensus: connection from an unknown node refused", "remote", c.RemoteAddr(), "node", pid)
				c.Close()
				return
			}
			c.SetReadDeadline(time.Time{})
			t.serve(p, c)
		}()
	}
}

// serve makes c the peer's connection and reads from it until it breaks.
func (t *TCPTransport) serve(p *peer, c net.Conn) {
	p.mu.Lock()
	if p.conn != nil {
		p.conn.Close() // a newer connection replaces the old one
	}
	p.conn = c
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	err := t.readLoop(c)
	p.mu.Lock()
	if p.conn == c {
		p.conn = nil
	}
	p.mu.Unlock()
	c.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) && !t.isClosed() {
		t.lg.Info("consensus: peer connection lost", "node", p.id, "err", err)
	}
}

func (t *TCPTransport) readLoop(c net.Conn) error {
	r := bufio.NewReaderSize(c, 256<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxFrame {
			return fmt.Errorf("frame of %d bytes", n)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		envs, err := decodeEnvelopes(buf)
		if err != nil {
			return err
		}
		t.mu.Lock()
		h := t.host
		t.mu.Unlock()
		if h != nil {
			h.Deliver(envs)
		}
	}
}

// writeLoop sends the peer's queue on its current connection, batching
// whatever is queued into one frame.
func (t *TCPTransport) writeLoop(p *peer) {
	defer t.wg.Done()
	var buf []byte
	for envs := range p.out {
		buf = buf[:0]
		buf = append(buf, 0, 0, 0, 0)
		buf = encodeEnvelopes(buf, envs)
	more:
		for len(buf) < 1<<20 {
			select {
			case e, ok := <-p.out:
				if !ok {
					break more
				}
				buf = encodeEnvelopes(buf, e)
			default:
				break more
			}
		}
		binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
		p.mu.Lock()
		c := p.conn
		p.mu.Unlock()
		if c == nil {
			continue // not connected: dropped, Raft retries
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(buf); err != nil {
			c.Close()
		}
	}
}

func encodeEnvelopes(b []byte, envs []Envelope) []byte {
	for _, e := range envs {
		mb, err := e.Msg.Marshal()
		if err != nil {
			continue
		}
		b = binary.AppendUvarint(b, e.Group)
		b = binary.AppendUvarint(b, uint64(len(mb)))
		b = append(b, mb...)
	}
	return b
}

func decodeEnvelopes(b []byte) ([]Envelope, error) {
	var out []Envelope
	for len(b) > 0 {
		g, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errors.New("bad group id")
		}
		b = b[k:]
		mb, rest, err := chunk(b)
		if err != nil {
			return nil, err
		}
		var m pb.Message
		if err := m.Unmarshal(mb); err != nil {
			return nil, fmt.Errorf("bad message: %w", err)
		}
		out = append(out, Envelope{Group: g, Msg: m})
		b = rest
	}
	return out, nil
}
