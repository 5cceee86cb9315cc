// Package conn runs one AMQP 0-9-1 connection: the protocol handshake,
// tuning, heartbeats, channels, content assembly, QoS, publisher confirms
// and deliveries. It needs only the small VHost and Server interfaces it
// declares, so a queue may be local or (later) on another node.
//
// One reader goroutine parses frames and drives the channels; one writer
// goroutine flushes a buffer that every producer of frames appends to, so
// frames coalesce into few large writes.
//
// Lock order (outermost first): queue.Queue.mu → channel.mu → Conn.wmu.
// Code holding channel.mu or Conn.wmu never calls into a queue.
package conn

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenmq/warren/internal/amqp"
)

// writeHighWater is the buffered output size above which deliveries to this
// connection pause until the writer drains it.
const writeHighWater = 1 << 20

var connIDs atomic.Uint64

// Conn is one client connection.
type Conn struct {
	id  uint64
	nc  net.Conn
	srv Server
	cfg Config
	log *slog.Logger

	br *bufio.Reader
	fr *amqp.FrameReader

	frameMax    uint32
	channelMax  uint16
	heartbeat   uint16
	user        string
	vhost       VHost
	clientProps amqp.Table

	chmu     sync.Mutex
	channels map[uint16]*channel
	// closedByServer holds channels the server closed (a channel error,
	// answered with close-ok) and the client has not opened again. A
	// client may have publishes in flight on such a channel when it
	// answers close-ok (amqp091-go and streadway check "closed" and write
	// without one lock): their frames are dropped here instead of closing
	// the whole connection. RabbitMQ, slower to send the close, rarely
	// meets the race; any other method, and channel.open, act as usual.
	closedByServer map[uint16]bool
	opened         uint64 // channels opened so far (churn), guarded by chmu

	// writer state
	wmu      sync.Mutex
	wbuf     []byte
	wspare   []byte
	wsignal  chan struct{}
	wdone    chan struct{}
	wfailed  atomic.Bool // a socket write failed; nothing more is written
	wclosed  bool
	starved  atomic.Bool
	lastSent atomic.Int64
	// wInflight is the size of the buffer being written to the socket.
	wInflight atomic.Int64
	// wdrained is signalled after each socket write (waitWritable).
	wdrained chan struct{}
	// encodeFailed: a frame could not be encoded; the connection is ending.
	encodeFailed atomic.Bool

	lastRead      atomic.Int64
	closing       bool // connection.close sent, waiting for close-ok (reader only)
	closed        chan struct{}
	closeOnce     sync.Once
	blocked       atomic.Bool
	serverClosing atomic.Bool // Close sent connection.close from another goroutine
	closeOkSent   atomic.Bool // close-ok answered the client's connection.close

	// Stats for management.
	infoMu  sync.Mutex
	info    Info // user, vhost, tuning: set once the handshake completes
	Opened  time.Time
	recvOct atomic.Uint64
	sendOct atomic.Uint64
}

// New wraps an accepted socket. Call Serve to run it.
func New(nc net.Conn, srv Server, cfg Config) *Conn {
	cfg.fill()
	c := &Conn{
		id:       connIDs.Add(1),
		nc:       nc,
		srv:      srv,
		cfg:      cfg,
		log:      cfg.Logger.With("conn", nc.RemoteAddr().String()),
		channels: make(map[uint16]*channel),
		wsignal:  make(chan struct{}, 1),
		wdone:    make(chan struct{}),
		wdrained: make(chan struct{}, 1),
		closed:   make(chan struct{}),
		frameMax: cfg.FrameMax,
		Opened:   time.Now(),
	}
	c.br = bufio.NewReaderSize(nc, 64<<10)
	c.fr = amqp.NewFrameReader(c.br, cfg.FrameMax)
	return c
}

// ID returns the connection's process-unique id.
func (c *Conn) ID() uint64 { return c.id }

// User returns the authenticated user name ("" before start-ok).
func (c *Conn) User() string { return c.user }

// RemoteAddr returns the peer address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Serve runs the connection until it ends; it closes the socket.
func (c *Conn) Serve() {
	go c.writer()
	err := c.serve()
	c.teardown(err)
}

func (c *Conn) serve() error {
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.fr.ReadProtocolHeader(); err != nil {
		if errors.Is(err, amqp.ErrBadProtocolHeader) {
			c.log.Warn("bad AMQP protocol header; replied with ours and closed", "err", err)
			_, _ = c.nc.Write(amqp.ProtocolHeader)
			return errQuiet
		}
		return err
	}
	if err := c.handshake(); err != nil {
		return err
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	if c.heartbeat > 0 {
		go c.heartbeater()
	}
	c.log.Info("connection opened", "user", c.user, "vhost", c.vhost.Name())
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return c.readError(err)
		}
		c.lastRead.Store(time.Now().UnixNano())
		c.recvOct.Add(uint64(len(f.Payload) + 8))
		if err := c.frame(f); err != nil {
			if errors.Is(err, errClientClosed) {
				c.drainUntilHangup()
				return nil
			}
			if errors.Is(err, errClosed) {
				return nil
			}
			var ae *amqp.Error
			if errors.As(err, &ae) {
				if c.closing {
					continue
				}
				if ae.Hard() {
					c.connectionError(ae)
					continue
				}
				// soft errors surface from channel handlers only
				c.connectionError(amqp.NewError(amqp.InternalError, ae.ClassID, ae.MethodID, "%s", ae.Text))
				continue
			}
			return err
		}
		if c.br.Buffered() == 0 {
			// About to block on the socket: confirm everything so far in one
			// frame per channel.
			c.flushConfirms()
		}
	}
}

var (
	errClosed       = errors.New("connection closed")
	errClientClosed = errors.New("client closed the connection; close-ok sent")
	errQuiet        = errors.New("closed without a handshake")
)

// closingTimeout bounds how long a connection that sent close-ok waits
// for the client to hang up (RabbitMQ's ?CLOSING_TIMEOUT, in seconds).
const closingTimeout = 30

// drainUntilHangup runs after close-ok went out for a client's
// connection.close: closing the socket now, with client frames still
// arriving or unread, makes the kernel answer with RST, and a client
// that has not yet read close-ok then loses it (amqplib's close callback
// never fires). Like RabbitMQ, read and discard everything until the
// client hangs up, bounded by the heartbeat interval or 30 seconds.
func (c *Conn) drainUntilHangup() {
	wait := time.Duration(closingTimeout) * time.Second
	if c.heartbeat > 0 && c.heartbeat < closingTimeout {
		wait = time.Duration(c.heartbeat) * time.Second
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(wait))
	if c.serverClosing.Load() {
		return // the node is closing connections (Close)
	}
	_, _ = io.Copy(io.Discard, c.br)
}

func (c *Conn) readError(err error) error {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		if c.closing {
			return nil
		}
		return fmt.Errorf("client unexpectedly closed TCP connection")
	case errors.Is(err, amqp.ErrFrameTooLarge), errors.Is(err, amqp.ErrBadFrameEnd), errors.Is(err, amqp.ErrUnknownFrameType):
		c.connectionError(amqp.NewError(amqp.FrameError, 0, 0, "%v", err))
		return err
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		c.connectionError(ae)
	}
	return err
}

// frame handles one frame after the handshake.
func (c *Conn) frame(f amqp.Frame) error {
	if f.Type == amqp.FrameHeartbeat {
		if f.Channel != 0 {
			return amqp.NewError(amqp.FrameError, 0, 0, "heartbeat frame on channel %d", f.Channel)
		}
		return nil
	}
	if f.Channel == 0 {
		if f.Type != amqp.FrameMethod {
			return amqp.NewError(amqp.UnexpectedFrame, 0, 0, "content frame on channel 0")
		}
		m, err := amqp.DecodeMethod(f.Payload)
		if err != nil {
			return err
		}
		return c.connectionMethod(m)
	}
	if c.closing || c.serverClosing.Load() {
		return nil // only close-ok matters now
	}
	if f.Channel > c.channelMax {
		return amqp.NewError(amqp.ChannelError, 0, 0, "channel %d is above the negotiated channel_max %d", f.Channel, c.channelMax)
	}
	c.chmu.Lock()
	ch := c.channels[f.Channel]
	c.chmu.Unlock()
	if ch == nil && c.droppedAfterClose(f) {
		return nil
	}
	if ch == nil {
		if f.Type != amqp.FrameMethod {
			// RabbitMQ 3.10 starts a channel for any frame, whose assembler
			// then refuses content where a method belongs
			return amqp.NewError(amqp.UnexpectedFrame, 0, 0, "expected method frame, got non method frame instead")
		}
		m, err := amqp.DecodeMethod(f.Payload)
		if err != nil {
			return err
		}
		open, ok := m.(*amqp.ChannelOpen)
		if !ok {
			return amqp.NewError(amqp.ChannelError, m.ClassID(), m.MethodID(), "expected 'channel.open' on channel %d, got '%s'", f.Channel, m.Name())
		}
		_ = open
		ch = newChannel(c, f.Channel)
		c.chmu.Lock()
		delete(c.closedByServer, f.Channel)
		c.channels[f.Channel] = ch
		c.opened++
		c.chmu.Unlock()
		c.writeMethod(f.Channel, &amqp.ChannelOpenOk{})
		return nil
	}
	return ch.frame(f)
}

func (c *Conn) connectionMethod(m amqp.Method) error {
	switch m := m.(type) {
	case *amqp.ConnectionClose:
		if c.closing {
			// both sides sent connection.close: answer and end
			c.writeMethod(0, &amqp.ConnectionCloseOk{})
			c.flushAndWait()
			return errClosed
		}
		c.log.Info("client closed connection", "code", m.ReplyCode, "text", m.ReplyText)
		// As RabbitMQ does, the channels end and the exclusive queues are
		// deleted before close-ok: a client that reconnects the moment its
		// close returns finds them gone (404), not locked (405).
		c.releaseChannels()
		if c.vhost != nil {
			c.vhost.ConnectionClosed(c.id)
		}
		c.closeOkSent.Store(true)
		c.writeMethod(0, &amqp.ConnectionCloseOk{})
		c.flushAndWait()
		return errClientClosed
	case *amqp.ConnectionCloseOk:
		if c.closing || c.serverClosing.Load() {
			return errClosed
		}
		return amqp.NewError(amqp.ChannelError, m.ClassID(), m.MethodID(), "unexpected method in connection state running")
	case *amqp.ConnectionBlocked, *amqp.ConnectionUnblocked:
		return nil
	case *amqp.ConnectionUpdateSecret:
		c.writeMethod(0, &amqp.ConnectionUpdateSecretOk{})
		return nil
	}
	if c.closing {
		return nil
	}
	// RabbitMQ 3.10 (rabbit_reader:handle_method0) answers any other method
	// on channel 0 with 504 CHANNEL_ERROR
	return amqp.NewError(amqp.ChannelError, m.ClassID(), m.MethodID(), "unexpected method in connection state running")
}

// connectionError sends connection.close and waits (bounded) for close-ok.
func (c *Conn) connectionError(e *amqp.Error) {
	if c.closing {
		return
	}
	c.closing = true
	c.log.Warn("closing connection on error", "code", e.Code, "text", e.Text, "class", e.ClassID, "method", e.MethodID)
	c.writeMethod(0, &amqp.ConnectionClose{ReplyCode: e.Code, ReplyText: e.Text, ClassId: e.ClassID, MethodId: e.MethodID})
	c.releaseChannels()
	_ = c.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
}

// Close closes the connection from the server side with a reason (e.g. 320
// CONNECTION_FORCED on shutdown or a management request).
func (c *Conn) Close(code uint16, text string) {
	e := amqp.NewError(code, 0, 0, "%s", text)
	c.wmu.Lock()
	closed := c.wclosed
	c.wmu.Unlock()
	if closed {
		return
	}
	if c.closeOkSent.Load() {
		// the client closed already; stop waiting for it to hang up
		c.serverClosing.Store(true)
		_ = c.nc.SetReadDeadline(time.Now())
		return
	}
	c.serverClosing.Store(true)
	c.writeMethod(0, &amqp.ConnectionClose{ReplyCode: e.Code, ReplyText: e.Text})
	c.flushAndWait()
	_ = c.nc.SetReadDeadline(time.Now().Add(1 * time.Second))
}

func (c *Conn) releaseChannels() {
	for _, ch := range c.channelList() {
		ch.release()
	}
}

// channelList snapshots the open channels.
func (c *Conn) channelList() []*channel {
	c.chmu.Lock()
	defer c.chmu.Unlock()
	chs := make([]*channel, 0, len(c.channels))
	for _, ch := range c.channels {
		chs = append(chs, ch)
	}
	return chs
}

func (c *Conn) teardown(err error) {
	if err != nil && !errors.Is(err, errQuiet) {
		c.log.Info("connection closed", "err", err)
	}
	c.releaseChannels()
	if c.vhost != nil {
		c.vhost.ConnectionClosed(c.id)
	}
	c.flushAndWait()
	c.wmu.Lock()
	c.wclosed = true
	c.wmu.Unlock()
	// a peer that does not read must not keep the writer (and so this
	// teardown) blocked in a socket write forever
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.signal()
	<-c.wdone
	_ = c.nc.Close()
	c.closeOnce.Do(func() { close(c.closed) })
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.closed }

func (c *Conn) heartbeater() {
	iv := time.Duration(c.heartbeat) * time.Second
	t := time.NewTicker(iv / 2)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		if now-c.lastSent.Load() >= int64(iv/2) {
			c.wmu.Lock()
			c.wbuf = amqp.AppendHeartbeat(c.wbuf)
			c.wmu.Unlock()
			c.signal()
		}
		if now-c.lastRead.Load() > int64(2*iv) {
			c.log.Warn("missed heartbeats from client, timeout: " + iv.String())
			_ = c.nc.Close()
			return
		}
	}
}

// SetBlocked sends connection.blocked / unblocked (resource alarms).
func (c *Conn) SetBlocked(blocked bool, reason string) {
	if c.blocked.Swap(blocked) == blocked {
		return
	}
	caps, _ := c.clientProps["capabilities"].(amqp.Table)
	if ok, _ := caps["connection.blocked"].(bool); !ok {
		return
	}
	if blocked {
		c.writeMethod(0, &amqp.ConnectionBlocked{Reason: reason})
	} else {
		c.writeMethod(0, &amqp.ConnectionUnblocked{})
	}
}

// holdPublisher blocks this connection's reader while a resource alarm is
// on (RabbitMQ stops reading from a publishing connection): nothing more
// it sends is processed until the alarm clears or the connection ends.
func (c *Conn) holdPublisher() {
	c.SetBlocked(true, "low on resources")
	for !c.srv.PublishAllowed() {
		select {
		case <-c.closed:
			return
		case <-time.After(50 * time.Millisecond):
		}
		if c.wfailed.Load() {
			return
		}
	}
	c.SetBlocked(false, "")
}

// serverClosed records that the server closed channel id.
func (c *Conn) serverClosed(id uint16) {
	c.chmu.Lock()
	if c.closedByServer == nil {
		c.closedByServer = map[uint16]bool{}
	}
	c.closedByServer[id] = true
	c.chmu.Unlock()
}

// droppedAfterClose reports whether f is part of a publish that raced the
// server's channel.close (see closedByServer): a basic.publish method, or
// a content frame, on a channel the server closed and the client has not
// reopened.
func (c *Conn) droppedAfterClose(f amqp.Frame) bool {
	c.chmu.Lock()
	closed := c.closedByServer[f.Channel]
	c.chmu.Unlock()
	if !closed {
		return false
	}
	if f.Type == amqp.FrameHeader || f.Type == amqp.FrameBody {
		return true
	}
	m, err := amqp.DecodeMethod(f.Payload)
	if err != nil {
		return false
	}
	_, isPublish := m.(*amqp.BasicPublish)
	return isPublish
}
