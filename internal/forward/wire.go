package forward

import (
	"encoding/binary"
	"errors"

	"github.com/warrenmq/warren/internal/queue"
)

// Every frame of kind cluster.KindQueue is one operation: an op byte, a
// 64-bit id (a publish sequence, consumer id or call id), then the op's
// fields. Strings are 16-bit length-prefixed, byte blocks 32-bit.
const (
	// to a queue's home
	opPublish = 1 + iota // seq, vhost, queues, message
	opConsume            // cid, vhost, queue, tag, flags, priority, credit
	opCancel             // cid
	opCredit             // cid, n
	opAck                // 0, vhost, queue, ids
	opDiscard            // 0, vhost, queue, ids
	opRequeue            // 0, vhost, queue, ids
	opGet                // call, vhost, queue, flags
	opPurge              // call, vhost, queue
	opCounts             // call, vhost, queue
	// from a queue's home
	opPublished  // seq, outcome
	opConsumeOk  // cid
	opConsumeErr // cid, code
	opDeliver    // cid, id, flags, message
	opCancelled  // cid
	opReply      // call, code, three counts, [id, flags, message]
	// added later: to a home, then from it
	opFigures      // call, vhost
	opFiguresReply // call, n, n × (name, figures)
	opReplyTo      // seq, vhost, reply name, message (answered by opPublished)
)

// reply codes
const (
	codeOK        = 0
	codeNotFound  = 1
	codeExclusive = 2
	codeEmpty     = 3
)

const (
	flagNoAck       = 1
	flagExclusive   = 2
	flagRedelivered = 4
	msgPersistent   = 1
	msgExpiration   = 2
)

var errShort = errors.New("forward: truncated frame")

type enc []byte

func frame(op byte, id uint64) enc {
	b := make(enc, 0, 64)
	b = append(b, op)
	return binary.BigEndian.AppendUint64(b, id)
}

func (b enc) u8(v byte) enc    { return append(b, v) }
func (b enc) u16(v uint16) enc { return binary.BigEndian.AppendUint16(b, v) }
func (b enc) u32(v uint32) enc { return binary.BigEndian.AppendUint32(b, v) }
func (b enc) u64(v uint64) enc { return binary.BigEndian.AppendUint64(b, v) }
func (b enc) str(s string) enc { return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...) }
func (b enc) blob(p []byte) enc {
	return append(binary.BigEndian.AppendUint32(b, uint32(len(p))), p...)
}

func (b enc) msg(m *queue.Message) enc {
	var f byte
	if m.Persistent {
		f |= msgPersistent
	}
	if m.HasExpiration {
		f |= msgExpiration
	}
	b = b.str(m.Exchange).str(m.RoutingKey).blob(m.Props).blob(m.Body).u8(f).u8(m.Priority)
	return b.u64(uint64(m.Expiration))
}

// dec reads fields in order; the first short read sets err and every
// later read returns zero values.
type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.err = errShort
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) u8() byte {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *dec) u16() uint16 {
	if p := d.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *dec) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *dec) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *dec) str() string  { return string(d.take(int(d.u16()))) }
func (d *dec) blob() []byte { return d.take(int(d.u32())) }

func (d *dec) msg() *queue.Message {
	m := &queue.Message{Exchange: d.str(), RoutingKey: d.str(), Props: d.blob(), Body: d.blob()}
	f := d.u8()
	m.Priority = d.u8()
	m.Expiration = int64(d.u64())
	m.Persistent = f&msgPersistent != 0
	m.HasExpiration = f&msgExpiration != 0
	if m.Body == nil {
		m.Body = []byte{}
	}
	return m
}

func (b enc) ids(ids []uint64) enc {
	b = b.u32(uint32(len(ids)))
	for _, id := range ids {
		b = b.u64(id)
	}
	return b
}

func (d *dec) ids() []uint64 {
	n := int(d.u32())
	if n > len(d.b)/8 {
		d.err = errShort
		return nil
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = d.u64()
	}
	return out
}

func (b enc) figures(name string, f queue.Figures) enc {
	b = b.str(name)
	for _, v := range []uint64{uint64(f.Ready), uint64(f.Unacked), uint64(f.Consumers), uint64(f.ReadyBytes), uint64(f.InMemory), uint64(f.InMemoryBytes),
		f.Stats.Published, f.Stats.Delivered, f.Stats.Acked, f.Stats.Redelivered, f.Stats.DeadLettered, f.Stats.Expired, f.Stats.Dropped} {
		b = b.u64(v)
	}
	return b
}

func (d *dec) figures() (string, queue.Figures) {
	name := d.str()
	var f queue.Figures
	f.Ready, f.Unacked, f.Consumers, f.ReadyBytes, f.InMemory = int(d.u64()), int(d.u64()), int(d.u64()), int(d.u64()), int(d.u64())
	f.InMemoryBytes = int64(d.u64())
	st := &f.Stats
	st.Published, st.Delivered, st.Acked, st.Redelivered, st.DeadLettered, st.Expired, st.Dropped = d.u64(), d.u64(), d.u64(), d.u64(), d.u64(), d.u64(), d.u64()
	return name, f
}
