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

// The durability scenarios: a backlog of persistent messages published
// into a durable queue with no consumer and then drained (rates and the
// broker's peak RSS), and a restart with many messages across many queues.
// Messages are numbered (perf.Encode: publisher = queue index, sequence
// number) and every confirmed one must come back exactly once.

type backlogResult struct {
	publish, drain float64
	peak           int64
}

// sampleRSS tracks the peak RSS of pid until stop is closed.
func sampleRSS(pid func() int, stop <-chan struct{}) *atomic.Int64 {
	var peak atomic.Int64
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if r := rss(pid()); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return &peak
}

// publishPersistent publishes n persistent messages of size bytes to
// queue with confirms (window outstanding) and waits for every confirm;
// message seq carries (qi, seq) and is noted in t once confirmed.
func publishPersistent(url, queue string, qi uint32, t *perf.Tracker, n, size, window int, progress func(done int)) error {
	c, ch, err := openChannel(url)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window+1))
	body := make([]byte, size)
	outstanding, confirmed := 0, 0
	wait := func() error {
		cf, ok := <-confirms
		if !ok {
			return fmt.Errorf("channel closed after %d confirms", confirmed)
		}
		if !cf.Ack {
			return fmt.Errorf("message %d nacked", cf.DeliveryTag)
		}
		t.Sent(qi, uint32(cf.DeliveryTag-1)) // tags count publishes from 1
		outstanding--
		confirmed++
		if progress != nil && confirmed%100000 == 0 {
			progress(confirmed)
		}
		return nil
	}
	for i := 0; i < n; i++ {
		for outstanding >= window {
			if err := wait(); err != nil {
				return err
			}
		}
		perf.Encode(body, qi, uint32(i), time.Now())
		if err := ch.Publish("", queue, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}); err != nil {
			return err
		}
		outstanding++
	}
	for outstanding > 0 {
		if err := wait(); err != nil {
			return err
		}
	}
	return nil
}

// drain consumes n messages from queue with manual acks (prefetch 1000,
// multiple acks every 100), noting each in t.
func drain(url, queue string, t *perf.Tracker, n int, progress func(done int)) error {
	c, ch, err := openChannel(url)
	if err != nil {
		return err
	}
	defer c.Close()
	ch.Qos(1000, 0, false)
	ds, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	got := 0
	idle := time.NewTimer(time.Minute)
	for got < n {
		select {
		case d, ok := <-ds:
			if !ok {
				return fmt.Errorf("consumer closed after %d messages", got)
			}
			got++
			if p, seq, _, ok := perf.Decode(d.Body); ok {
				t.Received(p, seq)
			} else {
				return fmt.Errorf("message %d of %d in %s is not numbered (%d bytes)", got, n, queue, len(d.Body))
			}
			if got%100 == 0 || got == n {
				d.Ack(true)
			}
			if progress != nil && got%500000 == 0 {
				progress(got)
			}
			idle.Reset(time.Minute)
		case <-idle.C:
			return fmt.Errorf("no message for a minute after %d of %d", got, n)
		}
	}
	return nil
}

func declareDurable(url string, args amqp.Table, names ...string) error {
	c, ch, err := openChannel(url)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, q := range names {
		if _, err := ch.QueueDeclare(q, true, false, false, false, args); err != nil {
			return err
		}
		if _, err := ch.QueuePurge(q, false); err != nil {
			return err
		}
	}
	return nil
}

// queueKind is a RabbitMQ classic queue flavour for the backlog
// scenarios: RabbitMQ 3.10's default (classic queue version 1, not lazy),
// lazy mode, and classic queue version 2.
type queueKind struct {
	name, suffix string
	args         amqp.Table
}

var rabbitKinds = []queueKind{
	{"classic v1 (default)", "", nil},
	{"x-queue-mode: lazy", "lazy", amqp.Table{"x-queue-mode": "lazy"}},
	{"x-queue-version: 2", "v2", amqp.Table{"x-queue-version": int32(2)}},
}

// backlogScenario runs the backlog on Warren's queue, and on RabbitMQ in
// each of its three classic queue kinds (rows 12-14, with the lazy and v2
// rows compared with Warren's same figure).
func backlogScenario(b *broker, n int) ([]value, error) {
	kinds := rabbitKinds[:1]
	if b.kind == "RabbitMQ" {
		kinds = rabbitKinds
	}
	var out []value
	for _, k := range kinds {
		if len(kinds) > 1 {
			fmt.Fprintf(os.Stderr, "  queue kind %s\n", k.name)
		}
		r, err := backlog(b, n, "b12"+map[bool]string{true: "-" + k.suffix, false: ""}[k.suffix != ""], k.args)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.name, err)
		}
		for _, v := range []value{
			{key: "12", name: fmt.Sprintf("backlog of %d persistent 1KiB: publish", n), metric: "msg/s", higher: true, v: r.publish},
			{key: "13", name: fmt.Sprintf("backlog of %d persistent 1KiB: drain", n), metric: "msg/s", higher: true, v: r.drain},
			{key: "14", name: fmt.Sprintf("backlog of %d persistent 1KiB: peak RSS", n), metric: "MiB", v: float64(r.peak) / (1 << 20)},
		} {
			if k.suffix != "" {
				v.base = v.key
				v.key += " " + k.suffix
				v.name += ", RabbitMQ queue " + k.name
			}
			out = append(out, v)
		}
	}
	return out, nil
}

func backlog(b *broker, n int, queue string, args amqp.Table) (backlogResult, error) {
	var r backlogResult
	if err := declareDurable(b.url, args, queue); err != nil {
		return r, err
	}
	stop := make(chan struct{})
	peak := sampleRSS(b.pid, stop)
	defer close(stop)
	t := perf.NewTracker()
	start := time.Now()
	err := publishPersistent(b.url, queue, 0, t, n, 1024, 1000, func(done int) {
		if done%1000000 == 0 {
			fmt.Fprintf(os.Stderr, "  published %d (%.0f msg/s, RSS %d MiB)\n", done, float64(done)/time.Since(start).Seconds(), rss(b.pid())>>20)
		}
	})
	if err != nil {
		return r, fmt.Errorf("publishing: %w", err)
	}
	r.publish = float64(n) / time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "  publish %.0f msg/s, RSS now %d MiB, peak %d MiB\n", r.publish, rss(b.pid())>>20, peak.Load()>>20)
	start = time.Now()
	if err := drain(b.url, queue, t, n, func(done int) {
		fmt.Fprintf(os.Stderr, "  drained %d (%.0f msg/s, RSS %d MiB)\n", done, float64(done)/time.Since(start).Seconds(), rss(b.pid())>>20)
	}); err != nil {
		return r, fmt.Errorf("draining: %w", err)
	}
	r.drain = float64(n) / time.Since(start).Seconds()
	r.peak = peak.Load()
	if err := checkTracker(t, 1); err != nil {
		return r, err
	}
	c, ch, err := openChannel(b.url)
	if err != nil {
		return r, err
	}
	defer c.Close()
	left, err := ch.QueueDelete(queue, false, false, false)
	if err != nil {
		return r, err
	}
	if left > 0 {
		return r, fmt.Errorf("%w: the queue still held %d messages after the %d published were drained", perf.ErrCheckFailed, left, n)
	}
	fmt.Fprintf(os.Stderr, "  checked: all %d confirmed messages drained, each once, none left\n", n)
	return r, nil
}

// checkTracker fails unless t saw every confirmed message arrive once.
func checkTracker(t *perf.Tracker, queues int) error {
	lost, dups := t.CheckQueues(queues)
	if lost > 0 || dups > 0 {
		return fmt.Errorf("%w: %d confirmed messages lost, %d duplicates", perf.ErrCheckFailed, lost, dups)
	}
	return nil
}

// restartTime fills queues with n messages in all, stops the broker
// cleanly, starts it and returns the seconds from the start until every
// queue is back with its messages.
func restartTime(b *broker, n, queues int) (float64, error) {
	return restartTimeOn(restartTarget{urls: []string{b.url}, stop: b.stop, start: b.start, prefix: "b15"}, n, queues)
}

// restartTarget is what restartTimeOn restarts: one broker, or every
// node of a cluster.
type restartTarget struct {
	// urls: queue i is declared, filled, checked and drained through
	// urls[i % len(urls)] (in a cluster: it lives on that node)
	urls   []string
	stop   func()
	start  func() error // returns once every AMQP port accepts connections
	prefix string       // of the queue names
}

// restartTimeOn is restartTime on t: from the start until every queue is
// back with its messages (all checked through their own node), then every
// confirmed message is drained and checked by id, and nothing is left.
func restartTimeOn(t restartTarget, n, queues int) (float64, error) {
	names := make([]string, queues)
	byURL := map[string][]string{}
	url := func(i int) string { return t.urls[i%len(t.urls)] }
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", t.prefix, i)
		byURL[url(i)] = append(byURL[url(i)], names[i])
	}
	for u, ns := range byURL {
		if err := declareDurable(u, nil, ns...); err != nil {
			return 0, err
		}
	}
	tr := perf.NewTracker()
	per := n / queues
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < queues; i += 4 {
				if err := publishPersistent(url(i), names[i], uint32(i), tr, per, 1024, 1000, nil); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	fmt.Fprintf(os.Stderr, "  %d messages in %d queues; restarting\n", per*queues, queues)
	t0 := time.Now()
	t.stop()
	fmt.Fprintf(os.Stderr, "  stopped in %.1f s\n", time.Since(t0).Seconds())
	start := time.Now()
	if err := t.start(); err != nil {
		return 0, err
	}
	opened := time.Now()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var err error
		ok := true
		for u, ns := range byURL {
			var back bool
			if back, err = allBack(u, ns, per); err != nil || !back {
				ok = false
				break
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("queues not back after 10 minutes (last error %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	el := time.Since(start)
	fmt.Fprintf(os.Stderr, "  back after %.1f s (the AMQP ports opened after %.1f s)\n", el.Seconds(), opened.Sub(start).Seconds())
	// every confirmed message is back, by id, once
	errs = make(chan error, queues)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < queues; i += 4 {
				if err := drain(url(i), names[i], tr, per, nil); err != nil {
					errs <- fmt.Errorf("draining %s after the restart: %w", names[i], err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	if err := checkTracker(tr, 1); err != nil {
		return 0, err
	}
	// clean up for the next round; a queue still holding messages had
	// more than were published
	left := 0
	for u, ns := range byURL {
		c, ch, err := openChannel(u)
		if err != nil {
			return 0, err
		}
		for _, q := range ns {
			n, err := ch.QueueDelete(q, false, false, false)
			if err != nil {
				c.Close()
				return 0, err
			}
			left += n
		}
		c.Close()
	}
	if left > 0 {
		return 0, fmt.Errorf("%w: %d messages left in the queues after all %d published were drained", perf.ErrCheckFailed, left, per*queues)
	}
	fmt.Fprintf(os.Stderr, "  checked: all %d confirmed messages came back, each once, none left\n", per*queues)
	return el.Seconds(), nil
}

func allBack(url string, names []string, per int) (bool, error) {
	c, ch, err := openChannel(url)
	if err != nil {
		return false, err
	}
	defer c.Close()
	for _, q := range names {
		st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			return false, err
		}
		if st.Messages != per {
			return false, nil
		}
	}
	return true, nil
}

// openChannel dials url and opens a channel.
func openChannel(url string) (*amqp.Connection, *amqp.Channel, error) {
	c, err := amqp.Dial(url)
	if err != nil {
		return nil, nil, err
	}
	ch, err := c.Channel()
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, ch, nil
}
