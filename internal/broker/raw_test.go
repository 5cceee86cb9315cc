package broker_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/amqp"
)

// rawClient speaks AMQP with the codec directly, for behaviour that real
// client libraries hide (silence, protocol violations).
type rawClient struct {
	t  *testing.T
	nc net.Conn
	fr *amqp.FrameReader
}

func rawDial(t *testing.T, addr string) *rawClient {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, nc: nc, fr: amqp.NewFrameReader(nc, 0)}
}

func (c *rawClient) send(ch uint16, m amqp.Method) {
	buf, err := amqp.AppendMethodFrame(nil, ch, m)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.nc.Write(buf); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) recv() amqp.Method {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if f.Type == amqp.FrameHeartbeat {
			continue
		}
		m, err := amqp.DecodeMethod(f.Payload)
		if err != nil {
			c.t.Fatal(err)
		}
		return m
	}
}

// open performs the handshake with the given heartbeat.
func (c *rawClient) open(heartbeat uint16) {
	c.nc.Write(amqp.ProtocolHeader)
	if _, ok := c.recv().(*amqp.ConnectionStart); !ok {
		c.t.Fatal("no connection.start")
	}
	c.send(0, &amqp.ConnectionStartOk{ClientProperties: amqp.Table{}, Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"})
	if _, ok := c.recv().(*amqp.ConnectionTune); !ok {
		c.t.Fatal("no connection.tune")
	}
	c.send(0, &amqp.ConnectionTuneOk{ChannelMax: 10, FrameMax: 131072, Heartbeat: heartbeat})
	c.send(0, &amqp.ConnectionOpen{VirtualHost: "/"})
	if _, ok := c.recv().(*amqp.ConnectionOpenOk); !ok {
		c.t.Fatal("no connection.open-ok")
	}
}

func TestSilentPeerDisconnectedAfterTwoHeartbeats(t *testing.T) {
	b, _ := node(t)
	c := rawDial(t, b.Addrs()[0].String())
	c.open(1)
	start := time.Now()
	// Stay silent; the server sends heartbeats, then gives up on us.
	heartbeats := 0
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("server never closed the silent connection")
				}
			}
			break
		}
		if f.Type == amqp.FrameHeartbeat {
			heartbeats++
		}
	}
	if el := time.Since(start); el < 1500*time.Millisecond {
		t.Fatalf("closed after %v, before two missed 1s intervals", el)
	}
	if heartbeats == 0 {
		t.Fatal("server sent no heartbeats")
	}
}

func TestMethodOnClosedChannelAndChannelZeroMisuse(t *testing.T) {
	b, _ := node(t)
	c := rawDial(t, b.Addrs()[0].String())
	c.open(0)
	// basic.qos on a channel that was never opened: 504 CHANNEL_ERROR
	c.send(5, &amqp.BasicQos{PrefetchCount: 1})
	m, ok := c.recv().(*amqp.ConnectionClose)
	if !ok || m.ReplyCode != amqp.ChannelError {
		t.Fatalf("got %#v", m)
	}
	c.send(0, &amqp.ConnectionCloseOk{})

	c = rawDial(t, b.Addrs()[0].String())
	c.open(0)
	// a channel method on channel 0: 504 CHANNEL_ERROR, as RabbitMQ 3.10
	c.send(0, &amqp.QueueDeclare{Queue: "x"})
	m, ok = c.recv().(*amqp.ConnectionClose)
	if !ok || m.ReplyCode != amqp.ChannelError {
		t.Fatalf("got %#v", m)
	}

	c = rawDial(t, b.Addrs()[0].String())
	c.open(0)
	// a body frame with no publish before it: 505 UNEXPECTED_FRAME
	c.send(1, &amqp.ChannelOpen{})
	c.recv()
	c.nc.Write(amqp.AppendBodyFrames(nil, 1, []byte("stray"), 0))
	m, ok = c.recv().(*amqp.ConnectionClose)
	if !ok || m.ReplyCode != amqp.UnexpectedFrame {
		t.Fatalf("got %#v", m)
	}

	c = rawDial(t, b.Addrs()[0].String())
	c.open(0)
	// frame above the negotiated frame_max: 501 FRAME_ERROR
	c.send(1, &amqp.ChannelOpen{})
	c.recv()
	c.nc.Write(amqp.AppendBodyFrames(nil, 1, make([]byte, 200000), 300000))
	m, ok = c.recv().(*amqp.ConnectionClose)
	if !ok || m.ReplyCode != amqp.FrameError {
		t.Fatalf("got %#v", m)
	}
}
