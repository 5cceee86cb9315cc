package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/perf"
)

// manyConnections: n connections, each with one channel that declares
// its own queue, consumes from it (auto-ack) and publishes to it at rate
// msg/s. It reports the aggregate delivery rate and the broker's RSS with
// all of them open, and checks that every message published arrived once.
func manyConnections(b *broker, n, rate int) ([]value, error) {
	before := rss(b.pid())
	t := perf.NewTracker()
	var received, sent atomic.Uint64
	var lastRecv atomic.Int64
	type client struct {
		c  *amqp.Connection
		ch *amqp.Channel
		q  string
	}
	clients := make([]client, n)
	defer func() {
		for _, c := range clients {
			if c.c != nil {
				c.c.Close()
			}
		}
	}()
	tag := time.Now().UnixNano()
	for i := range clients {
		c, ch, err := openChannel(b.url)
		if err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		clients[i] = client{c: c, ch: ch, q: fmt.Sprintf("b18-%d-%d", tag, i)}
		if _, err := ch.QueueDeclare(clients[i].q, false, true, false, false, nil); err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		ds, err := ch.Consume(clients[i].q, "", true, false, false, false, nil)
		if err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		go func() {
			for d := range ds {
				if p, seq, _, ok := perf.Decode(d.Body); ok {
					t.Received(p, seq)
				}
				received.Add(1)
				lastRecv.Store(time.Now().UnixNano())
			}
		}()
	}
	fmt.Fprintf(os.Stderr, "  %d connections open, broker RSS %d MiB (+%d MiB)\n", n, rss(b.pid())>>20, (rss(b.pid())-before)>>20)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	deadline := start.Add(*duration)
	interval := time.Second / time.Duration(rate)
	var peak atomic.Int64
	stop := make(chan struct{})
	peakRSS := sampleRSS(b.pid, stop)
	for i := range clients {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := make([]byte, 16)
			// spread the connections' sends over the interval
			next := start.Add(interval * time.Duration(i) / time.Duration(n))
			for seq := uint32(0); ; seq++ {
				time.Sleep(time.Until(next))
				if time.Now().After(deadline) {
					return
				}
				next = next.Add(interval)
				perf.Encode(body, uint32(i), seq, time.Now())
				if err := clients[i].ch.Publish("", clients[i].q, false, false, amqp.Publishing{Body: body}); err != nil {
					errs <- fmt.Errorf("connection %d: publish: %w", i, err)
					return
				}
				t.Sent(uint32(i), seq)
				sent.Add(1)
			}
		}(i)
	}
	wg.Wait()
	sendEnd := time.Now()
	// deliveries in flight: wait while they keep coming
	last, lastN := time.Now(), received.Load()
	for received.Load() < sent.Load() {
		if n := received.Load(); n != lastN {
			last, lastN = time.Now(), n
		} else if time.Since(last) > 5*time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	peak.Store(peakRSS.Load())
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	lost, dups := t.CheckQueues(1)
	if lost > 0 || dups > 0 {
		return nil, fmt.Errorf("%w: %d of %d messages lost, %d duplicates", perf.ErrCheckFailed, lost, sent.Load(), dups)
	}
	end := time.Unix(0, lastRecv.Load())
	if end.Before(sendEnd) {
		end = sendEnd
	}
	agg := float64(received.Load()) / end.Sub(start).Seconds()
	fmt.Fprintf(os.Stderr, "  sent %d, received %d (checked: none lost, no duplicates), %.0f msg/s aggregate, peak RSS %d MiB\n", sent.Load(), received.Load(), agg, peak.Load()>>20)
	name := fmt.Sprintf("%d connections x 1 channel x 1 queue, %d msg/s each", n, rate)
	return []value{
		{key: "18", name: name + ": aggregate delivered", metric: "msg/s", higher: true, v: agg},
		{key: "18 RSS", name: name + ": broker peak RSS", metric: "MiB", v: float64(peak.Load()) / (1 << 20)},
	}, nil
}
