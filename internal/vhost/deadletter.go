package vhost

import (
	"time"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/exchange"
	"github.com/warrenmq/warren/internal/queue"
)

// deadLetter republishes messages a queue dead-lettered, with the x-death
// header RabbitMQ writes: an array of tables (most recent first) with count,
// reason, queue, time, exchange, routing-keys (and original-expiration),
// plus x-first-death-reason/queue/exchange set once.
func (v *VHost) deadLetter(from *queue.Queue, dls []queue.DeadLetter) {
	var scratch []exchange.Destination
	for _, dl := range dls {
		msg, deaths := deathMessage(dl, time.Now())
		x := v.lookupExchange(dl.Exchange)
		var qs []*queue.Queue
		if x != nil {
			var headers map[string]any
			qs = v.route(x, msg.RoutingKey, msg, &headers, nil, 0, &scratch)
		}
		if x == nil {
			v.log.Debug("dead-letter exchange missing; message dropped", "queue", dl.Queue, "exchange", dl.Exchange)
			continue
		}
		for _, q := range qs {
			if isCycle(deaths, q.Name()) {
				v.log.Debug("dead-letter cycle; message dropped", "queue", q.Name())
				continue
			}
			if home, remote := v.remoteHome(q); remote {
				// to its home; never left in this node's copy, where no
				// one would see it. Dead-lettering is at most once, as
				// RabbitMQ's: a home that is down loses it.
				if v.fwd == nil || !v.fwd.Up(home) {
					v.log.Warn("dead-lettered message dropped: the home node of its target queue is down", "from", dl.Queue, "queue", q.Name(), "home", home)
					continue
				}
				v.fwd.Publish(home, v.name, []string{q.Name()}, msg)
				continue
			}
			q.Publish(msg)
		}
	}
}

// isCycle reports a dead-letter loop back into queue with no rejection
// along the way (RabbitMQ drops such messages).
func isCycle(deaths []any, q string) bool {
	seen := false
	for _, d := range deaths {
		t, _ := d.(amqp.Table)
		if r, _ := t["reason"].(string); r == queue.ReasonRejected {
			return false
		}
		if n, _ := t["queue"].(string); n == q {
			seen = true
		}
	}
	return seen
}

func deathMessage(dl queue.DeadLetter, now time.Time) (*queue.Message, []any) {
	m := dl.Msg
	p, err := amqp.DecodeProperties(m.Props)
	if err != nil {
		p = amqp.Properties{}
	}
	if p.Headers == nil {
		p.Headers = amqp.Table{}
	} else {
		h := make(amqp.Table, len(p.Headers)+4)
		for k, val := range p.Headers {
			h[k] = val
		}
		p.Headers = h
	}
	deaths, _ := p.Headers["x-death"].([]any)
	var found amqp.Table
	rest := make([]any, 0, len(deaths)+1)
	for _, d := range deaths {
		t, ok := d.(amqp.Table)
		if ok && found == nil && t["queue"] == dl.Queue && t["reason"] == dl.Reason {
			found = t
			continue
		}
		rest = append(rest, d)
	}
	if found != nil {
		nt := make(amqp.Table, len(found))
		for k, val := range found {
			nt[k] = val
		}
		c, _ := nt["count"].(int64)
		nt["count"] = c + 1
		nt["time"] = now.Truncate(time.Second)
		found = nt
	} else {
		found = amqp.Table{
			"count":        int64(1),
			"reason":       dl.Reason,
			"queue":        dl.Queue,
			"time":         now.Truncate(time.Second),
			"exchange":     m.Exchange,
			"routing-keys": []any{m.RoutingKey},
		}
	}
	if dl.Reason == queue.ReasonExpired && p.Expiration != "" {
		found["original-expiration"] = p.Expiration
	}
	p.Expiration = ""
	deaths = append([]any{found}, rest...)
	p.Headers["x-death"] = deaths
	if _, ok := p.Headers["x-first-death-reason"]; !ok {
		p.Headers["x-first-death-reason"] = dl.Reason
		p.Headers["x-first-death-queue"] = dl.Queue
		p.Headers["x-first-death-exchange"] = m.Exchange
	}
	props, err := p.Append(nil)
	if err != nil {
		props = m.Props
	}
	rk := m.RoutingKey
	if dl.RoutingKey != "" {
		rk = dl.RoutingKey
	}
	return &queue.Message{
		Exchange: dl.Exchange, RoutingKey: rk, Props: props, Body: m.Body,
		Persistent: m.Persistent, Priority: m.Priority,
	}, deaths
}
