// Package perf is warren-perf's load generator (rabbitmq-perf-test's role):
// producers and consumers over any AMQP 0-9-1 broker, numbered messages
// with a send timestamp in the body, per-second reports, latency
// percentiles, and an exact loss/duplicate check of what was sent against
// what was received (the oracle of the failover tests).
//
//	res, err := perf.Run(ctx, perf.Config{URIs: []string{"amqp://localhost"}, Producers: 1, Consumers: 1, Duration: 10 * time.Second}, os.Stdout)
package perf

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Config is one run.
type Config struct {
	URIs               []string
	ProducerURIs       []string // producers' brokers (default URIs)
	ConsumerURIs       []string // consumers' brokers (default URIs)
	Producers          int
	Consumers          int
	Queues             int    // queues to declare and spread over (default 1)
	QueuePattern       string // fmt pattern for queue names, e.g. "perf-%d"
	Size               int    // body bytes (minimum 16)
	Rate               int    // per producer msg/s, 0 = unlimited
	ConfirmWindow      int    // outstanding confirms per producer, 0 = no confirms
	Persistent         bool
	Durable            bool
	Exclusive          bool
	AutoDelete         bool
	QueueArgs          amqp.Table
	Exchange           string // "" = default exchange, routing to the queue
	ExchangeType       string
	RoutingKey         string
	AutoAck            bool
	Prefetch           int
	MultiAckEvery      int
	Duration           time.Duration
	MessageCount       int // per producer, 0 = unlimited (until Duration)
	ProducerStartDelay time.Duration
	ConsumerStartDelay time.Duration
	Predeclared        bool // queues exist (bindings done by the caller)
	Report             time.Duration
	JSON               bool
	Null               bool // no network: measure the generator's own ceiling
	// Raw publishes with warren-perf's own frame writer (raw.go) instead
	// of amqp091-go, Batch publishes per socket write.
	Raw   bool
	Batch int
	// EveryQueue: every published message is routed to every one of the
	// Queues queues (a fanout, or a topic key all of them bind); the loss
	// check then expects each message once in each queue.
	EveryQueue bool
}

func (c *Config) defaults() {
	if c.Queues <= 0 {
		c.Queues = 1
	}
	if c.QueuePattern == "" {
		c.QueuePattern = "perf-test-%d"
	}
	if c.Size < 16 {
		c.Size = 16
	}
	if c.Report <= 0 {
		c.Report = time.Second
	}
	if c.Duration <= 0 && c.MessageCount <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.ExchangeType == "" {
		c.ExchangeType = "direct"
	}
	if c.Batch <= 0 {
		c.Batch = 64
	}
}

// Result is a run's summary. The rates divide by the window in which
// messages were sent (from the first producer's start to the last
// publish) or received (from the same start to the last delivery), not by
// Elapsed, which also holds connecting, waiting for confirms, draining
// and closing.
type Result struct {
	Sent, Confirmed, Nacked, Returned, Received          uint64
	SendRate, ReceiveRate                                float64 // msg/s over SendWindow / ReceiveWindow
	SendWindow, ReceiveWindow                            time.Duration
	LatencyP50, LatencyP95, LatencyP99, LatencyP999, Max time.Duration
	// Checked: the run had consumers, so Lost and Duplicates mean
	// something. Lost counts messages that must have arrived (confirmed,
	// or sent when there are no confirms) and did not, per queue when
	// the run routes every message to every queue.
	Checked          bool
	Lost, Duplicates uint64
	Missing          []string // where: up to 10 ranges of missing sequence numbers
	Elapsed          time.Duration
	// ClientCPU is this process's CPU time (user+system) over the run,
	// ClientCPUPerMessage that divided by messages sent plus received:
	// what the load generator itself costs.
	ClientCPU           time.Duration
	ClientCPUPerMessage time.Duration
	Errors              []string
}

// Verify returns an error when the run cannot be trusted: a confirmed
// (or, without confirms, sent) message missing, a duplicate, a nack, a
// client error, or consumers that received nothing.
func (r Result) Verify() error {
	var probs []string
	if r.Checked && r.Lost > 0 {
		probs = append(probs, fmt.Sprintf("%d messages lost (confirmed or sent, never delivered: %s)", r.Lost, strings.Join(r.Missing, ", ")))
	}
	if r.Checked && r.Duplicates > 0 {
		probs = append(probs, fmt.Sprintf("%d unexpected duplicates", r.Duplicates))
	}
	if r.Nacked > 0 {
		probs = append(probs, fmt.Sprintf("%d publishes nacked", r.Nacked))
	}
	if r.Checked && r.Sent > 0 && r.Received == 0 {
		probs = append(probs, "nothing delivered")
	}
	if len(r.Errors) > 0 {
		probs = append(probs, fmt.Sprintf("client errors: %s", strings.Join(r.Errors, "; ")))
	}
	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrCheckFailed, strings.Join(probs, ", "))
}

// ErrCheckFailed marks a run whose loss/duplicate check failed.
var ErrCheckFailed = errors.New("loss/duplicate check failed")

// Histogram counts latencies in log-linear buckets (16 per power of two:
// about 6% resolution), cheap enough for every message.
type Histogram struct {
	counts [64 * 16]uint64
	n      uint64
	max    int64
}

func bucket(v int64) int {
	if v < 16 {
		if v < 0 {
			v = 0
		}
		return int(v)
	}
	e := bits.Len64(uint64(v)) - 1
	sub := int((uint64(v) >> (e - 4)) & 15)
	return e*16 + sub
}

func bucketValue(b int) int64 {
	if b < 16 {
		return int64(b)
	}
	e, sub := b/16, b%16
	return int64(16|sub) << (e - 4)
}

// Record adds one value (nanoseconds).
func (h *Histogram) Record(v int64) {
	h.counts[bucket(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

// Merge adds o into h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Quantile returns the value at q (0..1).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	target := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= target {
			return time.Duration(bucketValue(i))
		}
	}
	return time.Duration(h.max)
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest value.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Tracker checks numbered messages: per producer a bitmap of sequence
// numbers sent (confirmed), and per queue and producer a bitmap of those
// received, so that a message routed to several queues is expected once
// in each.
type Tracker struct {
	mu       sync.Mutex
	sent     map[uint32]*bitset
	received map[uint64]*bitset // queue<<32 | producer
	dups     uint64
}

type bitset struct{ w []uint64 }

func (b *bitset) set(i uint32) bool {
	wi := int(i / 64)
	if wi >= len(b.w) {
		b.w = append(b.w, make([]uint64, wi-len(b.w)+1+len(b.w)/2)...)
	}
	m := uint64(1) << (i % 64)
	was := b.w[wi]&m != 0
	b.w[wi] |= m
	return was
}

func (b *bitset) has(i uint32) bool {
	wi := int(i / 64)
	return wi < len(b.w) && b.w[wi]&(1<<(i%64)) != 0
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{sent: map[uint32]*bitset{}, received: map[uint64]*bitset{}}
}

func get[K comparable](m map[K]*bitset, p K) *bitset {
	b := m[p]
	if b == nil {
		b = &bitset{}
		m[p] = b
	}
	return b
}

// Sent records that producer p's message seq must arrive.
func (t *Tracker) Sent(p, seq uint32) {
	t.mu.Lock()
	get(t.sent, p).set(seq)
	t.mu.Unlock()
}

// Received records an arrival (in queue 0); it reports a duplicate.
func (t *Tracker) Received(p, seq uint32) bool { return t.ReceivedIn(0, p, seq) }

// ReceivedIn records an arrival in queue q; it reports a duplicate (the
// same message twice in the same queue).
func (t *Tracker) ReceivedIn(q int, p, seq uint32) bool {
	t.mu.Lock()
	dup := get(t.received, uint64(q)<<32|uint64(p)).set(seq)
	if dup {
		t.dups++
	}
	t.mu.Unlock()
	return dup
}

// Check returns how many sent messages never arrived (in queue 0), and
// duplicates.
func (t *Tracker) Check() (lost, dups uint64) { return t.CheckQueues(1) }

// CheckQueues returns, for messages that must arrive in each of queues
// 0..queues-1, how many of those arrivals are missing, and duplicates.
func (t *Tracker) CheckQueues(queues int) (lost, dups uint64) {
	lost, dups, _ = t.check(queues)
	return lost, dups
}

// MissingRanges describes, per queue and producer, the missing sequence
// numbers as at most max ranges ("queue 2 producer 0: 1000-1172"): where
// in a run the messages went missing.
func (t *Tracker) MissingRanges(queues, max int) []string {
	_, _, r := t.check(queues)
	if len(r) > max {
		r = append(r[:max], fmt.Sprintf("and %d more ranges", len(r)-max))
	}
	return r
}

func (t *Tracker) check(queues int) (lost, dups uint64, ranges []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	type run struct{ from, to int }
	for q := 0; q < queues; q++ {
		for p, s := range t.sent {
			r := t.received[uint64(q)<<32|uint64(p)]
			var cur *run
			flush := func() {
				if cur != nil && len(ranges) < 100 {
					ranges = append(ranges, fmt.Sprintf("queue %d producer %d: %d-%d", q, p, cur.from, cur.to))
				}
				cur = nil
			}
			for wi, w := range s.w {
				for w != 0 {
					b := bits.TrailingZeros64(w)
					w &^= 1 << b
					seq := wi*64 + b
					if r == nil || !r.has(uint32(seq)) {
						lost++
						if cur != nil && cur.to == seq-1 {
							cur.to = seq
						} else {
							flush()
							cur = &run{seq, seq}
						}
					}
				}
			}
			flush()
		}
	}
	return lost, t.dups, ranges
}

// Encode writes producer, seq and the send time into the first 16 bytes.
func Encode(body []byte, p, seq uint32, now time.Time) {
	binary.BigEndian.PutUint32(body, p)
	binary.BigEndian.PutUint32(body[4:], seq)
	binary.BigEndian.PutUint64(body[8:], uint64(now.UnixNano()))
}

// Decode reads what Encode wrote.
func Decode(body []byte) (p, seq uint32, sent time.Time, ok bool) {
	if len(body) < 16 {
		return 0, 0, time.Time{}, false
	}
	return binary.BigEndian.Uint32(body), binary.BigEndian.Uint32(body[4:]), time.Unix(0, int64(binary.BigEndian.Uint64(body[8:]))), true
}

type counters struct {
	sent, confirmed, nacked, returned, received atomic.Uint64
}

type run struct {
	cfg Config
	c   counters
	// the rate windows: producers start at sendStart; lastSent and
	// lastRecv hold the UnixNano of the last publish and delivery
	sendStart          time.Time
	lastSent, lastRecv atomic.Int64
	tracker            *Tracker
	hmu                sync.Mutex
	hist               Histogram // whole run
	tick               Histogram // since the last report
	errMu              sync.Mutex
	errs               []string
}

func (r *run) err(format string, a ...any) {
	r.errMu.Lock()
	if len(r.errs) < 20 {
		r.errs = append(r.errs, fmt.Sprintf(format, a...))
	}
	r.errMu.Unlock()
}

// lastSend notes a publish (or a batch of them) at t.
func (r *run) lastSend(t time.Time) {
	n := t.UnixNano()
	for {
		old := r.lastSent.Load()
		if n <= old || r.lastSent.CompareAndSwap(old, n) {
			return
		}
	}
}

func (r *run) queueName(i int) string { return fmt.Sprintf(r.cfg.QueuePattern, i) }

func (r *run) uri(i int) string { return r.cfg.URIs[i%len(r.cfg.URIs)] }

// producerURI and consumerURI spread producers and consumers over their
// own lists when given (a cluster: publish on one node, consume on another).
func (r *run) producerURI(i int) string {
	if l := r.cfg.ProducerURIs; len(l) > 0 {
		return l[i%len(l)]
	}
	return r.uri(i)
}

func (r *run) consumerURI(i int) string {
	if l := r.cfg.ConsumerURIs; len(l) > 0 {
		return l[i%len(l)]
	}
	return r.uri(i)
}

// Run executes a load test, writing a line per report interval to out.
func Run(ctx context.Context, cfg Config, out io.Writer) (Result, error) {
	cfg.defaults()
	if len(cfg.URIs) == 0 && !cfg.Null {
		return Result{}, errors.New("no --uri given")
	}
	r := &run{cfg: cfg, tracker: NewTracker()}
	if cfg.Null {
		return r.null(ctx, out)
	}
	if err := r.setup(); err != nil {
		return Result{}, err
	}
	cpu0 := processCPU()
	start := time.Now()
	var consumersWG, producersWG sync.WaitGroup
	consCtx, stopConsumers := context.WithCancel(context.Background())
	defer stopConsumers()
	ready := make(chan struct{}, cfg.Consumers)
	for i := 0; i < cfg.Consumers; i++ {
		consumersWG.Add(1)
		go func(i int) {
			defer consumersWG.Done()
			r.consume(consCtx, i, ready)
		}(i)
	}
	for i := 0; i < cfg.Consumers; i++ {
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			r.err("consumer %d not ready within 10s", i)
		}
	}
	// the run's Duration counts from here: producers start
	r.sendStart = time.Now()
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	for i := 0; i < cfg.Producers; i++ {
		producersWG.Add(1)
		go func(i int) {
			defer producersWG.Done()
			if cfg.Raw {
				r.produceRaw(ctx, i)
			} else {
				r.produce(ctx, i)
			}
		}(i)
	}
	done := make(chan struct{})
	go func() { producersWG.Wait(); close(done) }()
	r.report(ctx, done, r.sendStart, out)
	// let consumers drain what is in flight, while deliveries keep coming
	// (5 s without one ends the wait)
	if cfg.Consumers > 0 {
		last, lastN := time.Now(), r.c.received.Load()
		for {
			want := r.c.sent.Load()
			if cfg.ConfirmWindow > 0 {
				want = r.c.confirmed.Load()
			}
			if cfg.EveryQueue {
				want *= uint64(cfg.Queues)
			}
			n := r.c.received.Load()
			if n >= want {
				break
			}
			if n != lastN {
				last, lastN = time.Now(), n
			} else if time.Since(last) > 5*time.Second {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stopConsumers()
	consumersWG.Wait()
	el := time.Since(start)
	res := r.result(el)
	res.ClientCPU = processCPU() - cpu0
	if n := res.Sent + res.Received; n > 0 {
		res.ClientCPUPerMessage = res.ClientCPU / time.Duration(n)
	}
	if cfg.JSON {
		b, _ := json.Marshal(res)
		fmt.Fprintln(out, string(b))
	} else {
		fmt.Fprintf(out, "summary: sent %d confirmed %d nacked %d returned %d received %d in %.1fs (sending %.1fs, receiving %.1fs) | send %.0f msg/s, receive %.0f msg/s | latency p50 %v p95 %v p99 %v p99.9 %v max %v | lost %d duplicates %d | client CPU %.2fs, %v per message sent or received\n",
			res.Sent, res.Confirmed, res.Nacked, res.Returned, res.Received, el.Seconds(), res.SendWindow.Seconds(), res.ReceiveWindow.Seconds(), res.SendRate, res.ReceiveRate,
			res.LatencyP50, res.LatencyP95, res.LatencyP99, res.LatencyP999, res.Max, res.Lost, res.Duplicates, res.ClientCPU.Seconds(), res.ClientCPUPerMessage)
	}
	return res, nil
}

// rate is n over the window from start to the UnixNano end (0 when
// nothing happened in it).
func rate(n uint64, start time.Time, end int64) (float64, time.Duration) {
	if n == 0 || end == 0 {
		return 0, 0
	}
	w := time.Unix(0, end).Sub(start)
	if w <= 0 {
		return 0, 0
	}
	return float64(n) / w.Seconds(), w
}

func (r *run) result(el time.Duration) Result {
	r.hmu.Lock()
	defer r.hmu.Unlock()
	lost, dups := uint64(0), uint64(0)
	var missing []string
	if r.cfg.Consumers > 0 {
		q := 1
		if r.cfg.EveryQueue {
			q = r.cfg.Queues
		}
		lost, dups = r.tracker.CheckQueues(q)
		if lost > 0 {
			missing = r.tracker.MissingRanges(q, 10)
		}
	}
	sent, received := r.c.sent.Load(), r.c.received.Load()
	sendRate, sendWin := rate(sent, r.sendStart, r.lastSent.Load())
	recvRate, recvWin := rate(received, r.sendStart, r.lastRecv.Load())
	r.errMu.Lock()
	errs := append([]string(nil), r.errs...)
	r.errMu.Unlock()
	return Result{
		Sent: sent, Confirmed: r.c.confirmed.Load(), Nacked: r.c.nacked.Load(), Returned: r.c.returned.Load(),
		Received: received, SendRate: sendRate, ReceiveRate: recvRate, SendWindow: sendWin, ReceiveWindow: recvWin,
		LatencyP50: r.hist.Quantile(0.5), LatencyP95: r.hist.Quantile(0.95), LatencyP99: r.hist.Quantile(0.99), LatencyP999: r.hist.Quantile(0.999), Max: r.hist.Max(),
		Checked: r.cfg.Consumers > 0, Lost: lost, Duplicates: dups, Missing: missing, Elapsed: el, Errors: errs,
	}
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r *run) report(ctx context.Context, done <-chan struct{}, start time.Time, out io.Writer) {
	t := time.NewTicker(r.cfg.Report)
	defer t.Stop()
	var last [5]uint64
	lastT := start
	for {
		select {
		case <-ctx.Done():
			<-done
			return
		case <-done:
			return
		case now := <-t.C:
			cur := [5]uint64{r.c.sent.Load(), r.c.confirmed.Load(), r.c.nacked.Load(), r.c.returned.Load(), r.c.received.Load()}
			d := now.Sub(lastT).Seconds()
			r.hmu.Lock()
			tick := r.tick
			r.tick = Histogram{}
			r.hmu.Unlock()
			if !r.cfg.JSON {
				fmt.Fprintf(out, "time %.0fs, sent: %.0f msg/s, confirmed: %.0f msg/s, nacked: %.0f msg/s, returned: %.0f msg/s, received: %.0f msg/s, latency p50/p95/p99/max: %v/%v/%v/%v\n",
					now.Sub(start).Seconds(), float64(cur[0]-last[0])/d, float64(cur[1]-last[1])/d, float64(cur[2]-last[2])/d, float64(cur[3]-last[3])/d, float64(cur[4]-last[4])/d,
					tick.Quantile(0.5), tick.Quantile(0.95), tick.Quantile(0.99), tick.Max())
			}
			last, lastT = cur, now
		}
	}
}

// setup declares the exchange and queues and binds them.
func (r *run) setup() error {
	if r.cfg.Predeclared || r.cfg.Exclusive {
		return nil
	}
	c, err := amqp.Dial(r.uri(0))
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", r.uri(0), err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	if r.cfg.Exchange != "" && r.cfg.Exchange != "amq.direct" {
		if err := ch.ExchangeDeclare(r.cfg.Exchange, r.cfg.ExchangeType, r.cfg.Durable, false, false, false, nil); err != nil {
			return fmt.Errorf("declaring exchange %s: %w", r.cfg.Exchange, err)
		}
	}
	for i := 0; i < r.cfg.Queues; i++ {
		q := r.queueName(i)
		if _, err := ch.QueueDeclare(q, r.cfg.Durable, r.cfg.AutoDelete, false, false, r.cfg.QueueArgs); err != nil {
			return fmt.Errorf("declaring queue %s: %w", q, err)
		}
		if _, err := ch.QueuePurge(q, false); err != nil {
			return err
		}
		if r.cfg.Exchange != "" {
			key := r.cfg.RoutingKey
			if key == "" {
				key = q
			}
			if err := ch.QueueBind(q, key, r.cfg.Exchange, false, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *run) produce(ctx context.Context, id int) {
	time.Sleep(r.cfg.ProducerStartDelay)
	c, err := amqp.Dial(r.producerURI(id))
	if err != nil {
		r.err("producer %d: %v", id, err)
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		r.err("producer %d: %v", id, err)
		return
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 128))
	go func() {
		for range returns {
			r.c.returned.Add(1)
		}
	}()
	var window chan struct{}
	if r.cfg.ConfirmWindow > 0 {
		if err := ch.Confirm(false); err != nil {
			r.err("producer %d: confirm.select: %v", id, err)
			return
		}
		window = make(chan struct{}, r.cfg.ConfirmWindow)
	}
	// confirmations arrive in publish order per channel
	var pending []uint32
	var pmu sync.Mutex
	if window != nil {
		confirms := ch.NotifyPublish(make(chan amqp.Confirmation, r.cfg.ConfirmWindow+16))
		go func() {
			for cf := range confirms {
				pmu.Lock()
				var seq uint32
				if len(pending) > 0 {
					seq, pending = pending[0], pending[1:]
				}
				pmu.Unlock()
				if cf.Ack {
					r.c.confirmed.Add(1)
					r.tracker.Sent(uint32(id), seq)
				} else {
					r.c.nacked.Add(1)
				}
				<-window
			}
		}()
	}
	body := make([]byte, r.cfg.Size)
	exchange, key := r.cfg.Exchange, r.cfg.RoutingKey
	mode := amqp.Transient
	if r.cfg.Persistent {
		mode = amqp.Persistent
	}
	pace := newPacer(r.cfg.Rate)
	for seq := uint32(0); ; seq++ {
		if r.cfg.MessageCount > 0 && int(seq) >= r.cfg.MessageCount {
			break
		}
		if ctx.Err() != nil {
			break
		}
		pace.wait()
		if window != nil {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				// the run is over: what is outstanding is still awaited
				// below, so that it is confirmed (and checked) or reported
			}
			if ctx.Err() != nil {
				break
			}
		}
		k := key
		if exchange == "" || k == "" {
			k = r.queueName(id % r.cfg.Queues)
		}
		now := time.Now()
		Encode(body, uint32(id), seq, now)
		if window != nil {
			pmu.Lock()
			pending = append(pending, seq)
			pmu.Unlock()
		}
		if err := ch.PublishWithContext(context.Background(), exchange, k, false, false, amqp.Publishing{DeliveryMode: mode, Body: body}); err != nil {
			r.err("producer %d: publish: %v", id, err)
			return
		}
		r.c.sent.Add(1)
		r.lastSend(now)
		if window == nil {
			r.tracker.Sent(uint32(id), seq)
		}
	}
	if window != nil {
		r.awaitConfirms(window, nil)
	}
}

func (r *run) consume(ctx context.Context, id int, ready chan<- struct{}) {
	time.Sleep(r.cfg.ConsumerStartDelay)
	c, err := amqp.Dial(r.consumerURI(id))
	if err != nil {
		r.err("consumer %d: %v", id, err)
		ready <- struct{}{}
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		r.err("consumer %d: %v", id, err)
		ready <- struct{}{}
		return
	}
	if r.cfg.Prefetch > 0 {
		ch.Qos(r.cfg.Prefetch, 0, false)
	}
	q := r.queueName(id % r.cfg.Queues)
	queue := 0 // in the tracker: per queue only when every queue gets every message
	if r.cfg.EveryQueue {
		queue = id % r.cfg.Queues
	}
	if r.cfg.Exclusive {
		if _, err := ch.QueueDeclare(q, false, true, true, false, r.cfg.QueueArgs); err != nil {
			r.err("consumer %d: %v", id, err)
		}
	}
	deliveries, err := ch.Consume(q, "", r.cfg.AutoAck, false, false, false, nil)
	ready <- struct{}{}
	if err != nil {
		r.err("consumer %d: consume %s: %v", id, q, err)
		return
	}
	var local Histogram
	flush := func() {
		r.hmu.Lock()
		r.hist.Merge(&local)
		r.tick.Merge(&local)
		r.hmu.Unlock()
		local = Histogram{}
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	unacked := 0
	every := max(r.cfg.MultiAckEvery, 1)
	for {
		select {
		case <-ctx.Done():
			flush()
			return
		case <-t.C:
			flush()
		case d, ok := <-deliveries:
			if !ok {
				flush()
				return
			}
			now := time.Now()
			if p, seq, sent, ok := Decode(d.Body); ok {
				local.Record(now.Sub(sent).Nanoseconds())
				r.tracker.ReceivedIn(queue, p, seq)
			}
			r.c.received.Add(1)
			r.lastRecv.Store(now.UnixNano())
			if !r.cfg.AutoAck {
				unacked++
				if unacked >= every {
					d.Ack(every > 1)
					unacked = 0
				}
			}
		}
	}
}

// null measures the generator's own ceiling: encode, track, decode and
// record, with no broker.
func (r *run) null(ctx context.Context, out io.Writer) (Result, error) {
	start := time.Now()
	body := make([]byte, r.cfg.Size)
	var h Histogram
	n := uint64(0)
	for time.Since(start) < r.cfg.Duration && ctx.Err() == nil {
		for i := 0; i < 1000; i++ {
			Encode(body, 0, uint32(n), time.Now())
			r.tracker.Sent(0, uint32(n))
			p, seq, sent, _ := Decode(body)
			h.Record(time.Since(sent).Nanoseconds())
			r.tracker.Received(p, seq)
			n++
		}
	}
	el := time.Since(start)
	r.c.sent.Store(n)
	r.c.received.Store(n)
	r.sendStart = start
	r.lastSent.Store(start.Add(el).UnixNano())
	r.lastRecv.Store(start.Add(el).UnixNano())
	r.hist = h
	res := r.result(el)
	fmt.Fprintf(out, "null sink: %.0f msg/s through the generator's per-message work (encode, track, decode, record)\n", float64(n)/el.Seconds())
	return res, nil
}

// Median returns the median of xs.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pacer spaces a publisher's sends to rate per second (0: no pacing),
// catching up after a late send rather than drifting.
type pacer struct {
	interval time.Duration
	next     time.Time
}

func newPacer(rate int) *pacer {
	p := &pacer{next: time.Now()}
	if rate > 0 {
		p.interval = time.Second / time.Duration(rate)
	}
	return p
}

// wait sleeps until the next send is due.
func (p *pacer) wait() {
	if p.interval <= 0 {
		return
	}
	p.next = p.next.Add(p.interval)
	if d := time.Until(p.next); d > 0 {
		time.Sleep(d)
	}
}
