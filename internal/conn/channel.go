package conn

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/queue"
)

// MaxExpiry is the largest per-message expiration, x-message-ttl and
// x-expires RabbitMQ accepts, in milliseconds (rabbit_misc:check_expiry:
// ten years).
const MaxExpiry = 315_360_000_000

type chState uint8

const (
	chOpen    chState = iota
	chClosing         // channel.close sent, waiting for close-ok
)

// unacked is one delivery awaiting ack on a channel.
type unacked struct {
	tag  uint64
	q    queue.Handle
	id   uint64
	cons *consumer // nil for basic.get
	done bool
}

// consumer is a channel's registration on a queue; it is the queue.Consumer.
type consumer struct {
	ch       *channel
	tag      string
	q        queue.Handle
	noAck    bool
	prefetch uint16
	unacked  int
	gone     bool
}

// channel is one AMQP channel. Fields above mu belong to the reader
// goroutine; fields below are shared with deliveries and guarded by mu.
type channel struct {
	id    uint16
	c     *Conn
	state chState

	// content assembly
	publish  *amqp.BasicPublish
	bodySize uint64
	msgBuf   []byte // properties, then the body received so far
	propsLen int
	gotHdr   bool

	confirm        bool
	publishSeq     uint64
	confirmPending bool

	confMu        sync.Mutex // guards pend and maxRegistered
	pend          []pconf
	maxRegistered uint64
	tx            bool
	txPublishes   []txPublish
	txAcks        []txAck

	consumerPrefetch uint16 // basic.qos global=false: for new consumers

	replyName string // direct reply-to name while a reply consumer exists
	lastQueue string // the queue most recently declared on this channel
	replyTag  string

	mu             sync.Mutex
	closed         bool
	nextTag        uint64
	unacked        []unacked // ascending tag
	unackedLive    int
	globalPrefetch uint16
	consumers      map[string]*consumer
}

// pconf is a publish awaiting its confirm: done once the local store
// position wait is durable (local) and every copy sent to a queue on
// another node was answered (remote counts those still out).
type pconf struct {
	seq, wait   uint64 // wait: store position that must be durable first
	remote      int
	nack, local bool
}

func (p *pconf) done() bool { return p.local && p.remote == 0 }

type txPublish struct {
	exchange, key string
	mandatory     bool
	msg           *queue.Message
}

type txAck struct {
	tag               uint64
	multiple, requeue bool
	nack              bool
}

func newChannel(c *Conn, id uint16) *channel {
	return &channel{id: id, c: c, consumers: make(map[string]*consumer)}
}

func (ch *channel) vh() VHost { return ch.c.vhost }

// frame handles one frame addressed to this channel.
func (ch *channel) frame(f amqp.Frame) error {
	if ch.state == chClosing {
		if f.Type != amqp.FrameMethod {
			return nil
		}
		m, err := amqp.DecodeMethod(f.Payload)
		if err != nil {
			return err
		}
		switch m.(type) {
		case *amqp.ChannelCloseOk:
			ch.c.removeChannel(ch.id)
			ch.c.serverClosed(ch.id)
		case *amqp.ChannelClose:
			ch.c.writeMethod(ch.id, &amqp.ChannelCloseOk{})
		}
		return nil
	}
	var err error
	switch f.Type {
	case amqp.FrameMethod:
		if ch.publish != nil {
			return amqp.NewError(amqp.UnexpectedFrame, 60, 40, "expected content header for class 60, got non content header frame instead")
		}
		var m amqp.Method
		m, err = amqp.DecodeMethod(f.Payload)
		if err != nil {
			return err
		}
		err = ch.method(m)
	case amqp.FrameHeader:
		err = ch.header(f.Payload)
	case amqp.FrameBody:
		err = ch.bodyFrame(f.Payload)
	default:
		return amqp.NewError(amqp.FrameError, 0, 0, "unknown frame type %d", f.Type)
	}
	if err == nil {
		return nil
	}
	var ae *amqp.Error
	if errors.As(err, &ae) && !ae.Hard() {
		ch.fail(ae)
		return nil
	}
	return err
}

// fail closes the channel with a soft error.
func (ch *channel) fail(e *amqp.Error) {
	ch.c.log.Warn("channel error", "channel", ch.id, "code", e.Code, "text", e.Text)
	ch.release()
	ch.state = chClosing
	ch.publish = nil
	ch.msgBuf = nil
	ch.c.writeMethod(ch.id, &amqp.ChannelClose{ReplyCode: e.Code, ReplyText: e.Text, ClassId: e.ClassID, MethodId: e.MethodID})
}

func (c *Conn) removeChannel(id uint16) {
	c.chmu.Lock()
	delete(c.channels, id)
	c.chmu.Unlock()
}

// release cancels consumers and requeues unacked deliveries. Idempotent.
func (ch *channel) release() {
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return
	}
	ch.closed = true
	cons := make([]*consumer, 0, len(ch.consumers))
	for _, cs := range ch.consumers {
		cs.gone = true
		cons = append(cons, cs)
	}
	ch.consumers = map[string]*consumer{}
	pending := ch.takeUnackedLocked(func(*unacked) bool { return true })
	ch.mu.Unlock()
	if ch.replyName != "" {
		ch.vh().UnregisterReplyTo(ch.replyName)
	}
	for _, cs := range cons {
		cs.q.RemoveConsumer(cs.tag, cs)
	}
	requeue(pending)
}

func requeue(us []unacked) {
	byQ := map[queue.Handle][]uint64{}
	for _, u := range us {
		byQ[u.q] = append(byQ[u.q], u.id)
	}
	for q, ids := range byQ {
		q.Requeue(ids...)
	}
}

// takeUnackedLocked removes and returns live unacked entries selected by keep.
func (ch *channel) takeUnackedLocked(sel func(*unacked) bool) []unacked {
	var out []unacked
	for i := range ch.unacked {
		u := &ch.unacked[i]
		if u.done || !sel(u) {
			continue
		}
		u.done = true
		ch.unackedLive--
		if u.cons != nil {
			u.cons.unacked--
		}
		out = append(out, *u)
	}
	ch.compactLocked()
	return out
}

func (ch *channel) compactLocked() {
	i := 0
	for i < len(ch.unacked) && ch.unacked[i].done {
		i++
	}
	if i > 0 {
		n := copy(ch.unacked, ch.unacked[i:])
		for j := n; j < len(ch.unacked); j++ {
			ch.unacked[j] = unacked{}
		}
		ch.unacked = ch.unacked[:n]
	}
	if ch.unackedLive == 0 {
		ch.unacked = ch.unacked[:0]
	}
}

// kick asks the queues of this channel's consumers to dispatch again.
func (ch *channel) kick() {
	ch.mu.Lock()
	qs := make([]queue.Handle, 0, len(ch.consumers))
	seen := map[queue.Handle]bool{}
	for _, cs := range ch.consumers {
		if !seen[cs.q] {
			seen[cs.q] = true
			qs = append(qs, cs.q)
		}
	}
	ch.mu.Unlock()
	for _, q := range qs {
		q.Kick()
	}
}

// Deliver implements queue.Consumer. It runs with the queue locked.
func (cs *consumer) Deliver(d queue.Delivery) bool {
	ch := cs.ch
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed || cs.gone {
		return false
	}
	if !cs.noAck {
		if cs.prefetch > 0 && cs.unacked >= int(cs.prefetch) {
			return false
		}
		if ch.globalPrefetch > 0 && ch.unackedLive >= int(ch.globalPrefetch) {
			return false
		}
	}
	if ch.c.writerFull() {
		return false
	}
	ch.nextTag++
	tag := ch.nextTag
	if !cs.noAck {
		ch.unacked = append(ch.unacked, unacked{tag: tag, q: d.Queue, id: d.ID, cons: cs})
		ch.unackedLive++
		cs.unacked++
	}
	ch.c.writeContent(ch.id, &amqp.BasicDeliver{
		ConsumerTag: cs.tag,
		DeliveryTag: tag,
		Redelivered: d.Redelivered,
		Exchange:    d.Msg.Exchange,
		RoutingKey:  d.Msg.RoutingKey,
	}, d.Msg)
	return true
}

// Prefetch is how many unacked deliveries the consumer accepts (0: no
// limit): the credit a queue on another node runs ahead with.
func (cs *consumer) Prefetch() int {
	ch := cs.ch
	ch.mu.Lock()
	defer ch.mu.Unlock()
	n := int(cs.prefetch)
	if g := int(ch.globalPrefetch); g > 0 && (n == 0 || g < n) {
		n = g
	}
	return n
}

// Cancelled implements queue.Consumer: the queue was deleted.
func (cs *consumer) Cancelled(q queue.Handle) {
	ch := cs.ch
	ch.mu.Lock()
	if cs.gone {
		ch.mu.Unlock()
		return
	}
	cs.gone = true
	delete(ch.consumers, cs.tag)
	closed := ch.closed
	ch.mu.Unlock()
	if closed {
		return
	}
	caps, _ := ch.c.clientProps["capabilities"].(amqp.Table)
	if ok, _ := caps["consumer_cancel_notify"].(bool); ok {
		ch.c.writeMethod(ch.id, &amqp.BasicCancel{ConsumerTag: cs.tag, NoWait: true})
	}
}

// noDeclaredQueue is RabbitMQ's error for the empty queue name on a channel
// that has declared no queue (rabbit_channel:expand_queue_name_shortcut).
func noDeclaredQueue(m amqp.Method) error {
	return amqp.NewError(amqp.NotFound, m.ClassID(), m.MethodID(), "no previously declared queue")
}

// expandShortcuts applies AMQP 0-9-1's shortcut: an empty queue name means
// the queue last declared on this channel (and, in queue.bind and
// queue.unbind, an empty routing key with it means that queue's name).
func (ch *channel) expandShortcuts(m amqp.Method) error {
	expand := func(name *string) error {
		if *name != "" {
			return nil
		}
		if ch.lastQueue == "" {
			return noDeclaredQueue(m)
		}
		*name = ch.lastQueue
		return nil
	}
	expandBind := func(name, key *string) error {
		empty := *name == ""
		if err := expand(name); err != nil {
			return err
		}
		if empty && *key == "" {
			*key = ch.lastQueue
		}
		return nil
	}
	switch m := m.(type) {
	case *amqp.BasicGet:
		return expand(&m.Queue)
	case *amqp.BasicConsume:
		return expand(&m.Queue)
	case *amqp.QueueDelete:
		return expand(&m.Queue)
	case *amqp.QueuePurge:
		return expand(&m.Queue)
	case *amqp.QueueBind:
		return expandBind(&m.Queue, &m.RoutingKey)
	case *amqp.QueueUnbind:
		return expandBind(&m.Queue, &m.RoutingKey)
	}
	return nil
}

func (ch *channel) method(m amqp.Method) error {
	vh := ch.vh()
	if err := ch.expandShortcuts(m); err != nil {
		return err
	}
	switch m := m.(type) {
	case *amqp.BasicPublish:
		return ch.startPublish(m)
	case *amqp.BasicAck:
		if ch.tx {
			ch.txAcks = append(ch.txAcks, txAck{tag: m.DeliveryTag, multiple: m.Multiple})
			return ch.checkTag(m.DeliveryTag, m.Multiple, m)
		}
		return ch.ack(m.DeliveryTag, m.Multiple, m)
	case *amqp.BasicNack:
		if ch.tx {
			ch.txAcks = append(ch.txAcks, txAck{tag: m.DeliveryTag, multiple: m.Multiple, requeue: m.Requeue, nack: true})
			return ch.checkTag(m.DeliveryTag, m.Multiple, m)
		}
		return ch.reject(m.DeliveryTag, m.Multiple, m.Requeue, m)
	case *amqp.BasicReject:
		if ch.tx {
			ch.txAcks = append(ch.txAcks, txAck{tag: m.DeliveryTag, requeue: m.Requeue, nack: true})
			return ch.checkTag(m.DeliveryTag, false, m)
		}
		return ch.reject(m.DeliveryTag, false, m.Requeue, m)
	case *amqp.BasicQos:
		if m.PrefetchSize != 0 {
			return amqp.NewError(amqp.NotImplemented, m.ClassID(), m.MethodID(), "prefetch_size!=0 (%d)", m.PrefetchSize)
		}
		if m.Global {
			ch.mu.Lock()
			ch.globalPrefetch = m.PrefetchCount
			ch.mu.Unlock()
		} else {
			ch.consumerPrefetch = m.PrefetchCount
		}
		ch.c.writeMethod(ch.id, &amqp.BasicQosOk{})
		ch.kick()
		return nil
	case *amqp.BasicConsume:
		return ch.consume(m)
	case *amqp.BasicCancel:
		if ch.replyName != "" && m.ConsumerTag == ch.replyTag {
			ch.vh().UnregisterReplyTo(ch.replyName)
			ch.replyName, ch.replyTag = "", ""
			if !m.NoWait {
				ch.c.writeMethod(ch.id, &amqp.BasicCancelOk{ConsumerTag: m.ConsumerTag})
			}
			return nil
		}
		ch.mu.Lock()
		cs := ch.consumers[m.ConsumerTag]
		if cs != nil {
			cs.gone = true
			delete(ch.consumers, m.ConsumerTag)
		}
		ch.mu.Unlock()
		if cs != nil {
			cs.q.RemoveConsumer(cs.tag, cs)
		}
		if !m.NoWait {
			ch.c.writeMethod(ch.id, &amqp.BasicCancelOk{ConsumerTag: m.ConsumerTag})
		}
		return nil
	case *amqp.BasicGet:
		return ch.get(m)
	case *amqp.BasicRecover, *amqp.BasicRecoverAsync:
		if r, ok := m.(*amqp.BasicRecover); ok && !r.Requeue {
			// RabbitMQ 3.10: protocol_error(not_implemented, "requeue=false")
			return amqp.NewError(amqp.NotImplemented, r.ClassID(), r.MethodID(), "requeue=false")
		}
		if r, ok := m.(*amqp.BasicRecoverAsync); ok && !r.Requeue {
			return amqp.NewError(amqp.NotImplemented, r.ClassID(), r.MethodID(), "requeue=false")
		}
		ch.mu.Lock()
		pending := ch.takeUnackedLocked(func(*unacked) bool { return true })
		ch.mu.Unlock()
		requeue(pending)
		if _, ok := m.(*amqp.BasicRecover); ok {
			ch.c.writeMethod(ch.id, &amqp.BasicRecoverOk{})
		}
		return nil
	case *amqp.ChannelClose:
		ch.release()
		ch.c.removeChannel(ch.id)
		ch.c.writeMethod(ch.id, &amqp.ChannelCloseOk{})
		return nil
	case *amqp.ChannelCloseOk:
		return nil
	case *amqp.ChannelOpen:
		return amqp.NewError(amqp.ChannelError, m.ClassID(), m.MethodID(), "second 'channel.open' seen")
	case *amqp.ChannelFlow:
		if !m.Active {
			// RabbitMQ 3.10 does not implement a client stopping the
			// server's deliveries: it closes the connection with 540
			// (rabbit_channel: protocol_error(not_implemented,
			// "active=false")). Clients that need to pause use basic.qos
			// or cancel their consumers.
			return amqp.NewError(amqp.NotImplemented, m.ClassID(), m.MethodID(), "active=false")
		}
		ch.c.writeMethod(ch.id, &amqp.ChannelFlowOk{Active: true})
		return nil
	case *amqp.ChannelFlowOk:
		return nil
	case *amqp.ExchangeDeclare:
		if err := vh.DeclareExchange(m); err != nil {
			return err
		}
		if !m.NoWait {
			ch.c.writeMethod(ch.id, &amqp.ExchangeDeclareOk{})
		}
		return nil
	case *amqp.ExchangeDelete:
		if err := vh.DeleteExchange(m); err != nil {
			return err
		}
		if !m.NoWait {
			ch.c.writeMethod(ch.id, &amqp.ExchangeDeleteOk{})
		}
		return nil
	case *amqp.ExchangeBind:
		if err := vh.BindExchange(m); err != nil {
			return err
		}
		if !m.NoWait {
			ch.c.writeMethod(ch.id, &amqp.ExchangeBindOk{})
		}
		return nil
	case *amqp.ExchangeUnbind:
		if err := vh.UnbindExchange(m); err != nil {
			return err
		}
		if !m.NoWait {
			ch.c.writeMethod(ch.id, &amqp.ExchangeUnbindOk{})
		}
		return nil
	case *amqp.QueueDeclare:
		name, msgs, cons, err := vh.DeclareQueue(m, ch.c.id)
		if err != nil {
			return err
		}
		ch.lastQueue = name
		if !m.NoWait {
			ch.c.writeMethod(ch.id, &amqp.QueueDeclareOk{Queue: name, MessageCount: msgs, ConsumerCount: cons})
		}
		return nil
	case *amqp.QueueBind:
		if err := vh.BindQueue(m, ch.c.id); err != nil {
			return err
		}
		if !m.NoWait {
			ch.c.writeMethod(ch.id, &amqp.QueueBindOk{})
		}
		return nil
	case *amqp.QueueUnbind:
		if err := vh.UnbindQueue(m, ch.c.id); err != nil {
			return err
		}
		ch.c.writeMethod(ch.id, &amqp.QueueUnbindOk{})
		return nil
	case *amqp.QueuePurge:
		n, err := vh.PurgeQueue(m, ch.c.id)
		if err != nil {
			return err
		}
		if !m.NoWait {
			ch.c.writeMethod(ch.id, &amqp.QueuePurgeOk{MessageCount: n})
		}
		return nil
	case *amqp.QueueDelete:
		n, err := vh.DeleteQueue(m, ch.c.id)
		if err != nil {
			return err
		}
		if !m.NoWait {
			ch.c.writeMethod(ch.id, &amqp.QueueDeleteOk{MessageCount: n})
		}
		return nil
	case *amqp.ConfirmSelect:
		if ch.tx {
			return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "cannot switch from tx to confirm mode")
		}
		ch.confirm = true
		if !m.Nowait {
			ch.c.writeMethod(ch.id, &amqp.ConfirmSelectOk{})
		}
		return nil
	case *amqp.TxSelect:
		if ch.confirm {
			return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "cannot switch from confirm to tx mode")
		}
		ch.tx = true
		ch.c.writeMethod(ch.id, &amqp.TxSelectOk{})
		return nil
	case *amqp.TxCommit:
		if !ch.tx {
			return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "channel is not transactional")
		}
		return ch.commit(m)
	case *amqp.TxRollback:
		if !ch.tx {
			return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "channel is not transactional")
		}
		ch.txPublishes, ch.txAcks = nil, nil
		ch.c.writeMethod(ch.id, &amqp.TxRollbackOk{})
		return nil
	}
	if m.ClassID() == amqp.ClassConnection {
		return amqp.NewError(amqp.CommandInvalid, m.ClassID(), m.MethodID(), "connection method '%s' on channel %d", m.Name(), ch.id)
	}
	return amqp.NewError(amqp.CommandInvalid, m.ClassID(), m.MethodID(), "unexpected method '%s' from the client", m.Name())
}

func (ch *channel) consume(m *amqp.BasicConsume) error {
	if m.Queue == replyTo {
		return ch.consumeReplyTo(m)
	}
	q, err := ch.vh().QueueFor(m, m.Queue, ch.c.id)
	if err != nil {
		return err
	}
	tag := m.ConsumerTag
	ch.mu.Lock()
	if tag == "" {
		tag = fmt.Sprintf("amq.ctag-%d-%d-%d", ch.c.id, ch.id, ch.nextTag+uint64(len(ch.consumers))+1)
		for ch.consumers[tag] != nil {
			tag += "x"
		}
	}
	if ch.consumers[tag] != nil {
		ch.mu.Unlock()
		return amqp.NewError(amqp.NotAllowed, m.ClassID(), m.MethodID(), "attempt to reuse consumer tag '%s'", tag)
	}
	cs := &consumer{ch: ch, tag: tag, q: q, noAck: m.NoAck, prefetch: ch.consumerPrefetch}
	ch.consumers[tag] = cs
	ch.mu.Unlock()
	prio := 0
	// consumer arguments as RabbitMQ 3.10 checks them for classic queues
	// (rabbit_amqqueue:check_consume_arguments)
	badArg := func(k, why string) error {
		ch.dropConsumer(cs)
		return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s': %s", k, q.Name(), ch.vh().Name(), why)
	}
	for k, v := range m.Arguments {
		switch k {
		case "x-priority":
			p, ok := amqp.IntValue(v)
			if !ok {
				return badArg(k, fmt.Sprintf("\"expected integer, got %s\"", amqp.FieldTypeName(v)))
			}
			prio = int(p)
		case "x-cancel-on-ha-failover":
			if _, ok := v.(bool); !ok {
				return badArg(k, "{unacceptable_type,"+amqp.FieldTypeName(v)+"}")
			}
		case "x-stream-offset":
			ch.dropConsumer(cs)
			return amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "invalid arg '%s' for queue '%s' in vhost '%s' of queue type rabbit_classic_queue", k, q.Name(), ch.vh().Name())
		}
	}
	// consume-ok must precede the first delivery: it is written once the
	// queue admits the consumer, before the queue dispatches to it.
	var ok func()
	if !m.NoWait {
		ok = func() { ch.c.writeMethod(ch.id, &amqp.BasicConsumeOk{ConsumerTag: tag}) }
	}
	if err := q.AddConsumer(tag, cs, m.NoAck, m.Exclusive, prio, ok); err != nil {
		ch.dropConsumer(cs)
		if errors.Is(err, queue.ErrExclusiveConsumer) {
			return amqp.NewError(amqp.AccessRefused, m.ClassID(), m.MethodID(), "queue '%s' in vhost '%s' in exclusive use", q.Name(), ch.vh().Name())
		}
		return amqp.NewError(amqp.NotFound, m.ClassID(), m.MethodID(), "no queue '%s' in vhost '%s'", q.Name(), ch.vh().Name())
	}
	return nil
}

func (ch *channel) dropConsumer(cs *consumer) {
	ch.mu.Lock()
	cs.gone = true
	if ch.consumers[cs.tag] == cs {
		delete(ch.consumers, cs.tag)
	}
	ch.mu.Unlock()
}

func (ch *channel) get(m *amqp.BasicGet) error {
	q, err := ch.vh().QueueFor(m, m.Queue, ch.c.id)
	if err != nil {
		return err
	}
	// backpressure: take a message only once the client has read enough
	// of what it was sent (deliveries wait the same way, in Deliver)
	ch.c.waitWritable()
	if ch.c.serverClosing.Load() || ch.c.wfailed.Load() {
		return nil // the connection is ending: take nothing more
	}
	// the queue is called without ch.mu (lock order: queue → channel; a
	// queue on another node answers over the network)
	d, ok := q.Get(m.NoAck)
	if !ok {
		ch.c.writeMethod(ch.id, &amqp.BasicGetEmpty{})
		return nil
	}
	ch.mu.Lock()
	if ch.closed && !m.NoAck {
		ch.mu.Unlock()
		q.Requeue(d.ID) // closed meanwhile: it was never sent
		return nil
	}
	defer ch.mu.Unlock()
	ch.nextTag++
	tag := ch.nextTag
	if !m.NoAck {
		ch.unacked = append(ch.unacked, unacked{tag: tag, q: q, id: d.ID})
		ch.unackedLive++
	}
	ch.c.writeContent(ch.id, &amqp.BasicGetOk{
		DeliveryTag:  tag,
		Redelivered:  d.Redelivered,
		Exchange:     d.Msg.Exchange,
		RoutingKey:   d.Msg.RoutingKey,
		MessageCount: d.Remaining,
	}, d.Msg)
	return nil
}

// selectTags returns a selector for tag (and all before it when multiple;
// tag 0 with multiple means everything), or an error for an unknown tag.
func (ch *channel) selectTags(tag uint64, multiple bool, m amqp.Method) (func(*unacked) bool, error) {
	if multiple && tag == 0 {
		return func(*unacked) bool { return true }, nil
	}
	i := sort.Search(len(ch.unacked), func(i int) bool { return ch.unacked[i].tag >= tag })
	if i == len(ch.unacked) || ch.unacked[i].tag != tag || ch.unacked[i].done {
		return nil, amqp.NewError(amqp.PreconditionFailed, m.ClassID(), m.MethodID(), "unknown delivery tag %d", tag)
	}
	if multiple {
		return func(u *unacked) bool { return u.tag <= tag }, nil
	}
	return func(u *unacked) bool { return u.tag == tag }, nil
}

func (ch *channel) checkTag(tag uint64, multiple bool, m amqp.Method) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	_, err := ch.selectTags(tag, multiple, m)
	return err
}

func (ch *channel) ack(tag uint64, multiple bool, m amqp.Method) error {
	ch.mu.Lock()
	sel, err := ch.selectTags(tag, multiple, m)
	if err != nil {
		ch.mu.Unlock()
		return err
	}
	var done []unacked
	if !multiple && len(ch.unacked) > 0 && ch.unacked[0].tag == tag {
		// common case: acking the oldest delivery
		u := &ch.unacked[0]
		u.done = true
		ch.unackedLive--
		if u.cons != nil {
			u.cons.unacked--
		}
		done = append(done, *u)
		ch.compactLocked()
	} else {
		done = ch.takeUnackedLocked(sel)
	}
	ch.mu.Unlock()
	ackAll(done)
	ch.kick()
	return nil
}

func ackAll(done []unacked) {
	if len(done) == 1 {
		done[0].q.Ack(done[0].id)
		return
	}
	byQ := map[queue.Handle][]uint64{}
	for _, u := range done {
		byQ[u.q] = append(byQ[u.q], u.id)
	}
	for q, ids := range byQ {
		q.Ack(ids...)
	}
}

func (ch *channel) reject(tag uint64, multiple, requeueIt bool, m amqp.Method) error {
	ch.mu.Lock()
	sel, err := ch.selectTags(tag, multiple, m)
	if err != nil {
		ch.mu.Unlock()
		return err
	}
	done := ch.takeUnackedLocked(sel)
	ch.mu.Unlock()
	if requeueIt {
		requeue(done)
	} else {
		byQ := map[queue.Handle][]uint64{}
		for _, u := range done {
			byQ[u.q] = append(byQ[u.q], u.id)
		}
		for q, ids := range byQ {
			q.Discard(ids...)
		}
	}
	ch.kick()
	return nil
}

func (ch *channel) commit(m *amqp.TxCommit) error {
	pubs, acks := ch.txPublishes, ch.txAcks
	ch.txPublishes, ch.txAcks = nil, nil
	var wait uint64
	var remote []*queue.Pending
	for _, p := range pubs {
		r, err := ch.route(p.exchange, p.key, p.mandatory, p.msg)
		if err != nil {
			return err
		}
		wait = max(wait, r.WaitFor)
		remote = append(remote, r.Remote...)
	}
	for _, p := range remote {
		// tx.commit-ok means the queues on other nodes have them too
		done := make(chan queue.Outcome, 1)
		p.OnDone(func(o queue.Outcome) { done <- o })
		if <-done == queue.Lost {
			return amqp.NewError(amqp.InternalError, m.ClassID(), m.MethodID(), "commit failed: the connection to the node of a queue the transaction published to was lost; its messages may or may not have been stored")
		}
	}
	if wait > 0 && ch.c.cfg.Durability != nil {
		// tx.commit-ok means the persistent messages are on disk
		done := make(chan error, 1)
		ch.c.cfg.Durability.OnDurable(wait, func(err error) { done <- err })
		if err := <-done; err != nil {
			return amqp.NewError(amqp.InternalError, m.ClassID(), m.MethodID(), "commit failed: the message store could not persist: %v", err)
		}
	}
	for _, a := range acks {
		var err error
		if a.nack {
			err = ch.reject(a.tag, a.multiple, a.requeue, m)
		} else {
			err = ch.ack(a.tag, a.multiple, m)
		}
		var ae *amqp.Error
		if err != nil && !(errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed) {
			return err
		}
	}
	ch.c.writeMethod(ch.id, &amqp.TxCommitOk{})
	return nil
}

// ---- publishing ----

func (ch *channel) startPublish(m *amqp.BasicPublish) error {
	if m.Immediate {
		return amqp.NewError(amqp.NotImplemented, m.ClassID(), m.MethodID(), "immediate=true")
	}
	if !ch.c.srv.PublishAllowed() {
		ch.c.holdPublisher()
	}
	ch.publish = m
	ch.gotHdr = false
	return nil
}

func (ch *channel) header(p []byte) error {
	if ch.publish == nil {
		return amqp.NewError(amqp.UnexpectedFrame, 0, 0, "expected method frame, got non method frame instead")
	}
	if ch.gotHdr {
		return amqp.NewError(amqp.UnexpectedFrame, 60, 40, "expected content body, got content header instead")
	}
	class, size, props, err := amqp.ParseContentHeader(p)
	if err != nil {
		return err
	}
	if class != amqp.ClassBasic {
		return amqp.NewError(amqp.FrameError, 60, 40, "content header class %d does not match method class 60", class)
	}
	if size > uint64(ch.c.cfg.MaxMessageSize) {
		// RabbitMQ 3.10 closes the channel with 406 for oversized messages;
		// the body frames that follow are dropped by the closing channel.
		return amqp.NewError(amqp.PreconditionFailed, 60, 40, "message size %d is larger than configured max size %d", size, ch.c.cfg.MaxMessageSize)
	}
	ch.gotHdr = true
	ch.bodySize = size
	// The buffer grows as body bytes arrive: a header may announce up to
	// max_message_size, but memory is only spent on what is sent.
	ch.msgBuf = make([]byte, len(props), len(props)+int(min(size, initialBodyBuf)))
	copy(ch.msgBuf, props)
	ch.propsLen = len(props)
	if size == 0 {
		return ch.finishPublish()
	}
	return nil
}

// initialBodyBuf is the body capacity allocated when a content header
// arrives; larger bodies grow the buffer as their frames come in.
const initialBodyBuf = 128 << 10

func (ch *channel) bodyFrame(p []byte) error {
	if ch.publish == nil || !ch.gotHdr {
		return amqp.NewError(amqp.UnexpectedFrame, 0, 0, "expected method frame, got non method frame instead")
	}
	got := uint64(len(ch.msgBuf) - ch.propsLen)
	if got+uint64(len(p)) > ch.bodySize {
		return amqp.NewError(amqp.FrameError, 60, 40, "content body is larger than the %d bytes the header announced", ch.bodySize)
	}
	if need := len(ch.msgBuf) + len(p); need > cap(ch.msgBuf) {
		// grow by doubling, never past the announced size
		nc := min(max(2*cap(ch.msgBuf), need), ch.propsLen+int(ch.bodySize))
		nb := make([]byte, len(ch.msgBuf), nc)
		copy(nb, ch.msgBuf)
		ch.msgBuf = nb
	}
	ch.msgBuf = append(ch.msgBuf, p...)
	if uint64(len(ch.msgBuf)-ch.propsLen) == ch.bodySize {
		return ch.finishPublish()
	}
	return nil
}

func (ch *channel) finishPublish() error {
	pub := ch.publish
	ch.publish = nil
	ch.gotHdr = false
	buf := ch.msgBuf
	np := ch.propsLen
	// The message keeps buf; the next message gets a fresh buffer.
	ch.msgBuf = nil
	msg := &queue.Message{
		Exchange:   pub.Exchange,
		RoutingKey: pub.RoutingKey,
		Props:      buf[:np:np],
		Body:       buf[np:],
	}
	pi, err := amqp.PeekPublishInfo(msg.Props)
	if err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) {
			return amqp.NewError(ae.Code, 60, 40, "%s", strings.TrimPrefix(ae.Text, amqp.ReplyName(ae.Code)+" - "))
		}
		return amqp.NewError(amqp.SyntaxError, 60, 40, "malformed content header properties: %v", err)
	}
	msg.Persistent = pi.DeliveryMode == 2
	msg.Priority = pi.Priority
	if pi.UserID != "" && pi.UserID != ch.c.user && !ch.c.srv.CanImpersonate(ch.c.user) {
		// rabbit_channel:check_user_id_header
		return amqp.NewError(amqp.PreconditionFailed, 60, 40, "user_id property set to '%s' but authenticated user was '%s'", pi.UserID, ch.c.user)
	}
	if bytes.Contains(msg.Props, replyToBytes) {
		if err := ch.rewriteReplyTo(msg); err != nil {
			return err
		}
	}
	if exp := pi.Expiration; exp != "" {
		ms, err := strconv.ParseInt(exp, 10, 64)
		if err != nil {
			return amqp.NewError(amqp.PreconditionFailed, 60, 40, "invalid expiration '%s': {invalid_expiration,<<\"%s\">>}", exp, exp)
		}
		if ms < 0 {
			return amqp.NewError(amqp.PreconditionFailed, 60, 40, "invalid expiration '%s': {value_negative,%d}", exp, ms)
		}
		if ms > MaxExpiry {
			return amqp.NewError(amqp.PreconditionFailed, 60, 40, "invalid expiration '%s': {value_too_large,%d}", exp, ms)
		}
		msg.Expiration, msg.HasExpiration = ms, true
	}
	if ch.tx {
		if err := ch.checkExchange(pub); err != nil {
			return err
		}
		ch.txPublishes = append(ch.txPublishes, txPublish{exchange: pub.Exchange, key: pub.RoutingKey, mandatory: pub.Mandatory, msg: msg})
		return nil
	}
	if ch.confirm {
		ch.publishSeq++
	}
	r, err := ch.route(pub.Exchange, pub.RoutingKey, pub.Mandatory, msg)
	if err != nil {
		return err
	}
	if ch.confirm {
		ch.confMu.Lock()
		ch.pend = append(ch.pend, pconf{seq: ch.publishSeq, wait: r.WaitFor, nack: r.Rejected || r.Unreachable > 0, local: r.WaitFor == 0, remote: len(r.Remote)})
		ch.confMu.Unlock()
		ch.confirmPending = true
		for _, p := range r.Remote {
			seq := ch.publishSeq
			p.OnDone(func(o queue.Outcome) { ch.remoteDone(seq, o) })
		}
	}
	return nil
}

// remoteDone records the answer of a queue on another node for publish
// seq (a nack unless it stored the message).
func (ch *channel) remoteDone(seq uint64, o queue.Outcome) {
	ch.confMu.Lock()
	i := sort.Search(len(ch.pend), func(i int) bool { return ch.pend[i].seq >= seq })
	if i < len(ch.pend) && ch.pend[i].seq == seq {
		p := &ch.pend[i]
		p.remote--
		if o != queue.Stored {
			p.nack = true
		}
	}
	ready := len(ch.pend) > 0 && ch.pend[0].done()
	ch.confMu.Unlock()
	if ready {
		ch.sendConfirms()
	}
}

// checkExchange validates a transactional publish early (RabbitMQ checks
// the exchange when the publish arrives, not at commit).
func (ch *channel) checkExchange(pub *amqp.BasicPublish) error {
	return ch.vh().CanPublish(pub.Exchange)
}

func (ch *channel) route(exchange, key string, mandatory bool, msg *queue.Message) (queue.Routed, error) {
	r, err := ch.vh().Publish(exchange, key, msg)
	if err != nil {
		return r, err
	}
	if r.Queues == 0 && (!r.Rejected || r.Unreachable > 0) && mandatory {
		ch.c.waitWritable()
		ch.c.writeContent(ch.id, &amqp.BasicReturn{ReplyCode: amqp.NoRoute, ReplyText: "NO_ROUTE", Exchange: exchange, RoutingKey: key}, msg)
	}
	return r, nil
}

// flushConfirm runs when the reader has drained its input: it confirms
// every publish that is ready (one basic.ack multiple for a run) and asks
// the store to call back once the persisted ones are on disk (one waiter
// for the whole burst: group commit does the rest).
func (ch *channel) flushConfirm() {
	ch.confirmPending = false
	var wait uint64
	ch.confMu.Lock()
	for i := range ch.pend {
		if !ch.pend[i].local && ch.pend[i].wait > ch.maxRegistered {
			wait = max(wait, ch.pend[i].wait)
		}
	}
	if wait > 0 {
		ch.maxRegistered = wait
	}
	ch.confMu.Unlock()
	if wait > 0 && ch.c.cfg.Durability != nil {
		ch.c.cfg.Durability.OnDurable(wait, func(err error) { ch.durableUpTo(wait, err) })
	}
	ch.sendConfirms()
}

// durableUpTo marks publishes waiting for positions up to pos as ready
// (nacked if the store failed).
func (ch *channel) durableUpTo(pos uint64, err error) {
	ch.confMu.Lock()
	for i := range ch.pend {
		p := &ch.pend[i]
		if !p.local && p.wait <= pos {
			p.local = true
			if err != nil {
				p.nack = true
			}
		}
	}
	ch.confMu.Unlock()
	ch.sendConfirms()
}

// sendConfirms writes acks (coalesced) and nacks for the ready prefix.
func (ch *channel) sendConfirms() {
	ch.confMu.Lock()
	defer ch.confMu.Unlock()
	var lastAck uint64
	i := 0
	for ; i < len(ch.pend) && ch.pend[i].done(); i++ {
		p := ch.pend[i]
		if p.nack {
			if lastAck > 0 {
				ch.c.writeMethod(ch.id, &amqp.BasicAck{DeliveryTag: lastAck, Multiple: true})
				lastAck = 0
			}
			ch.c.writeMethod(ch.id, &amqp.BasicNack{DeliveryTag: p.seq})
			continue
		}
		lastAck = p.seq
	}
	if lastAck > 0 {
		ch.c.writeMethod(ch.id, &amqp.BasicAck{DeliveryTag: lastAck, Multiple: true})
	}
	n := copy(ch.pend, ch.pend[i:])
	ch.pend = ch.pend[:n]
}
