package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The durability scenarios: a backlog of persistent messages published
// into a durable queue with no consumer and then drained (rates and the
// broker's peak RSS), and a restart with many messages across many queues.

type backlogResult struct {
	publish, drain float64
	peak           int64
}

// backlogs holds scenario 12's figures for 13 and 14 (same round).
var backlogs = map[string]backlogResult{}

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
// queue with confirms (window outstanding) and waits for every confirm.
func publishPersistent(url, queue string, n, size, window int, progress func(done int)) error {
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
// multiple acks every 100).
func drain(url, queue string, n int, progress func(done int)) error {
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

func declareDurable(url string, names ...string) error {
	c, ch, err := openChannel(url)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, q := range names {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueuePurge(q, false); err != nil {
			return err
		}
	}
	return nil
}

func backlog(b *broker, n int) (backlogResult, error) {
	var r backlogResult
	if err := declareDurable(b.url, "b12"); err != nil {
		return r, err
	}
	stop := make(chan struct{})
	peak := sampleRSS(b.pid, stop)
	defer close(stop)
	start := time.Now()
	err := publishPersistent(b.url, "b12", n, 1024, 1000, func(done int) {
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
	if err := drain(b.url, "b12", n, func(done int) {
		fmt.Fprintf(os.Stderr, "  drained %d (%.0f msg/s, RSS %d MiB)\n", done, float64(done)/time.Since(start).Seconds(), rss(b.pid())>>20)
	}); err != nil {
		return r, fmt.Errorf("draining: %w", err)
	}
	r.drain = float64(n) / time.Since(start).Seconds()
	r.peak = peak.Load()
	backlogs[b.name] = r
	return r, nil
}

// restartTime fills queues with n messages in all, stops the broker
// cleanly, starts it and returns the seconds from the start until every
// queue is back with its messages.
func restartTime(b *broker, n, queues int) (float64, error) {
	names := make([]string, queues)
	for i := range names {
		names[i] = fmt.Sprintf("b15-%d", i)
	}
	if err := declareDurable(b.url, names...); err != nil {
		return 0, err
	}
	per := n / queues
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < queues; i += 4 {
				if err := publishPersistent(b.url, names[i], per, 1024, 1000, nil); err != nil {
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
	t := time.Now()
	b.stop()
	fmt.Fprintf(os.Stderr, "  stopped in %.1f s\n", time.Since(t).Seconds())
	start := time.Now()
	if err := b.start(); err != nil {
		return 0, err
	}
	stopped := time.Now()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		ok, err := allBack(b.url, names, per)
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("queues not back after 10 minutes (last error %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	el := time.Since(start)
	fmt.Fprintf(os.Stderr, "  back after %.1f s (the port opened after %.1f s)\n", el.Seconds(), stopped.Sub(start).Seconds())
	// clean up for the next round
	if c, err := amqp.Dial(b.url); err == nil {
		if ch, err := c.Channel(); err == nil {
			for _, q := range names {
				ch.QueueDelete(q, false, false, true)
			}
		}
		c.Close()
	}
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
