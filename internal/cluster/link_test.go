package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/warrenmq/warren/internal/consensus"
)

func TestFramesFlowBothWaysAfterTheHandshake(t *testing.T) {
	a := startNode(t, fastConfig("n1@localhost", 1, "secret"))
	b := startNode(t, fastConfig("n2@localhost", 2, "secret"))
	var ina, inb inbox
	a.Handle(KindQueue, ina.handler)
	b.Handle(KindQueue, inb.handler)
	var mu sync.Mutex
	var events []string
	a.Watch(func(id uint64, up bool) { mu.Lock(); events = append(events, fmt.Sprint(id, up)); mu.Unlock() })
	meet(t, a, b)
	waitConnected(t, a, b)

	for i := range 100 {
		if err := a.Send(ctxT(t, 5*time.Second), 2, KindQueue, fmt.Appendf(nil, "a%d", i)); err != nil {
			t.Fatal(err)
		}
		if err := b.TrySend(1, KindQueue, fmt.Appendf(nil, "b%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every frame", func() bool { return len(ina.list()) == 100 && len(inb.list()) == 100 })
	for i := range 100 { // in order, each from the right node
		if got, want := inb.list()[i], fmt.Sprintf("1:a%d", i); got != want {
			t.Fatalf("b's frame %d = %q, want %q", i, got, want)
		}
		if got, want := ina.list()[i], fmt.Sprintf("2:b%d", i); got != want {
			t.Fatalf("a's frame %d = %q, want %q", i, got, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(events, []string{"2 true"}) {
		t.Fatalf("a's peer events = %v, want [2 true]", events)
	}
	if strings.Contains(a.logs.String(), "refused") || strings.Contains(b.logs.String(), "refused") {
		t.Fatalf("a refusal was logged:\n%s\n%s", a.logs, b.logs)
	}
}

func TestWrongCookieIsRefusedWithTheReasonOnBothSides(t *testing.T) {
	a := startNode(t, fastConfig("n1@localhost", 1, "one cookie"))
	b := startNode(t, fastConfig("n2@localhost", 2, "another cookie"))
	meet(t, a, b)
	// a dials: it finds b's proof wrong and tells b why
	want := "the cookies of n1@localhost and n2@localhost differ: copy the cookie file from one node to the other"
	a.logs.waitLog(t, "the dialling node", want)
	b.logs.waitLog(t, "the dialled node", want)
	if a.Connected(2) || b.Connected(1) {
		t.Fatal("nodes with different cookies connected")
	}
	if strings.Contains(a.logs.String(), "another cookie") || strings.Contains(b.logs.String(), "one cookie") {
		t.Fatal("a cookie was logged")
	}
}

func TestDiallingTheWrongNodeIsRefused(t *testing.T) {
	a := startNode(t, fastConfig("n1@localhost", 1, "secret"))
	c := startNode(t, fastConfig("n3@localhost", 2, "secret"))
	c.AddPeer(a.entry())
	// a believes n2@localhost (id 2) is at c's address
	if err := a.AddPeer(Peer{ID: 2, Name: MustParseNodeName("n2@localhost"), Addr: c.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	want := "dialled n2@localhost but reached n3@localhost"
	a.logs.waitLog(t, "the dialling node", want)
	c.logs.waitLog(t, "the dialled node", want)
	if a.Connected(2) || c.Connected(1) {
		t.Fatal("connected to the wrong node")
	}
}

func TestAnUnknownNodeIsRefused(t *testing.T) {
	a := startNode(t, fastConfig("n1@localhost", 1, "secret"))
	b := startNode(t, fastConfig("n2@localhost", 2, "secret"))
	a.AddPeer(b.entry()) // b does not know a
	want := "n2@localhost does not know node n1@localhost (id 1)"
	a.logs.waitLog(t, "the dialling node", want)
	b.logs.waitLog(t, "the dialled node", want)
	if a.Connected(2) {
		t.Fatal("connected to a node that does not know us")
	}
}

func TestAReplayedHandshakeIsRefused(t *testing.T) {
	b := startNode(t, fastConfig("n2@localhost", 2, "secret"))
	b.AddPeer(Peer{ID: 1, Name: MustParseNodeName("n1@localhost"), Addr: "127.0.0.1:1"})
	// a genuine dialler, recording what it sends
	nc, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Conn: nc}
	hs := handshaker{self: MustParseNodeName("n1@localhost"), id: 1, cookie: []byte("secret")}
	if err := hs.dial(rec, b.name, 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the genuine connection", func() bool { return b.Connected(1) })
	nc.Close()
	// an attacker replays it
	nc2, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	nc2.Write(rec.sent)
	var reason string
	for { // hello from b, then its refusal
		m, err := readHandshake(nc2)
		if err != nil {
			t.Fatalf("reading b's answers to a replay: %v (reason so far %q)", err, reason)
		}
		if m.Type == msgRefuse {
			reason = m.Reason
			break
		}
		if m.Type == msgOK {
			t.Fatal("a replayed handshake was accepted")
		}
	}
	if !strings.Contains(reason, "cookies of n2@localhost and n1@localhost differ") {
		t.Fatalf("refusal %q", reason)
	}
}

type recorder struct {
	net.Conn
	sent []byte
}

func (r *recorder) Write(p []byte) (int, error) {
	r.sent = append(r.sent, p...)
	return r.Conn.Write(p)
}

func TestUnauthenticatedInputIsBounded(t *testing.T) {
	cfg := fastConfig("n2@localhost", 2, "secret")
	cfg.HandshakeTimeout = 300 * time.Millisecond
	b := startNode(t, cfg)
	for name, send := range map[string][]byte{
		"an oversized message": {0xff, 0xff, 'H'},
		"an AMQP client":       []byte("AMQP\x00\x00\x09\x01"),
		"silence":              nil,
		"a truncated hello":    {0, 60, 'H', 'W', 'R'},
	} {
		nc, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(send)
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(nc); errors.Is(err, os.ErrDeadlineExceeded) { // closed by b, not by our deadline
			t.Fatalf("%s: the connection stayed open", name)
		}
		nc.Close()
	}
}

func TestReconnectsAfterThePeerRestarts(t *testing.T) {
	a := startNode(t, fastConfig("n1@localhost", 1, "secret"))
	b := startNode(t, fastConfig("n2@localhost", 2, "secret"))
	var mu sync.Mutex
	var events []string
	a.Watch(func(id uint64, up bool) { mu.Lock(); events = append(events, fmt.Sprint(id, up)); mu.Unlock() })
	meet(t, a, b)
	waitConnected(t, a, b)

	addr := b.Addr().String()
	b.Close()
	waitFor(t, "a to see b gone", func() bool { return !a.Connected(2) })
	if err := a.Send(ctxT(t, time.Second), 2, KindQueue, []byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Send to a stopped peer: %v, want ErrNotConnected", err)
	}
	cfg := fastConfig("n2@localhost", 2, "secret")
	cfg.Listen = addr
	b2 := startNode(t, cfg)
	var in inbox
	b2.Handle(KindQueue, in.handler)
	b2.AddPeer(a.entry())
	waitConnected(t, a, b2)
	if err := a.Send(ctxT(t, 5*time.Second), 2, KindQueue, []byte("again")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the frame after the restart", func() bool { return slices.Equal(in.list(), []string{"1:again"}) })
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(events, []string{"2 true", "2 false", "2 true"}) {
		t.Fatalf("a's peer events = %v", events)
	}
}

// selfSigned returns a CA and a certificate it signed for localhost,
// usable by servers and clients.
func selfSigned(t *testing.T) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "warren test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTLS(t *testing.T) {
	pool, cert := selfSigned(t)
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}
	ca := fastConfig("n1@localhost", 2, "secret")
	cb := fastConfig("n2@localhost", 3, "secret")
	ca.TLS, cb.TLS = tlsCfg, tlsCfg
	a, b := startNode(t, ca), startNode(t, cb)
	var in inbox
	b.Handle(KindQueue, in.handler)
	meet(t, a, b)
	waitConnected(t, a, b)
	if err := a.Send(ctxT(t, 5*time.Second), 3, KindQueue, []byte("encrypted")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the frame", func() bool { return slices.Equal(in.list(), []string{"2:encrypted"}) })
	bp, _ := b.Link.peer(2)
	bp.mu.Lock()
	_, isTLS := bp.cur.nc.(*tls.Conn)
	bp.mu.Unlock()
	if !isTLS {
		t.Fatal("the connection is not TLS")
	}

	// a node whose client certificate the cluster's CA did not sign is
	// refused (it trusts b's certificate: mutual authentication)
	_, other := selfSigned(t)
	cc := fastConfig("n0@localhost", 1, "secret")
	cc.TLS = &tls.Config{Certificates: []tls.Certificate{other}, RootCAs: pool}
	c := startNode(t, cc)
	b.AddPeer(c.entry())
	c.AddPeer(b.entry())
	b.logs.waitLog(t, "the dialled node", "TLS handshake failed")
	c.logs.waitLog(t, "the dialling node", "handshake with n2@localhost at "+b.Addr().String()+": remote error: tls:")
	if b.Connected(1) {
		t.Fatal("a node with an unknown certificate connected")
	}

	// and so is one without TLS
	d := startNode(t, fastConfig("n4@localhost", 4, "secret"))
	b.AddPeer(d.entry())
	d.AddPeer(b.entry())
	b.logs.waitLog(t, "the TLS node", "TLS handshake with n4@localhost")
	d.logs.waitLog(t, "the plain node", "incoming connection refused")
	if b.Connected(4) {
		t.Fatal("a node without TLS connected to one with TLS")
	}
}

// stalledPeer completes the handshake as node 2 (accepting) and then
// never reads.
func stalledPeer(t *testing.T, dialer Peer) (Peer, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			hs := handshaker{self: MustParseNodeName("n2@localhost"), id: 2, cookie: []byte("secret")}
			hs.accept(nc, func(id uint64) (NodeName, bool) { return dialer.Name, id == dialer.ID })
		}
	}()
	stop := func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
	t.Cleanup(stop)
	return Peer{ID: 2, Name: MustParseNodeName("n2@localhost"), Addr: ln.Addr().String()}, stop
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestASlowPeerBlocksFlowControlledSendersAndDropsDroppableFrames(t *testing.T) {
	cfg := fastConfig("n1@localhost", 1, "secret")
	cfg.MaxQueued = 1 << 20
	cfg.MaxDroppable = 256 << 10
	cfg.WriteTimeout, cfg.DeadAfter = time.Hour, time.Hour // the stalled peer stays connected
	a := startNode(t, cfg)
	fake, _ := stalledPeer(t, a.entry())
	a.AddPeer(fake)
	waitFor(t, "the connection", func() bool { return a.Connected(2) })

	// fill the socket buffers and the queue until Send blocks
	payload := make([]byte, 64<<10)
	sent := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := a.Send(ctx, 2, KindQueue, payload)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if sent++; sent > 100000 {
			t.Fatal("Send never blocked on a peer that does not read")
		}
	}
	p, _ := a.Link.peer(2)
	queued := func() int { p.mu.Lock(); defer p.mu.Unlock(); return p.bulkBytes }
	if q := queued(); q > cfg.MaxQueued || q < cfg.MaxQueued-len(payload) {
		t.Fatalf("blocked with %d bytes queued, bound %d", q, cfg.MaxQueued)
	}

	// many more senders: each waits and gives up; memory stays flat
	before := heap()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 8 {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				err := a.Send(ctx, 2, KindQueue, make([]byte, 256<<10))
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Send to a full peer: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if q := queued(); q > cfg.MaxQueued {
		t.Fatalf("%d bytes queued, bound %d", q, cfg.MaxQueued)
	}
	if grown := int64(heap()) - int64(before); grown > 4<<20 {
		t.Fatalf("heap grew by %d bytes while 32 MiB of sends waited on a full peer", grown)
	}

	// droppable frames: refused once their own bound is reached
	var full error
	for i := 0; full == nil; i++ {
		full = a.TrySend(2, KindRaft, make([]byte, 16<<10))
		if i > 1000 {
			t.Fatal("TrySend never failed on a peer that does not read")
		}
	}
	if !errors.Is(full, ErrQueueFull) {
		t.Fatalf("TrySend to a full peer: %v, want ErrQueueFull", full)
	}

	// the Raft transport reports what it drops, per group
	var mu sync.Mutex
	var reported [][]uint64
	rt := NewRaftTransport(a.Link, RaftConfig{Unreachable: func(to uint64, groups []uint64) {
		mu.Lock()
		reported = append(reported, append([]uint64{to}, groups...))
		mu.Unlock()
	}})
	defer rt.Close()
	rt.Send(2, []consensus.Envelope{
		{Group: 7, Msg: pb.Message{Type: pb.MsgHeartbeat, To: 2, From: 1}},
		{Group: 9, Msg: pb.Message{Type: pb.MsgApp, To: 2, From: 1, Entries: []pb.Entry{{Data: make([]byte, 300<<10)}}}},
	})
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 1 || !slices.Equal(reported[0], []uint64{2, 7, 9}) {
		t.Fatalf("reported unreachable: %v, want [[2 7 9]]", reported)
	}
}

func TestFramesOverTheLimit(t *testing.T) {
	cfg := fastConfig("n2@localhost", 2, "secret")
	cfg.MaxFrame = 1 << 10
	b := startNode(t, cfg)
	b.AddPeer(Peer{ID: 1, Name: MustParseNodeName("n1@localhost"), Addr: "127.0.0.1:1"})
	// sending one: refused at once
	if err := b.TrySend(1, KindQueue, make([]byte, 2<<10)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("TrySend of an oversized frame: %v", err)
	}
	if err := b.Send(context.Background(), 1, KindQueue, make([]byte, 2<<10)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("Send of an oversized frame: %v", err)
	}
	// receiving one: the connection is closed with a clear error
	nc, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	hs := handshaker{self: MustParseNodeName("n1@localhost"), id: 1, cookie: []byte("secret")}
	if err := hs.dial(nc, b.name, 2); err != nil {
		t.Fatal(err)
	}
	nc.Write(appendFrameHeader(nil, KindQueue, 1<<30))
	b.logs.waitLog(t, "the receiving node", "a queue frame of 1073741824 bytes exceeds the limit of 1024 bytes from n1@localhost")
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := nc.Read(make([]byte, 64)); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("the connection was not closed: %v", err)
			}
			break
		}
	}
}

func TestCloseWaitsAndFailsWaitingSenders(t *testing.T) {
	cfg := fastConfig("n1@localhost", 1, "secret")
	cfg.MaxQueued = 64 << 10
	cfg.WriteTimeout, cfg.DeadAfter = time.Hour, time.Hour
	a := startNode(t, cfg)
	fake, _ := stalledPeer(t, a.entry())
	a.AddPeer(fake)
	waitFor(t, "the connection", func() bool { return a.Connected(2) })
	errc := make(chan error, 1)
	go func() {
		for {
			if err := a.Send(context.Background(), 2, KindQueue, make([]byte, 32<<10)); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // let it block (not a timing assertion)
	a.Close()
	if err := <-errc; !errors.Is(err, ErrNotConnected) && !errors.Is(err, ErrClosed) {
		t.Fatalf("a sender waiting at Close got %v", err)
	}
	if err := a.TrySend(2, KindQueue, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("TrySend after Close: %v", err)
	}
}

func TestANodeAnsweringWithAnotherIDIsRefused(t *testing.T) {
	a := startNode(t, fastConfig("n1@localhost", 1, "secret"))
	b := startNode(t, fastConfig("n2@localhost", 3, "secret")) // reset: a new id
	b.AddPeer(a.entry())
	a.AddPeer(Peer{ID: 2, Name: b.name, Addr: b.Addr().String()})
	want := "n2@localhost answers with node id 3, n1@localhost knows it as 2"
	a.logs.waitLog(t, "the dialling node", want)
	b.logs.waitLog(t, "the dialled node", want)
	if a.Connected(2) || b.Connected(1) {
		t.Fatal("connected to a node under another id")
	}
}

func TestASilentPeerIsDroppedAndRedialled(t *testing.T) {
	cfg := fastConfig("n1@localhost", 1, "secret")
	cfg.DeadAfter = 200 * time.Millisecond
	a := startNode(t, cfg)
	var mu sync.Mutex
	var events []string
	a.Watch(func(id uint64, up bool) { mu.Lock(); events = append(events, fmt.Sprint(id, up)); mu.Unlock() })
	fake, _ := stalledPeer(t, a.entry()) // sends no keepalives
	a.AddPeer(fake)
	waitFor(t, "a to give up on the silent peer and dial again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) >= 3
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(events[:3], []string{"2 true", "2 false", "2 true"}) {
		t.Fatalf("events %v", events)
	}
	a.logs.waitLog(t, "a", "i/o timeout")
}

func TestRemovedPeersAreDisconnectedAndRefused(t *testing.T) {
	a := startNode(t, fastConfig("n1@localhost", 1, "secret"))
	b := startNode(t, fastConfig("n2@localhost", 2, "secret"))
	meet(t, a, b)
	waitConnected(t, a, b)
	b.RemovePeer(1)
	waitFor(t, "a to lose b", func() bool { return !a.Connected(2) })
	a.logs.waitLog(t, "a", "n2@localhost does not know node n1@localhost")
	if err := b.TrySend(1, KindQueue, nil); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("TrySend to a removed peer: %v", err)
	}
}

func TestAddPeerRefusesTakenNamesAndIDs(t *testing.T) {
	a := startNode(t, fastConfig("n1@localhost", 1, "secret"))
	if err := a.AddPeer(Peer{ID: 2, Name: MustParseNodeName("n2@localhost"), Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Peer{
		{ID: 2, Name: MustParseNodeName("n3@localhost")},
		{ID: 3, Name: MustParseNodeName("n2@localhost")},
		{ID: 4, Name: MustParseNodeName("n1@localhost")},
		{ID: 1, Name: MustParseNodeName("n5@localhost")},
		{ID: 0, Name: MustParseNodeName("n6@localhost")},
	} {
		if err := a.AddPeer(p); err == nil {
			t.Errorf("AddPeer(%d %s) accepted", p.ID, p.Name)
		}
	}
}

// Senders of both classes keep going while the connection is broken
// again and again: nothing deadlocks, each sender's frames arrive in
// order (some lost with each connection), and Close waits for all.
func TestSendersSurviveBrokenConnections(t *testing.T) {
	a := startNode(t, fastConfig("n1@localhost", 1, "secret"))
	b := startNode(t, fastConfig("n2@localhost", 2, "secret"))
	var mu sync.Mutex
	last := map[byte]int{}
	received := 0
	b.Handle(KindQueue, func(_ uint64, p []byte) {
		var seq int
		fmt.Sscan(string(p[1:]), &seq)
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := last[p[0]]; ok && seq <= prev {
			t.Errorf("sender %c: frame %d after %d", p[0], seq, prev)
		}
		last[p[0]] = seq
		received++
	})
	meet(t, a, b)
	waitConnected(t, a, b)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for s := range 6 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Appendf(nil, "%c%d", 'a'+s, i)
				var err error
				if s%2 == 0 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					err = a.Send(ctx, 2, KindQueue, p)
					cancel()
				} else {
					err = a.TrySend(2, KindQueue, p)
				}
				if err != nil && !errors.Is(err, ErrNotConnected) && !errors.Is(err, ErrQueueFull) {
					t.Errorf("sender %d: %v", s, err)
					return
				}
				if err != nil {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	for range 5 {
		waitConnected(t, a, b)
		time.Sleep(20 * time.Millisecond)
		pa, _ := a.Link.peer(2)
		pa.mu.Lock()
		if pa.cur != nil {
			pa.cur.nc.Close() // the network breaks
		}
		pa.mu.Unlock()
	}
	// after the last break, every sender gets frames through again
	mu.Lock()
	clear(last)
	mu.Unlock()
	waitFor(t, "frames from every sender", func() bool { mu.Lock(); defer mu.Unlock(); return len(last) == 6 })
	close(stop)
	wg.Wait()
}

// The writer takes droppable frames (Raft heartbeats) before
// flow-controlled ones (queue traffic, snapshot chunks), and only a
// bounded amount of the latter at a time, so a large transfer never
// holds heartbeats back by more than one batch.
func TestWriterPutsDroppableFramesFirst(t *testing.T) {
	p := &peer{room: make(chan struct{}), wake: make(chan struct{}, 1)}
	c := &conn{p: p}
	p.cur = c
	chunk := make([]byte, 100<<10)
	for range 5 {
		p.bulk = append(p.bulk, outFrame{KindRaftChunk, chunk})
		p.bulkBytes += len(chunk)
	}
	p.urgent = append(p.urgent, outFrame{KindRaft, []byte("heartbeat")})
	batch, bulk, ok := p.take(c, nil)
	if !ok || len(batch) != 3 || batch[0].kind != KindRaft || bulk != 2*len(chunk) {
		t.Fatalf("first batch: %d frames (first %v), %d flow-controlled bytes", len(batch), batch[0].kind, bulk)
	}
	p.urgent = append(p.urgent, outFrame{KindRaft, []byte("heartbeat 2")})
	batch, _, _ = p.take(c, nil)
	if batch[0].kind != KindRaft || len(batch) != 3 {
		t.Fatalf("second batch: %d frames, first %v", len(batch), batch[0].kind)
	}
	big := outFrame{KindQueue, make([]byte, 2*maxBatch)}
	p.bulk = append(p.bulk, big)
	batch, _, _ = p.take(c, nil)
	if len(batch) != 1 || len(batch[0].payload) != len(chunk) {
		t.Fatalf("third batch: %d frames", len(batch))
	}
	if batch, _, _ = p.take(c, nil); len(batch) != 1 || len(batch[0].payload) != len(big.payload) {
		t.Fatal("a frame over the batch size is not taken alone")
	}
	if _, _, ok := p.take(&conn{p: p}, nil); ok {
		t.Fatal("a connection that is not current took frames")
	}
}
