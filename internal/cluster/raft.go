package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/warrenmq/warren/internal/consensus"
)

// RaftConfig connects a RaftTransport to its consensus host.
type RaftConfig struct {
	// Deliver hands envelopes received from another node to the host
	// (consensus.Host.Deliver); large says they came chunked (a
	// snapshot), worth waiting for room rather than dropping. It reports
	// whether the host took them.
	Deliver func(envs []consensus.Envelope, large bool) bool
	// Unreachable is told of envelopes of groups to node to that were
	// dropped (Host.ReportUnreachable).
	Unreachable func(to uint64, groups []uint64)
	// SnapshotStatus is told whether a snapshot (MsgSnap) sent to node
	// to for group reached its host (Host.ReportSnapshot).
	SnapshotStatus func(to, group uint64, delivered bool)
	// SnapshotTimeout bounds the wait for the receiver's answer once a
	// snapshot is written (default 1 min).
	SnapshotTimeout time.Duration
	// MaxMessage bounds one chunked message, and the chunked messages
	// being received from one peer together (default 1 GiB).
	MaxMessage int
	Logger     *slog.Logger
}

// raftChunk is the size of one chunk, and the largest envelope sent
// whole; envelopes are batched into frames up to it too.
const raftChunk = 1 << 20

// chunk header: message id, total size, offset
const chunkHeader = 24

// RaftTransport is a consensus.Transport over a Link. Envelopes travel
// batched in droppable frames (a peer that is slow or away makes them
// dropped and reported, which Raft tolerates). A snapshot, or any
// envelope over 1 MiB, travels apart in flow-controlled chunks, so it
// neither hits the frame limit nor delays other groups' heartbeats, and
// the receiver answers once it handed it to its host; a snapshot's
// outcome goes to RaftConfig.SnapshotStatus.
type RaftTransport struct {
	link   *Link
	cfg    RaftConfig
	lg     *slog.Logger
	seq    atomic.Uint64
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	pending  map[uint64]*pendingSnap         // chunked snapshots sent, by id
	asm      map[uint64]map[uint64]*assembly // from → id → chunks so far
	asmBytes map[uint64]int                  // from → bytes announced
}

type pendingSnap struct {
	to, group uint64
	timer     *time.Timer
}

type assembly struct {
	total int
	buf   []byte
}

// NewRaftTransport registers the Raft frame kinds on l.
func NewRaftTransport(l *Link, cfg RaftConfig) *RaftTransport {
	setDefault(&cfg.SnapshotTimeout, time.Minute)
	setDefault(&cfg.MaxMessage, 1<<30)
	if cfg.Logger == nil {
		cfg.Logger = l.lg
	}
	t := &RaftTransport{link: l, cfg: cfg, lg: cfg.Logger,
		pending: map[uint64]*pendingSnap{}, asm: map[uint64]map[uint64]*assembly{}, asmBytes: map[uint64]int{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	l.Handle(KindRaft, t.onRaft)
	l.Handle(KindRaftChunk, t.onChunk)
	l.Handle(KindRaftAck, t.onAck)
	l.Watch(t.onPeer)
	return t
}

// Close stops the chunked sends in progress and waits for them; later
// Sends are dropped.
func (t *RaftTransport) Close() error {
	t.mu.Lock()
	t.closed = true
	for id, ps := range t.pending {
		ps.timer.Stop()
		delete(t.pending, id)
	}
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	return nil
}

// Send implements consensus.Transport; it never blocks.
func (t *RaftTransport) Send(to uint64, envs []consensus.Envelope) {
	var frame []byte
	var groups []uint64
	flush := func() {
		if len(frame) == 0 {
			return
		}
		if err := t.link.TrySend(to, KindRaft, frame); err != nil {
			t.unreachable(to, groups, err)
		}
		frame, groups = nil, nil
	}
	for _, e := range envs {
		n := e.Msg.Size()
		if e.Msg.Type == pb.MsgSnap || n > raftChunk {
			t.sendChunked(to, e)
			continue
		}
		if len(frame)+n+24 > raftChunk {
			flush()
		}
		frame = appendEnvelope(frame, e, n)
		if !slices.Contains(groups, e.Group) {
			groups = append(groups, e.Group)
		}
	}
	flush()
}

func (t *RaftTransport) unreachable(to uint64, groups []uint64, err error) {
	t.lg.Debug("cluster: raft messages dropped", "to", to, "groups", groups, "err", err)
	if t.cfg.Unreachable != nil {
		t.cfg.Unreachable(to, groups)
	}
}

// sendChunked sends e in flow-controlled chunks on its own goroutine
// (Raft sends one snapshot per follower and group at a time, so these
// are few).
func (t *RaftTransport) sendChunked(to uint64, e consensus.Envelope) {
	id := t.seq.Add(1)
	snap := e.Msg.Type == pb.MsgSnap
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	if snap {
		t.pending[id] = &pendingSnap{to: to, group: e.Group}
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		data := appendEnvelope(nil, e, e.Msg.Size())
		if len(data) > t.cfg.MaxMessage {
			t.failChunked(to, id, e.Group, snap, fmt.Errorf("%w: a raft message of %d bytes for group %d exceeds the limit of %d bytes", ErrFrameTooLarge, len(data), e.Group, t.cfg.MaxMessage))
			return
		}
		for off := 0; off == 0 || off < len(data); {
			end := min(off+raftChunk, len(data))
			p := make([]byte, chunkHeader, chunkHeader+end-off)
			binary.BigEndian.PutUint64(p, id)
			binary.BigEndian.PutUint64(p[8:], uint64(len(data)))
			binary.BigEndian.PutUint64(p[16:], uint64(off))
			p = append(p, data[off:end]...)
			if err := t.link.Send(t.ctx, to, KindRaftChunk, p); err != nil {
				t.failChunked(to, id, e.Group, snap, err)
				return
			}
			off = end
		}
		if !snap {
			return
		}
		t.mu.Lock()
		if ps := t.pending[id]; ps != nil {
			ps.timer = time.AfterFunc(t.cfg.SnapshotTimeout, func() {
				t.finish(to, id, false, fmt.Errorf("no answer from node %d within %v", to, t.cfg.SnapshotTimeout))
			})
		}
		t.mu.Unlock()
	}()
}

func (t *RaftTransport) failChunked(to, id, group uint64, snap bool, err error) {
	if snap {
		t.finish(to, id, false, err)
	} else {
		t.unreachable(to, []uint64{group}, err)
	}
}

// finish reports a snapshot's outcome once.
func (t *RaftTransport) finish(to, id uint64, ok bool, err error) {
	t.mu.Lock()
	ps := t.pending[id]
	if ps == nil || ps.to != to {
		t.mu.Unlock()
		return
	}
	delete(t.pending, id)
	if ps.timer != nil {
		ps.timer.Stop()
	}
	t.mu.Unlock()
	if ok {
		t.lg.Debug("cluster: raft snapshot delivered", "to", to, "group", ps.group)
	} else {
		t.lg.Warn("cluster: raft snapshot not delivered; raft will send another", "to", to, "group", ps.group, "err", err)
	}
	if t.cfg.SnapshotStatus != nil {
		t.cfg.SnapshotStatus(to, ps.group, ok)
	}
}

func (t *RaftTransport) onPeer(id uint64, up bool) {
	if up {
		return
	}
	t.mu.Lock()
	var lost []uint64
	for sid, ps := range t.pending {
		if ps.to == id {
			lost = append(lost, sid)
		}
	}
	delete(t.asm, id)
	delete(t.asmBytes, id)
	t.mu.Unlock()
	for _, sid := range lost {
		t.finish(id, sid, false, fmt.Errorf("%w to node %d: connection lost", ErrNotConnected, id))
	}
}

func (t *RaftTransport) deliver(envs []consensus.Envelope, large bool) bool {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	return !closed && t.cfg.Deliver != nil && t.cfg.Deliver(envs, large)
}

func (t *RaftTransport) onRaft(from uint64, p []byte) {
	envs, err := decodeEnvelopes(p)
	if err != nil {
		t.lg.Error("cluster: undecodable raft frame dropped; run the same Warren version on every node", "from", from, "err", err)
		return
	}
	t.deliver(envs, false)
}

func (t *RaftTransport) onChunk(from uint64, p []byte) {
	if len(p) < chunkHeader {
		t.lg.Error("cluster: short raft chunk dropped", "from", from)
		return
	}
	id := binary.BigEndian.Uint64(p)
	total := binary.BigEndian.Uint64(p[8:])
	off := binary.BigEndian.Uint64(p[16:])
	p = p[chunkHeader:]
	t.mu.Lock()
	a := t.asm[from][id]
	if a == nil {
		if off != 0 {
			t.mu.Unlock()
			return // the rest of a message whose start was refused or lost
		}
		if total > uint64(t.cfg.MaxMessage-t.asmBytes[from]) {
			t.mu.Unlock()
			t.lg.Error("cluster: raft message refused: too large", "from", from, "bytes", total, "limit", t.cfg.MaxMessage)
			t.ack(from, id, false)
			return
		}
		a = &assembly{total: int(total), buf: make([]byte, 0, min(int(total), raftChunk))}
		if t.asm[from] == nil {
			t.asm[from] = map[uint64]*assembly{}
		}
		t.asm[from][id] = a
		t.asmBytes[from] += a.total
	}
	if off != uint64(len(a.buf)) || len(a.buf)+len(p) > a.total {
		t.dropAssemblyLocked(from, id, a)
		t.mu.Unlock()
		t.lg.Error("cluster: raft chunk out of sequence; message dropped", "from", from)
		t.ack(from, id, false)
		return
	}
	a.buf = append(a.buf, p...)
	done := len(a.buf) == a.total
	if done {
		t.dropAssemblyLocked(from, id, a)
	}
	t.mu.Unlock()
	if !done {
		return
	}
	envs, err := decodeEnvelopes(a.buf)
	if err != nil {
		t.lg.Error("cluster: undecodable raft message dropped; run the same Warren version on every node", "from", from, "err", err)
		t.ack(from, id, false)
		return
	}
	t.ack(from, id, t.deliver(envs, true))
}

func (t *RaftTransport) dropAssemblyLocked(from, id uint64, a *assembly) {
	delete(t.asm[from], id)
	t.asmBytes[from] -= a.total
}

func (t *RaftTransport) ack(to, id uint64, ok bool) {
	p := binary.BigEndian.AppendUint64(nil, id)
	if ok {
		p = append(p, 1)
	} else {
		p = append(p, 0)
	}
	if err := t.link.TrySend(to, KindRaftAck, p); err != nil {
		t.lg.Debug("cluster: raft answer dropped (the sender times out)", "to", to, "err", err)
	}
}

func (t *RaftTransport) onAck(from uint64, p []byte) {
	if len(p) != 9 {
		t.lg.Error("cluster: malformed raft answer dropped", "from", from)
		return
	}
	t.finish(from, binary.BigEndian.Uint64(p), p[8] == 1, errors.New("the receiving node could not take it"))
}

// Envelopes on the wire: group id (uvarint), flags (one byte: bit 0 is
// consensus.Envelope.Quiesce, the others reserved and zero), message
// length (uvarint), raftpb.Message.
func appendEnvelope(b []byte, e consensus.Envelope, size int) []byte {
	b = binary.AppendUvarint(b, e.Group)
	var flags byte
	if e.Quiesce {
		flags |= flagQuiesce
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(size))
	b = slices.Grow(b, size)
	n, _ := e.Msg.MarshalTo(b[len(b) : len(b)+size]) // sized by Size(): cannot fail
	return b[:len(b)+n]
}

// flagQuiesce marks an envelope whose heartbeat quiesces its group.
const flagQuiesce = 1

var errEnvelope = errors.New("malformed raft envelope")

func decodeEnvelopes(b []byte) ([]consensus.Envelope, error) {
	var out []consensus.Envelope
	for len(b) > 0 {
		g, k := binary.Uvarint(b)
		if k <= 0 || len(b) < k+1 {
			return nil, errEnvelope
		}
		flags := b[k]
		b = b[k+1:]
		if flags&^flagQuiesce != 0 {
			return nil, fmt.Errorf("%w: unknown flags %#x", errEnvelope, flags)
		}
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errEnvelope
		}
		var m pb.Message
		if err := m.Unmarshal(b[k : k+int(n)]); err != nil {
			return nil, fmt.Errorf("%w: %w", errEnvelope, err)
		}
		out = append(out, consensus.Envelope{Group: g, Msg: m, Quiesce: flags&flagQuiesce != 0})
		b = b[k+int(n):]
	}
	return out, nil
}
