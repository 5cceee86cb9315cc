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
			_, err := c.nc.Write(buf)
			if err != nil {
				c.wfailed.Store(true)
				_ = c.nc.Close()
			}
			c.sendOct.Add(uint64(len(buf)))
			c.lastSent.Store(time.Now().UnixNano())
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
		c.wbuf, _ = amqp.AppendMethodFrame(c.wbuf, ch, m)
	}
	c.wmu.Unlock()
	c.signal()
}

// writeContent queues a method with content (deliver, get-ok, return).
// The caller may hold its channel's lock.
func (c *Conn) writeContent(ch uint16, m amqp.Method, msg *queue.Message) {
	c.wmu.Lock()
	if !c.wclosed {
		c.wbuf, _ = amqp.AppendMethodFrame(c.wbuf, ch, m)
		c.wbuf = amqp.AppendHeaderFrame(c.wbuf, ch, amqp.ClassBasic, uint64(len(msg.Body)), msg.Props)
		c.wbuf = amqp.AppendBodyFrames(c.wbuf, ch, msg.Body, c.frameMax)
	}
	c.wmu.Unlock()
	c.signal()
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
