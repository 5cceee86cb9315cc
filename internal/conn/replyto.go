package conn

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/queue"
)

// Direct reply-to (RabbitMQ's amq.rabbitmq.reply-to): a client consumes the
// pseudo-queue in no-ack mode and publishes requests with reply_to set to
// it; the broker rewrites reply_to to a name that routes replies straight
// back to this channel, with no queue in between.
const replyTo = "amq.rabbitmq.reply-to"

var replyToBytes = []byte(replyTo)

func (ch *channel) consumeReplyTo(m *amqp.BasicConsume) error {
	if !m.NoAck {
		return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "reply consumer cannot acknowledge")
	}
	if ch.replyName != "" {
		return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "reply consumer already set")
	}
	tag := m.ConsumerTag
	if tag == "" {
		tag = fmt.Sprintf("amq.ctag-reply-%d-%d", ch.c.id, ch.id)
	}
	var nonce [12]byte
	_, _ = rand.Read(nonce[:])
	ch.replyName = fmt.Sprintf("%s.%s.%d.%d.%s", replyTo, ch.c.cfg.ReplyToTag, ch.c.id, ch.id, base64.RawURLEncoding.EncodeToString(nonce[:]))
	ch.replyTag = tag
	if !m.NoWait {
		ch.c.writeMethod(ch.id, &amqp.BasicConsumeOk{ConsumerTag: tag})
	}
	ch.vh().RegisterReplyTo(ch.replyName, func(msg *queue.Message) bool {
		// the responder waits while the requester is not reading (credit
		// flow in RabbitMQ), rather than buffering replies without bound;
		// it holds no lock here
		ch.c.waitWritable()
		ch.mu.Lock()
		defer ch.mu.Unlock()
		if ch.closed {
			return false
		}
		ch.nextTag++
		ch.c.writeContent(ch.id, &amqp.BasicDeliver{ConsumerTag: tag, DeliveryTag: ch.nextTag, Exchange: msg.Exchange, RoutingKey: msg.RoutingKey}, msg)
		return true
	})
	return nil
}

// rewriteReplyTo replaces reply_to "amq.rabbitmq.reply-to" with this
// channel's reply name.
func (ch *channel) rewriteReplyTo(msg *queue.Message) error {
	p, err := amqp.DecodeProperties(msg.Props)
	if err != nil {
		return err
	}
	if p.ReplyTo != replyTo {
		return nil
	}
	if ch.replyName == "" {
		return amqp.NewError(amqp.PreconditionFailed, 60, 40, "fast reply consumer does not exist")
	}
	p.ReplyTo = ch.replyName
	props, err := p.Append(nil)
	if err != nil {
		return amqp.NewError(amqp.InternalError, 60, 40, "re-encoding properties: %v", err)
	}
	msg.Props = props
	return nil
}
