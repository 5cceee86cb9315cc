package conn

import (
	"time"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/queue"
)

// signal wakes the writer without blocking.
func (c *Conn) signal() {
	select {
	case c.wsignal <- struct{}{}:
	default:
	}
}

// writer flushes the output buffer whenever something was appended. It
// swaps the buffer out under the lock and writes without it, so appenders
// keep filling the other buffer meanwhile: frames written while a write is
// in flight go out together in the next one.
func (c *Conn) writer() {
	defer close(c.wdone)
	for {
		<-c.wsignal
		c.wmu.Lock()
		buf := c.wbuf
		c.wbuf = c.wspare[:0]
		closed := c.wclosed
		c.wmu.Unlock()
		if len(buf) > 0 && !c.wfailed.Load() {
			c.wInflight.Store(int64(len(buf)))
			_, err := c.nc.Write(buf)
			c.wInflight.Store(0)
			if err != nil {
				c.wfailed.Store(true)
				_ = c.nc.Close()
			}
			c.sendOct.Add(uint64(len(buf)))
			c.lastSent.Store(time.Now().UnixNano())
		}
		select {
		case c.wdrained <- struct{}{}:
		default:
		}
		if c.encodeFailed.Load() {
			c.wmu.Lock()
			rest := len(c.wbuf)
			c.wmu.Unlock()
			if rest == 0 {
				// the 541 connection.close is out: end the connection
				_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
			}
		}
		if cap(buf) <= 4*writeHighWater {
			c.wmu.Lock()
			c.wspare = buf[:0]
			c.wmu.Unlock()
		}
		if c.starved.Load() {
			c.wmu.Lock()
			low := len(c.wbuf) < writeHighWater
			c.wmu.Unlock()
			if low && c.starved.Swap(false) {
				c.kickQueues()
			}
		}
		if closed {
			c.wmu.Lock()
			rest := len(c.wbuf)
			c.wmu.Unlock()
			if rest == 0 || c.wfailed.Load() {
				return
			}
			c.signal()
		}
	}
}

// flushAndWait waits (bounded) until the writer has written what is buffered.
func (c *Conn) flushAndWait() {
	c.signal()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		c.wmu.Lock()
		n := len(c.wbuf)
		c.wmu.Unlock()
		if n == 0 || c.wfailed.Load() {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// writeMethod queues one method frame.
func (c *Conn) writeMethod(ch uint16, m amqp.Method) {
	c.wmu.Lock()
	if !c.wclosed {
		var err error
		c.wbuf, err = amqp.AppendMethodFrame(c.wbuf, ch, m)
		if err != nil {
			c.encodeFailedLocked(m, err)
		}
	}
	c.wmu.Unlock()
	c.signal()
}

// writeContent queues a method with content (deliver, get-ok, return).
// The caller may hold its channel's lock. A method that cannot be encoded
// (a short string over 255 bytes that entered by another way than AMQP)
// is not written at all, and neither is its content: the connection is
// closed with 541 INTERNAL_ERROR instead of sending a header and body
// with no method before them.
func (c *Conn) writeContent(ch uint16, m amqp.Method, msg *queue.Message) {
	c.wmu.Lock()
	if !c.wclosed {
		var err error
		c.wbuf, err = amqp.AppendMethodFrame(c.wbuf, ch, m)
		if err != nil {
			c.encodeFailedLocked(m, err)
		} else {
			c.wbuf = amqp.AppendHeaderFrame(c.wbuf, ch, amqp.ClassBasic, uint64(len(msg.Body)), msg.Props)
			c.wbuf = amqp.AppendBodyFrames(c.wbuf, ch, msg.Body, c.frameMax)
		}
	}
	c.wmu.Unlock()
	c.signal()
}

// encodeFailedLocked handles a frame that could not be encoded: nothing
// of it was queued; the connection is closed with 541 INTERNAL_ERROR
// (fail stop: the peer would otherwise see a protocol violation or miss a
// reply). Called with wmu held.
func (c *Conn) encodeFailedLocked(m amqp.Method, err error) {
	c.log.Error("cannot encode a frame; closing the connection", "method", m.Name(), "err", err)
	e := amqp.NewError(amqp.InternalError, 0, 0, "could not encode '%s': %v", m.Name(), err)
	c.wbuf, _ = amqp.AppendMethodFrame(c.wbuf, 0, &amqp.ConnectionClose{ReplyCode: e.Code, ReplyText: e.Text})
	c.wclosed = true
	c.encodeFailed.Store(true)
}

// waitWritable blocks the calling reader while more than writeHighWater
// bytes wait to be written (buffered or being written): basic.get and
// basic.return then wait for the client to read, as deliveries do, so a
// client that never reads cannot make the server buffer without bound.
// It returns when the output drains or the connection fails or closes.
func (c *Conn) waitWritable() {
	for {
		c.wmu.Lock()
		pending := len(c.wbuf) + int(c.wInflight.Load())
		closed := c.wclosed
		c.wmu.Unlock()
		if pending < writeHighWater || closed || c.wfailed.Load() || c.serverClosing.Load() {
			return
		}
		c.signal()
		select {
		case <-c.wdrained:
		case <-c.closed:
			return
		case <-time.After(time.Second):
			// re-check: heartbeat timeouts and server-side closes fail the
			// socket and show up as wfailed or serverClosing
		}
	}
}

// writerFull reports whether the output buffer is above the high water mark
// and, if so, remembers to kick queues once it drains.
func (c *Conn) writerFull() bool {
	c.wmu.Lock()
	full := len(c.wbuf) >= writeHighWater || c.wclosed
	c.wmu.Unlock()
	if full {
		c.starved.Store(true)
		c.signal()
	}
	return full
}

// kickQueues asks every queue this connection consumes from to dispatch.
func (c *Conn) kickQueues() {
	for _, ch := range c.channelList() {
		ch.kick()
	}
}

func (c *Conn) flushConfirms() {
	c.chmu.Lock()
	for _, ch := range c.channels {
		if ch.confirmPending {
			ch.flushConfirm()
		}
	}
	c.chmu.Unlock()
}
