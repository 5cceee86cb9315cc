package mgmt

import (
	"sync"
	"time"

	"github.com/warrenmq/warren/internal/broker"
)

// rates samples the node's message counters every interval and keeps ten
// minutes of history for the overview charts and *_details.rate fields.
type rates struct {
	b       *broker.Broker
	mu      sync.Mutex
	samples []sample
	done    chan struct{}
	once    sync.Once
}

type sample struct {
	At                       int64 // unix ms
	Publish, Deliver, Ack    uint64
	Messages, Ready, Unacked int
	Churn                    broker.Churn `json:"-"`
}

const (
	sampleEvery = 5 * time.Second
	keep        = 120 // ten minutes
)

func newRates(b *broker.Broker) *rates {
	r := &rates{b: b, done: make(chan struct{})}
	r.take()
	go r.loop()
	return r
}

func (r *rates) stop() { r.once.Do(func() { close(r.done) }) }

func (r *rates) loop() {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
			r.take()
		}
	}
}

func (r *rates) take() {
	s := sample{At: time.Now().UnixMilli(), Churn: r.b.Churn()}
	for _, vn := range r.b.VHostNames() {
		v := r.b.VHost(vn)
		if v == nil {
			continue
		}
		for _, q := range v.Queues() {
			st := q.Stats()
			s.Publish += st.Published
			s.Deliver += st.Delivered
			s.Ack += st.Acked
			ready, unacked, _ := q.Counts()
			s.Ready += ready
			s.Unacked += unacked
		}
	}
	s.Messages = s.Ready + s.Unacked
	r.mu.Lock()
	r.samples = append(r.samples, s)
	if len(r.samples) > keep {
		r.samples = r.samples[len(r.samples)-keep:]
	}
	r.mu.Unlock()
}

type snapshot []sample

func (r *rates) snapshot() snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(snapshot(nil), r.samples...)
}

func rate(a, b uint64, ms int64) float64 {
	if ms <= 0 || b < a {
		return 0
	}
	return float64(b-a) * 1000 / float64(ms)
}

// messageStats renders RabbitMQ's message_stats with *_details.rate.
func (s snapshot) messageStats() map[string]any {
	if len(s) == 0 {
		return map[string]any{}
	}
	last := s[len(s)-1]
	var pr, dr, ar float64
	if len(s) > 1 {
		prev := s[len(s)-2]
		ms := last.At - prev.At
		pr, dr, ar = rate(prev.Publish, last.Publish, ms), rate(prev.Deliver, last.Deliver, ms), rate(prev.Ack, last.Ack, ms)
	}
	return map[string]any{
		"publish": last.Publish, "publish_details": map[string]float64{"rate": pr},
		"deliver_get": last.Deliver, "deliver_get_details": map[string]float64{"rate": dr},
		"ack": last.Ack, "ack_details": map[string]float64{"rate": ar},
	}
}
