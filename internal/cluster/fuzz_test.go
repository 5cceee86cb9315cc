package cluster

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/warrenmq/warren/internal/consensus"
)

// Seed corpora are in testdata/fuzz; go test runs them, go test -fuzz
// explores further.

func FuzzParseHandshake(f *testing.F) {
	hello := hsMsg{Type: msgHello, Version: protoVersion, ID: 7, Name: "n1@localhost", Peer: "n2@localhost"}
	f.Add(hello.marshal()[2:])
	hello.Proof = bytes.Repeat([]byte{1}, proofLen)
	f.Add(hello.marshal()[2:])
	f.Add((&hsMsg{Type: msgProof, Proof: make([]byte, proofLen)}).marshal()[2:])
	f.Add((&hsMsg{Type: msgRefuse, Reason: "no"}).marshal()[2:])
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseHandshake(b)
		if err != nil {
			if !errors.Is(err, errHandshakeFormat) {
				t.Fatalf("error %v does not wrap errHandshakeFormat", err)
			}
			return
		}
		// what parses re-encodes to the same bytes (refusals are cut)
		if again := m.marshal()[2:]; m.Type != msgRefuse && !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %q gave %q", b, again)
		}
		// and reads back from a stream split into single bytes
		got, err := readHandshake(iotest.OneByteReader(bytes.NewReader(m.marshal())))
		if err != nil || got.Type != m.Type || got.ID != m.ID || got.Name != m.Name || got.Peer != m.Peer || !bytes.Equal(got.Proof, m.Proof) {
			t.Fatalf("stream round trip of %+v: %+v %v", m, got, err)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrameHeader(nil, KindQueue, 3), []byte("abc"))
	f.Add(appendFrameHeader(nil, KindRaft, 0), []byte(nil))
	f.Add(appendFrameHeader(nil, KindControl, 1<<31), []byte("x"))
	f.Fuzz(func(t *testing.T, hdr, rest []byte) {
		const max = 1 << 12
		in := append(hdr, rest...)
		var h [frameHeader]byte
		k, p, err := readFrame(iotest.HalfReader(bytes.NewReader(in)), &h, max)
		if err != nil {
			if !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(p) > max {
			t.Fatalf("a %d-byte payload over the limit", len(p))
		}
		if out := append(appendFrameHeader(nil, k, len(p)), p...); !bytes.Equal(out, in[:len(out)]) {
			t.Fatalf("frame %q re-encodes to %q", in, out)
		}
	})
}

func FuzzDecodeEnvelopes(f *testing.F) {
	e := consensus.Envelope{Group: 1, Msg: pb.Message{Type: pb.MsgVote, To: 2, From: 1, Term: 5}}
	f.Add(appendEnvelope(nil, e, e.Msg.Size()))
	f.Fuzz(func(t *testing.T, b []byte) {
		envs, err := decodeEnvelopes(b)
		if err != nil {
			return
		}
		var again []byte
		for _, e := range envs {
			again = appendEnvelope(again, e, e.Msg.Size())
		}
		back, err := decodeEnvelopes(again)
		if err != nil || len(back) != len(envs) {
			t.Fatalf("re-encoding %d envelopes gave %d (%v)", len(envs), len(back), err)
		}
	})
}
