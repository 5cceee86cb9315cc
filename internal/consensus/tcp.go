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
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// TCPTransport carries every group's messages between two nodes over one
// TCP connection per pair: the node with the lower id dials, both send on
// it, and it is redialled (with backoff) when it breaks. A connection
// starts with a hello frame proving the cluster cookie; a peer with
// another cookie is refused.
//
// Frames: 4-byte big-endian length, then envelopes, each a uvarint of
// the group id shifted left once with the quiesce flag in bit 0, and a
// uvarint-length-prefixed raftpb.Message.
//
// Snapshots (MsgSnap) travel apart from the rest, so that a large one
// neither delays the heartbeats of every other group to that peer nor
// hits the frame limit: each peer has a small snapshot queue, and the
// writer sends a snapshot in chunk frames of snapChunk bytes (length
// word with its top bit set; then snapshot id, total size and offset),
// sending any queued ordinary frame before each chunk. The reader
// reassembles the chunks and waits for room in the host's inbox rather
// than dropping the snapshot. Whatever is dropped on the sending side
// (queue full, not connected, write failed, frame too large) is reported
// to the host (ReportUnreachable; ReportSnapshot for snapshots), and a
// snapshot whose last chunk was written is reported delivered, so Raft
// sends again when needed.
type TCPTransport struct {
	id     uint64
	cookie [32]byte
	lg     *slog.Logger
	ln     net.Listener

	framesOut, bytesOut atomic.Uint64

	mu     sync.Mutex
	host   *Host
	addrs  map[uint64]string
	peers  map[uint64]*peer
	closed bool
	wg     sync.WaitGroup
}

type peer struct {
	id    uint64
	out   chan []Envelope
	snaps chan Envelope

	mu   sync.Mutex
	conn net.Conn // current connection (nil: none)
	wake chan struct{}
}

const (
	helloMagic = "WRNR"
	maxFrame   = 64 << 20
	peerQueue  = 4096
	snapQueue  = 16
	chunkFlag  = 1 << 31
	maxSnap    = 1 << 30 // bytes of one encoded snapshot message
)

// snapChunk is the size of one snapshot chunk frame (a variable for tests).
var snapChunk = 256 << 10

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

// TransportStats count what a TCP transport wrote.
type TransportStats struct {
	Frames uint64 // frames written (each one write, at most one packet when small)
	Bytes  uint64
}

// Stats returns the transport's counters.
func (t *TCPTransport) Stats() TransportStats {
	return TransportStats{Frames: t.framesOut.Load(), Bytes: t.bytesOut.Load()}
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
		p = &peer{id: pid, out: make(chan []Envelope, peerQueue), snaps: make(chan Envelope, snapQueue), wake: make(chan struct{}, 1)}
		t.peers[pid] = p
		t.wg.Add(1)
		go t.writeLoop(p)
	}
	return p
}

// Send queues envelopes for node to; when its queue is full (the peer is
// slow or gone) they are dropped and reported to the host, which Raft
// tolerates. Snapshots go to the peer's snapshot queue.
func (t *TCPTransport) Send(to uint64, envs []Envelope) {
	var regular, lost []Envelope
	for _, e := range envs {
		if e.Msg.Type != pb.MsgSnap {
			regular = append(regular, e)
		}
	}
	t.mu.Lock()
	p := t.peers[to]
	h := t.host
	if t.closed || p == nil {
		t.mu.Unlock()
		return
	}
	if len(regular) > 0 {
		select {
		case p.out <- regular:
		default:
			lost = append(lost, regular...)
		}
	}
	for _, e := range envs {
		if e.Msg.Type == pb.MsgSnap {
			select {
			case p.snaps <- e:
			default:
				lost = append(lost, e)
			}
		}
	}
	t.mu.Unlock() // Close closes the queues under the same lock
	if h != nil && len(lost) > 0 {
		reportLost(h, to, lost)
	}
}

func (t *TCPTransport) report(to uint64, lost []Envelope) {
	t.mu.Lock()
	h := t.host
	t.mu.Unlock()
	if h != nil && len(lost) > 0 {
		reportLost(h, to, lost)
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
		close(p.snaps)
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
	var snap []byte // the snapshot being reassembled
	var snapID uint64
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		chunked := n&chunkFlag != 0
		n &^= chunkFlag
		if n > maxFrame {
			return fmt.Errorf("frame of %d bytes", n)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		var envs []Envelope
		if chunked {
			if len(buf) < 16 {
				return errors.New("short snapshot chunk")
			}
			id := binary.BigEndian.Uint64(buf)
			total, off := binary.BigEndian.Uint32(buf[8:]), binary.BigEndian.Uint32(buf[12:])
			data := buf[16:]
			if off == 0 {
				snap, snapID = make([]byte, 0, min(total, 64<<20)), id
			}
			if id != snapID || uint32(len(snap)) != off || total > maxSnap || uint64(off)+uint64(len(data)) > uint64(total) {
				return fmt.Errorf("snapshot chunk %d at %d of %d out of order", id, off, total)
			}
			snap = append(snap, data...)
			if uint32(len(snap)) < total {
				continue
			}
			var err error
			envs, err = decodeEnvelopes(snap)
			snap = nil
			if err != nil {
				return err
			}
		} else {
			var err error
			if envs, err = decodeEnvelopes(buf); err != nil {
				return err
			}
		}
		t.mu.Lock()
		h := t.host
		t.mu.Unlock()
		if h == nil {
			continue
		}
		if chunked {
			// a snapshot is too costly to drop: wait for room
			h.DeliverWait(envs, 5*time.Second)
		} else {
			h.Deliver(envs)
		}
	}
}

// writeLoop sends the peer's queues on its current connection: ordinary
// envelopes batched into frames first, then the current snapshot one
// chunk at a time.
func (t *TCPTransport) writeLoop(p *peer) {
	defer t.wg.Done()
	var buf []byte
	var snap *outSnap
	var snapSeq uint64
	out, snaps := p.out, p.snaps
	for out != nil {
		var envs []Envelope
		var ok bool
		select {
		case envs, ok = <-out: // ordinary traffic first
		default:
			if snap != nil {
				snap = t.writeChunk(p, snap)
				continue
			}
			select {
			case envs, ok = <-out:
			case e, sok := <-snaps:
				if !sok {
					snaps = nil
					continue
				}
				snapSeq++
				snap = &outSnap{env: e, id: snapSeq, data: encodeEnvelopes(nil, []Envelope{e})}
				if len(snap.data) > maxSnap {
					t.lg.Error("consensus: snapshot too large to send; raft will retry", "node", p.id, "group", e.Group, "bytes", len(snap.data))
					t.report(p.id, []Envelope{e})
					snap = nil
				}
				continue
			}
		}
		if !ok {
			out = nil
			break
		}
		sent := envs
		buf = buf[:0]
		buf = append(buf, 0, 0, 0, 0)
		buf = encodeEnvelopes(buf, envs)
	more:
		for len(buf) < 1<<20 {
			select {
			case e, ok := <-out:
				if !ok {
					out = nil
					break more
				}
				buf = encodeEnvelopes(buf, e)
				sent = append(sent, e...)
			default:
				break more
			}
		}
		if len(buf)-4 > maxFrame {
			t.lg.Error("consensus: message too large for a frame; dropped", "node", p.id, "bytes", len(buf)-4)
			t.report(p.id, sent)
			continue
		}
		binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
		if err := t.write(p, buf); err != nil {
			t.report(p.id, sent) // not connected or broken: Raft retries
		}
	}
	if snap != nil {
		t.report(p.id, []Envelope{snap.env})
	}
	for e := range p.snaps { // closed: fail what is left
		t.report(p.id, []Envelope{e})
	}
}

// outSnap is a snapshot being sent in chunks.
type outSnap struct {
	env  Envelope
	id   uint64
	data []byte
	off  int
	conn net.Conn // the connection its first chunk went on
}

// writeChunk writes the snapshot's next chunk; it returns nil once the
// snapshot is written (reported delivered) or failed (reported failed).
func (t *TCPTransport) writeChunk(p *peer, s *outSnap) *outSnap {
	n := min(snapChunk, len(s.data)-s.off)
	b := make([]byte, 4+16+n)
	binary.BigEndian.PutUint32(b, uint32(16+n)|chunkFlag)
	binary.BigEndian.PutUint64(b[4:], s.id)
	binary.BigEndian.PutUint32(b[12:], uint32(len(s.data)))
	binary.BigEndian.PutUint32(b[16:], uint32(s.off))
	copy(b[20:], s.data[s.off:s.off+n])
	p.mu.Lock()
	c := p.conn
	p.mu.Unlock()
	if s.off == 0 {
		s.conn = c
	}
	if c == nil || c != s.conn { // not connected, or reconnected mid-snapshot (the reader lost the start)
		t.report(p.id, []Envelope{s.env})
		return nil
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		c.Close()
		t.report(p.id, []Envelope{s.env})
		return nil
	}
	t.framesOut.Add(1)
	t.bytesOut.Add(uint64(len(b)))
	s.off += n
	if s.off < len(s.data) {
		return s
	}
	t.mu.Lock()
	h := t.host
	t.mu.Unlock()
	if h != nil {
		h.ReportSnapshot(p.id, s.env.Group, true)
	}
	return nil
}

var errNotConnected = errors.New("not connected")

// write sends b on the peer's current connection.
func (t *TCPTransport) write(p *peer, b []byte) error {
	p.mu.Lock()
	c := p.conn
	p.mu.Unlock()
	if c == nil {
		return errNotConnected
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		c.Close()
		return err
	}
	t.framesOut.Add(1)
	t.bytesOut.Add(uint64(len(b)))
	return nil
}

func encodeEnvelopes(b []byte, envs []Envelope) []byte {
	for _, e := range envs {
		mb, err := e.Msg.Marshal()
		if err != nil {
			continue
		}
		g := e.Group << 1
		if e.Quiesce {
			g |= 1
		}
		b = binary.AppendUvarint(b, g)
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
		out = append(out, Envelope{Group: g >> 1, Quiesce: g&1 != 0, Msg: m})
		b = rest
	}
	return out, nil
}
