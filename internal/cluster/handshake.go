package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The handshake proves that both ends hold the cluster cookie without
// sending it (ADR 0005, "The inter-node port"). D dials A:
//
//	D → A  hello  {version, id, nonce Nd, name D, peer A (whom D dialled)}
//	A → D  hello  {version, id, nonce Na, name A, peer D,
//	               proof HMAC(cookie, "accept" ‖ A ‖ Nd ‖ D)}
//	D → A  proof  {HMAC(cookie, "dial" ‖ D ‖ Na ‖ A)}
//	A → D  ok
//
// (role and own name are each followed by a zero byte, which neither
// can contain). Either side may answer with refuse {reason} instead and
// close; the reason is logged on both sides. Each proof covers the other
// side's fresh nonce, so a recorded handshake cannot be replayed, and
// its role, so one side's proof is no use as the other's. Without TLS a
// relay between two members is not detected (the cookie authenticates
// the nodes, not the channel); use TLS where the network is not trusted.
//
// On the wire each message is a 2-byte big-endian length (at most
// maxHandshakeMsg) and a body whose first byte is its type.

const (
	protoVersion    = 1
	handshakeMagic  = "WRNL"
	maxHandshakeMsg = 1024
	nonceLen        = 32
	proofLen        = sha256.Size
	maxReasonLen    = 900
)

const (
	msgHello  = 'H'
	msgProof  = 'P'
	msgOK     = 'K'
	msgRefuse = 'R'
)

// hsMsg is one handshake message (the fields its type uses).
type hsMsg struct {
	Type    byte
	Version byte
	ID      uint64
	Nonce   [nonceLen]byte
	Name    string
	Peer    string
	Proof   []byte // empty or proofLen bytes
	Reason  string
}

var errHandshakeFormat = errors.New("malformed handshake message")

// ErrRefused is wrapped by every handshake refusal, ours or the peer's.
var ErrRefused = errors.New("connection refused")

// RefusedError is a handshake refusal with its reason.
type RefusedError struct {
	Reason string
	ByPeer bool // the peer refused us (else we refused it)
}

func (e *RefusedError) Error() string {
	if e.ByPeer {
		return "cluster: refused by the peer: " + e.Reason
	}
	return "cluster: refused: " + e.Reason
}

func (e *RefusedError) Unwrap() error { return ErrRefused }

func (m *hsMsg) marshal() []byte {
	b := make([]byte, 2, 128)
	b = append(b, m.Type)
	switch m.Type {
	case msgHello:
		b = append(b, handshakeMagic...)
		b = append(b, m.Version)
		b = binary.BigEndian.AppendUint64(b, m.ID)
		b = append(b, m.Nonce[:]...)
		b = appendStr8(b, m.Name)
		b = appendStr8(b, m.Peer)
		b = appendStr8(b, string(m.Proof))
	case msgProof:
		b = append(b, m.Proof...)
	case msgRefuse:
		r := m.Reason
		if len(r) > maxReasonLen {
			r = r[:maxReasonLen]
		}
		b = append(b, r...)
	}
	binary.BigEndian.PutUint16(b, uint16(len(b)-2))
	return b
}

func appendStr8(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

// parseHandshake decodes one message body (without its length).
func parseHandshake(b []byte) (hsMsg, error) {
	if len(b) == 0 || len(b) > maxHandshakeMsg {
		return hsMsg{}, errHandshakeFormat
	}
	m := hsMsg{Type: b[0]}
	b = b[1:]
	switch m.Type {
	case msgHello:
		if len(b) < len(handshakeMagic)+1+8+nonceLen || string(b[:4]) != handshakeMagic {
			return hsMsg{}, errHandshakeFormat
		}
		b = b[4:]
		m.Version = b[0]
		m.ID = binary.BigEndian.Uint64(b[1:9])
		copy(m.Nonce[:], b[9:9+nonceLen])
		b = b[9+nonceLen:]
		var proof string
		for _, f := range []*string{&m.Name, &m.Peer, &proof} {
			if len(b) < 1 || len(b) < 1+int(b[0]) {
				return hsMsg{}, errHandshakeFormat
			}
			*f = string(b[1 : 1+b[0]])
			b = b[1+b[0]:]
		}
		if len(b) != 0 || (len(proof) != 0 && len(proof) != proofLen) {
			return hsMsg{}, errHandshakeFormat
		}
		if proof != "" {
			m.Proof = []byte(proof)
		}
	case msgProof:
		if len(b) != proofLen {
			return hsMsg{}, errHandshakeFormat
		}
		m.Proof = append([]byte(nil), b...)
	case msgOK:
		if len(b) != 0 {
			return hsMsg{}, errHandshakeFormat
		}
	case msgRefuse:
		m.Reason = string(b)
	default:
		return hsMsg{}, errHandshakeFormat
	}
	return m, nil
}

func readHandshake(r io.Reader) (hsMsg, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return hsMsg{}, err
	}
	n := binary.BigEndian.Uint16(l[:])
	if n == 0 || n > maxHandshakeMsg {
		return hsMsg{}, fmt.Errorf("%w (length %d): the peer is not a Warren node, or speaks another version", errHandshakeFormat, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return hsMsg{}, err
	}
	m, err := parseHandshake(b)
	if err != nil {
		return hsMsg{}, fmt.Errorf("%w: the peer is not a Warren node, or speaks another version", err)
	}
	return m, nil
}

// proof is HMAC-SHA256(cookie, role ‖ own name ‖ peer's nonce ‖ peer name).
func proof(cookie []byte, role string, own NodeName, peerNonce [nonceLen]byte, peer string) []byte {
	h := hmac.New(sha256.New, cookie)
	h.Write([]byte(role))
	h.Write([]byte{0})
	h.Write([]byte(own.String()))
	h.Write([]byte{0})
	h.Write(peerNonce[:])
	h.Write([]byte(peer))
	return h.Sum(nil)
}

func newNonce() [nonceLen]byte {
	var n [nonceLen]byte
	rand.Read(n[:]) // never fails (crypto/rand)
	return n
}

// handshaker runs one side of the handshake on rw.
type handshaker struct {
	self   NodeName
	id     uint64
	cookie []byte
	// requests: a dialler with id 0 (not a member yet) is let in to send
	// one request (a join), see request.go.
	requests bool
}

func cookieMismatch(a, b string) string {
	return fmt.Sprintf("the cookies of %s and %s differ: copy the cookie file from one node to the other", a, b)
}

func (h *handshaker) refuse(w io.Writer, reason string) error {
	m := hsMsg{Type: msgRefuse, Reason: reason}
	w.Write(m.marshal()) // best effort: the connection closes next
	return &RefusedError{Reason: reason}
}

// expect reads the next message, turning a refusal into an error.
func expect(r io.Reader, typ byte) (hsMsg, error) {
	m, err := readHandshake(r)
	if err != nil {
		return m, err
	}
	if m.Type == msgRefuse {
		return m, &RefusedError{Reason: m.Reason, ByPeer: true}
	}
	if m.Type != typ {
		return m, fmt.Errorf("%w: expected %q, got %q", errHandshakeFormat, typ, m.Type)
	}
	return m, nil
}

// dial runs the dialling side towards the node want with id wantID.
func (h *handshaker) dial(rw io.ReadWriter, want NodeName, wantID uint64) error {
	nonce := newNonce()
	hello := hsMsg{Type: msgHello, Version: protoVersion, ID: h.id, Nonce: nonce, Name: h.self.String(), Peer: want.String()}
	if _, err := rw.Write(hello.marshal()); err != nil {
		return err
	}
	m, err := expect(rw, msgHello)
	if err != nil {
		return err
	}
	switch {
	case m.Version != protoVersion:
		return h.refuse(rw, fmt.Sprintf("%s speaks inter-node protocol version %d, %s speaks %d: run the same Warren version on both", m.Name, m.Version, h.self, protoVersion))
	case m.Name != want.String():
		return h.refuse(rw, fmt.Sprintf("dialled %s but reached %s: check the address %s resolves to", want, m.Name, want))
	case wantID != 0 && m.ID != wantID:
		return h.refuse(rw, fmt.Sprintf("%s answers with node id %d, %s knows it as %d: the node was reset or replaced; remove it with forget_cluster_node and join it again", m.Name, m.ID, h.self, wantID))
	case !hmac.Equal(m.Proof, proof(h.cookie, "accept", want, nonce, h.self.String())):
		return h.refuse(rw, cookieMismatch(h.self.String(), want.String()))
	}
	p := hsMsg{Type: msgProof, Proof: proof(h.cookie, "dial", h.self, m.Nonce, want.String())}
	if _, err := rw.Write(p.marshal()); err != nil {
		return err
	}
	_, err = expect(rw, msgOK)
	return err
}

// accept runs the accepting side; known returns the name of a member id.
func (h *handshaker) accept(rw io.ReadWriter, known func(id uint64) (NodeName, bool)) (uint64, NodeName, error) {
	m, err := expect(rw, msgHello)
	if err != nil {
		return 0, NodeName{}, err
	}
	peer, perr := ParseNodeName(m.Name)
	switch {
	case m.Version != protoVersion:
		return 0, NodeName{}, h.refuse(rw, fmt.Sprintf("%s speaks inter-node protocol version %d, %s speaks %d: run the same Warren version on both", m.Name, m.Version, h.self, protoVersion))
	case perr != nil || peer.String() != m.Name:
		return 0, NodeName{}, h.refuse(rw, fmt.Sprintf("%q is not a node name (name@host)", m.Name))
	case m.Peer != h.self.String():
		return 0, NodeName{}, h.refuse(rw, fmt.Sprintf("dialled %s but reached %s: check the address %s resolves to", m.Peer, h.self, m.Peer))
	}
	name, ok := known(m.ID)
	if m.ID == 0 && h.requests {
		name, ok = peer, true // a request (join_cluster) from a node that is not a member yet
	}
	switch {
	case !ok && m.ID == 0:
		return 0, NodeName{}, h.refuse(rw, fmt.Sprintf("%s does not take requests from nodes that are not members (it is not ready to be joined yet); retry", h.self))
	case !ok:
		return 0, NodeName{}, h.refuse(rw, fmt.Sprintf("%s does not know node %s (id %d): it is not a member of this cluster; join it with warrenctl join_cluster %s", h.self, peer, m.ID, h.self))
	case name != peer:
		return 0, NodeName{}, h.refuse(rw, fmt.Sprintf("node id %d is %s in the membership of %s, not %s: check the node names", m.ID, name, h.self, peer))
	}
	nonce := newNonce()
	hello := hsMsg{Type: msgHello, Version: protoVersion, ID: h.id, Nonce: nonce, Name: h.self.String(), Peer: m.Name,
		Proof: proof(h.cookie, "accept", h.self, m.Nonce, m.Name)}
	if _, err := rw.Write(hello.marshal()); err != nil {
		return 0, NodeName{}, err
	}
	p, err := expect(rw, msgProof)
	if err != nil {
		return 0, NodeName{}, err
	}
	if !hmac.Equal(p.Proof, proof(h.cookie, "dial", peer, nonce, h.self.String())) {
		return 0, NodeName{}, h.refuse(rw, cookieMismatch(h.self.String(), peer.String()))
	}
	if _, err := rw.Write((&hsMsg{Type: msgOK}).marshal()); err != nil {
		return 0, NodeName{}, err
	}
	return m.ID, peer, nil
}
