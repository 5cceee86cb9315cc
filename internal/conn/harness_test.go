package conn_test

// Frames-in/frames-out tests of the connection and channel state machine:
// a conn.Conn serves one end of a net.Pipe, with the real vhost over an
// in-memory metadata store behind it, and the test speaks AMQP frames on
// the other end with internal/amqp's encoder, asserting every method the
// server sends back.
//
// WARREN_CONNTEST_AMQP=host:port runs the same scripts against another
// broker instead (a RabbitMQ 3.10 with guest/guest), to check the
// expectations against the reference.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/conn"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/vhost"
)

// fakeServer is a node with one vhost "/" and one user guest/guest.
type fakeServer struct {
	v *vhost.VHost
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	meta := metadata.NewStore(metadata.NewLocalLog())
	v := vhost.New("/", meta, nil)
	meta.Observe(func(c metadata.Command) {
		if c.Op != metadata.OpAddVHost {
			v.Apply(c)
		}
	})
	if err := meta.Propose(metadata.Command{Op: metadata.OpAddVHost, VHost: "/"}); err != nil {
		t.Fatal(err)
	}
	for _, x := range vhost.DefaultExchanges {
		x.VHost = "/"
		v.Apply(metadata.Command{Op: metadata.OpDeclareExchange, Exchange: &x})
	}
	return &fakeServer{v: v}
}

func (s *fakeServer) Authenticate(mechanism string, response []byte, remote net.Addr) (string, error) {
	cred, err := auth.ParsePlain(response)
	if mechanism != "PLAIN" || err != nil || cred.Username != "guest" || cred.Password != "guest" {
		return "", conn.ErrAuthFailed
	}
	return cred.Username, nil
}

func (s *fakeServer) OpenVHost(user, name string) (conn.VHost, error) {
	if name != "/" {
		return nil, amqp.NewError(amqp.NotAllowed, 10, 40, "vhost %s not found", name)
	}
	m, err := auth.CompilePermission(auth.Permission{Configure: ".*", Write: ".*", Read: ".*"})
	if err != nil {
		return nil, err
	}
	return s.v.Session(user, m), nil
}

func (s *fakeServer) PublishAllowed() bool       { return true }
func (s *fakeServer) CanImpersonate(string) bool { return false }
func (s *fakeServer) queueReady(name string) int { r, _, _ := s.v.LookupQueue(name).Counts(); return r }

// client is the test's end of the connection.
type client struct {
	t      *testing.T
	nc     net.Conn
	fr     *amqp.FrameReader
	done   <-chan struct{} // the server's connection ended (nil: remote broker)
	remote bool

	wmu   sync.Mutex
	wq    [][]byte
	wsig  chan struct{}
	wstop chan struct{}
	wdone chan struct{}
}

// Server-side limits, RabbitMQ 3.10's defaults, so that the same
// expectations hold against the reference broker.
const (
	srvChannelMax = 2047
	srvFrameMax   = 131072
	srvHeartbeat  = 60
	// cliFrameMax is the frame_max the client asks for in tune-ok.
	cliFrameMax = 4096
)

// dial starts a server connection on a pipe (or dials the reference
// broker) and returns the client end, before the protocol header.
func dial(t *testing.T) *client {
	t.Helper()
	var c *client
	if addr := os.Getenv("WARREN_CONNTEST_AMQP"); addr != "" {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c = &client{t: t, nc: nc, remote: true}
	} else {
		srv := newFakeServer(t)
		a, b := net.Pipe()
		sc := conn.New(a, srv, conn.Config{ChannelMax: srvChannelMax, FrameMax: srvFrameMax, Heartbeat: srvHeartbeat})
		go sc.Serve()
		c = &client{t: t, nc: b, done: sc.Done()}
		t.Cleanup(func() {
			_ = b.Close()
			select {
			case <-sc.Done():
			case <-time.After(10 * time.Second):
				t.Error("server connection did not end after the client hung up")
			}
		})
	}
	c.fr = amqp.NewFrameReader(c.nc, 1<<20)
	c.wsig = make(chan struct{}, 1)
	c.wstop = make(chan struct{})
	c.wdone = make(chan struct{})
	go c.writer()
	t.Cleanup(func() {
		close(c.wstop)
		_ = c.nc.Close()
		<-c.wdone
	})
	return c
}

// writer sends queued bytes in order. The client never blocks on a write
// (net.Pipe is unbuffered), so a server that writes while the test is
// writing cannot deadlock the test.
func (c *client) writer() {
	defer close(c.wdone)
	for {
		c.wmu.Lock()
		q := c.wq
		c.wq = nil
		c.wmu.Unlock()
		for _, b := range q {
			if _, err := c.nc.Write(b); err != nil {
				return
			}
		}
		select {
		case <-c.wsig:
		case <-c.wstop:
			return
		}
	}
}

func (c *client) raw(b []byte) {
	c.wmu.Lock()
	c.wq = append(c.wq, b)
	c.wmu.Unlock()
	select {
	case c.wsig <- struct{}{}:
	default:
	}
}

func (c *client) send(ch uint16, m amqp.Method) {
	c.t.Helper()
	b, err := amqp.AppendMethodFrame(nil, ch, m)
	if err != nil {
		c.t.Fatalf("encode %s: %v", m.Name(), err)
	}
	c.raw(b)
}

// publish sends basic.publish, its content header and the body split into
// frames of at most cliFrameMax, in one write.
func (c *client) publish(ch uint16, exchange, key string, props amqp.Properties, body []byte) {
	c.t.Helper()
	b, err := amqp.AppendMethodFrame(nil, ch, &amqp.BasicPublish{Exchange: exchange, RoutingKey: key})
	if err != nil {
		c.t.Fatal(err)
	}
	p, err := props.Append(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	b = amqp.AppendHeaderFrame(b, ch, amqp.ClassBasic, uint64(len(body)), p)
	b = amqp.AppendBodyFrames(b, ch, body, cliFrameMax)
	c.raw(b)
}

// frame reads the next frame, skipping heartbeats, within 10 seconds.
func (c *client) frame() amqp.Frame {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("reading a frame from the server: %v", err)
		}
		if f.Type == amqp.FrameHeartbeat {
			continue
		}
		f.Payload = append([]byte(nil), f.Payload...)
		return f
	}
}

// next reads the next method frame and its channel.
func (c *client) next() (uint16, amqp.Method) {
	c.t.Helper()
	f := c.frame()
	if f.Type != amqp.FrameMethod {
		c.t.Fatalf("got frame type %d on channel %d, want a method frame", f.Type, f.Channel)
	}
	m, err := amqp.DecodeMethod(f.Payload)
	if err != nil {
		c.t.Fatalf("decode method: %v", err)
	}
	return f.Channel, m
}

// expect reads the next method and checks it is a T on channel ch.
func expect[T amqp.Method](c *client, ch uint16) T {
	c.t.Helper()
	got, m := c.next()
	t, ok := m.(T)
	if !ok || got != ch {
		var want T
		c.t.Fatalf("got %s on channel %d (%+v), want %s on channel %d", m.Name(), got, m, reflect.TypeOf(want).Elem().Name(), ch)
	}
	return t
}

// expectEqual reads the next method and checks it equals want exactly.
func (c *client) expectEqual(ch uint16, want amqp.Method) {
	c.t.Helper()
	got, m := c.next()
	if got != ch || !reflect.DeepEqual(m, want) {
		c.t.Fatalf("got %s %+v on channel %d\nwant %s %+v on channel %d", m.Name(), m, got, want.Name(), want, ch)
	}
}

// delivery is a message the server sent with basic.deliver or get-ok.
type delivery struct {
	method     amqp.Method
	props      amqp.Properties
	body       []byte
	bodyFrames int
}

// content reads the content header and body frames of a message on ch.
func (c *client) content(ch uint16, m amqp.Method) delivery {
	c.t.Helper()
	f := c.frame()
	if f.Type != amqp.FrameHeader || f.Channel != ch {
		c.t.Fatalf("got frame type %d on channel %d after %s, want a content header on %d", f.Type, f.Channel, m.Name(), ch)
	}
	class, size, raw, err := amqp.ParseContentHeader(f.Payload)
	if err != nil || class != amqp.ClassBasic {
		c.t.Fatalf("content header: class %d err %v", class, err)
	}
	props, err := amqp.DecodeProperties(raw)
	if err != nil {
		c.t.Fatal(err)
	}
	d := delivery{method: m, props: props}
	for uint64(len(d.body)) < size {
		f := c.frame()
		if f.Type != amqp.FrameBody || f.Channel != ch {
			c.t.Fatalf("got frame type %d on channel %d inside a %d-byte body, want a body frame on %d", f.Type, f.Channel, size, ch)
		}
		if len(f.Payload)+8 > cliFrameMax {
			c.t.Fatalf("body frame of %d bytes exceeds the negotiated frame_max %d", len(f.Payload)+8, cliFrameMax)
		}
		d.body = append(d.body, f.Payload...)
		d.bodyFrames++
	}
	if uint64(len(d.body)) != size {
		c.t.Fatalf("body is %d bytes, header announced %d", len(d.body), size)
	}
	return d
}

func (c *client) expectDeliver(ch uint16) (*amqp.BasicDeliver, delivery) {
	c.t.Helper()
	m := expect[*amqp.BasicDeliver](c, ch)
	return m, c.content(ch, m)
}

// expectClosed checks the server ends the connection: EOF (or a closed
// pipe) with no further frame.
func (c *client) expectClosed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := c.fr.ReadFrame()
		if err == nil {
			if f.Type == amqp.FrameHeartbeat {
				continue
			}
			c.t.Fatalf("got frame type %d on channel %d, want the connection closed", f.Type, f.Channel)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "connection reset") {
			break
		}
		c.t.Fatalf("want the connection closed, got %v", err)
	}
	if c.done != nil {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.t.Fatal("server connection still running after it closed the socket")
		}
	}
}

func plain(user, pass string) string { return "\x00" + user + "\x00" + pass }

// open runs the handshake with the guest user and returns the client.
func open(t *testing.T) *client {
	t.Helper()
	c := dial(t)
	c.raw(amqp.ProtocolHeader)
	expect[*amqp.ConnectionStart](c, 0)
	c.send(0, &amqp.ConnectionStartOk{ClientProperties: amqp.Table{"capabilities": amqp.Table{"authentication_failure_close": true, "consumer_cancel_notify": true}}, Mechanism: "PLAIN", Response: plain("guest", "guest"), Locale: "en_US"})
	expect[*amqp.ConnectionTune](c, 0)
	c.send(0, &amqp.ConnectionTuneOk{ChannelMax: 100, FrameMax: cliFrameMax, Heartbeat: 0})
	c.send(0, &amqp.ConnectionOpen{VirtualHost: "/"})
	expect[*amqp.ConnectionOpenOk](c, 0)
	return c
}

func (c *client) openChannel(ch uint16) {
	c.t.Helper()
	c.send(ch, &amqp.ChannelOpen{})
	expect[*amqp.ChannelOpenOk](c, ch)
}

// declare declares an exclusive queue (so a run against a shared
// reference broker leaves nothing behind) and checks declare-ok.
func (c *client) declare(ch uint16, name string) {
	c.t.Helper()
	c.send(ch, &amqp.QueueDeclare{Queue: name, Exclusive: true})
	c.expectEqual(ch, &amqp.QueueDeclareOk{Queue: name})
}

// counts asks queue.declare passive and returns message and consumer counts.
// Warren enqueues before it reads the next frame, so the count is exact at
// once; RabbitMQ's queue processes count asynchronously, so against it the
// count is asked again (bounded) until it matches want.
func (c *client) counts(ch uint16, name string, want ...uint32) (uint32, uint32) {
	c.t.Helper()
	n, cons := c.count1(ch, name)
	for deadline := time.Now().Add(3 * time.Second); c.remote && len(want) > 0 && n != want[0] && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		n, cons = c.count1(ch, name)
	}
	return n, cons
}

func (c *client) count1(ch uint16, name string) (uint32, uint32) {
	c.t.Helper()
	c.send(ch, &amqp.QueueDeclare{Queue: name, Passive: true})
	ok := expect[*amqp.QueueDeclareOk](c, ch)
	if ok.Queue != name {
		c.t.Fatalf("declare-ok names %q, want %q", ok.Queue, name)
	}
	return ok.MessageCount, ok.ConsumerCount
}

// expectChannelClose checks the server closes channel ch with code, class
// and method (and text, unless empty), then completes the close.
func (c *client) expectChannelClose(ch uint16, code, class, method uint16, text string) {
	c.t.Helper()
	m := expect[*amqp.ChannelClose](c, ch)
	if m.ReplyCode != code || m.ClassId != class || m.MethodId != method || (text != "" && m.ReplyText != text) {
		c.t.Fatalf("channel.close %d (%d,%d) %q\nwant %d (%d,%d) %q", m.ReplyCode, m.ClassId, m.MethodId, m.ReplyText, code, class, method, text)
	}
	c.send(ch, &amqp.ChannelCloseOk{})
}

// expectConnectionClose checks the server closes the connection with code,
// class and method (and text unless empty), answers close-ok and checks
// the socket closes.
func (c *client) expectConnectionClose(code, class, method uint16, text string) {
	c.t.Helper()
	m := expect[*amqp.ConnectionClose](c, 0)
	if m.ReplyCode != code || m.ClassId != class || m.MethodId != method || (text != "" && m.ReplyText != text) {
		c.t.Fatalf("connection.close %d (%d,%d) %q\nwant %d (%d,%d) %q", m.ReplyCode, m.ClassId, m.MethodId, m.ReplyText, code, class, method, text)
	}
	c.send(0, &amqp.ConnectionCloseOk{})
	c.expectClosed()
}

// qname makes queue names unique per test (for runs against a shared broker).
func qname(t *testing.T, s string) string {
	return fmt.Sprintf("conntest-%s-%s", strings.ReplaceAll(t.Name(), "/", "-"), s)
}

// text returns want on Warren, "" (do not compare) against another broker
// where only codes and ids are compared.
func (c *client) text(want string) string {
	if c.remote {
		return ""
	}
	return want
}
