package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Kind says what a frame carries; each kind has its handler.
type Kind uint8

// Frame kinds.
const (
	// KindControl is the link's own (keepalives); it has no handler.
	KindControl Kind = 1
	// KindRaft carries consensus envelopes (RaftTransport).
	KindRaft Kind = 2
	// KindRaftChunk carries one chunk of a large Raft message (a
	// snapshot, or an append over the chunk size).
	KindRaftChunk Kind = 3
	// KindRaftAck answers a whole chunked message: delivered or not.
	KindRaftAck Kind = 4
	// KindQueue carries queue operations (forwarding, ADR 0005).
	KindQueue Kind = 16
)

func (k Kind) String() string {
	switch k {
	case KindControl:
		return "control"
	case KindRaft:
		return "raft"
	case KindRaftChunk:
		return "raft-chunk"
	case KindRaftAck:
		return "raft-ack"
	case KindQueue:
		return "queue"
	}
	return fmt.Sprintf("kind-%d", uint8(k))
}

// frameHeader is kind (1 byte) and payload length (4 bytes, big endian).
const frameHeader = 5

// DefaultMaxFrame bounds a frame's payload unless Config.MaxFrame says
// otherwise.
const DefaultMaxFrame = 16 << 20

// ErrFrameTooLarge is wrapped when a frame's payload exceeds the limit,
// on either side.
var ErrFrameTooLarge = errors.New("frame too large")

func appendFrameHeader(b []byte, k Kind, n int) []byte {
	b = append(b, byte(k))
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// readFrame reads one frame; a payload over max is an error before any
// of it is read or allocated.
func readFrame(r io.Reader, hdr *[frameHeader]byte, max int) (Kind, []byte, error) {
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	k := Kind(hdr[0])
	n := binary.BigEndian.Uint32(hdr[1:])
	if uint64(n) > uint64(max) {
		return k, nil, fmt.Errorf("%w: a %s frame of %d bytes exceeds the limit of %d bytes", ErrFrameTooLarge, k, n, max)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return k, nil, err
	}
	return k, p, nil
}
