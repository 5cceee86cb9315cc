package halab

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// WorkloadOptions shape the client workload.
type WorkloadOptions struct {
	URL        string        // amqp://prim:123456@VIP:5672/%2Fedu (client-connection.xml)
	Queue      string        // durable queue every client declares
	Publishers int           // each publishes numbered persistent messages with confirms
	Consumers  int           // each consumes with manual acks
	Interval   time.Duration // pause between two publishes of one publisher
	Backoff    time.Duration // pause after a failed connection
	Drain      time.Duration // after stop: at most this long waiting for the rest
}

// Report is what the checker found.
type Report struct {
	Confirmed      int           `json:"confirmed"`
	Delivered      int           `json:"delivered"`  // distinct numbers delivered
	Lost           int           `json:"lost"`       // confirmed and never delivered
	Duplicated     int           `json:"duplicated"` // deliveries beyond the first of a number
	Unconfirmed    int           `json:"unconfirmed"`
	FailedConnects int           `json:"failed_connects"`
	PublishGap     time.Duration `json:"publish_gap"`  // longest time without a confirmed publish
	DeliveryGap    time.Duration `json:"delivery_gap"` // longest time without a delivery
	LostSample     []uint64      `json:"lost_sample,omitempty"`
}

type recorder struct {
	mu        sync.Mutex
	confirmed map[uint64]bool
	delivered map[uint64]int
	sent      int
	failed    int
	pubTimes  []time.Time
	delTimes  []time.Time
}

func newRecorder() *recorder {
	return &recorder{confirmed: map[uint64]bool{}, delivered: map[uint64]int{}}
}

func (r *recorder) failedConnect() { r.mu.Lock(); r.failed++; r.mu.Unlock() }

// RunWorkload runs until stop is closed, then waits (bounded by Drain)
// for the confirmed messages to arrive and returns the checker's report.
func RunWorkload(o WorkloadOptions, stop <-chan struct{}, logw io.Writer) Report {
	r := newRecorder()
	start := time.Now()
	stopPub := make(chan struct{})
	stopCons := make(chan struct{})
	var wg, cwg sync.WaitGroup
	for p := 0; p < o.Publishers; p++ {
		wg.Add(1)
		go func() { defer wg.Done(); publisher(o, uint64(p), r, stopPub, logw) }()
	}
	for c := 0; c < o.Consumers; c++ {
		cwg.Add(1)
		go func() { defer cwg.Done(); consumer(o, r, stopCons, logw) }()
	}
	<-stop
	close(stopPub)
	wg.Wait()
	end := time.Now()
	// drain: until every confirmed number arrived, or nothing new for 5 s, or Drain
	deadline := time.Now().Add(o.Drain)
	last, lastChange := -1, time.Now()
	for time.Now().Before(deadline) {
		r.mu.Lock()
		missing := 0
		for n := range r.confirmed {
			if r.delivered[n] == 0 {
				missing++
			}
		}
		got := len(r.delivTimesLocked())
		r.mu.Unlock()
		if missing == 0 {
			break
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > 5*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stopCons)
	cwg.Wait()
	return r.report(start, end)
}

// report is the checker: what was confirmed against what was delivered,
// and the longest gaps within [start, end].
func (r *recorder) report(start, end time.Time) Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := Report{Confirmed: len(r.confirmed), FailedConnects: r.failed, Unconfirmed: r.sent - len(r.confirmed)}
	for _, c := range r.delivered {
		rep.Delivered++
		rep.Duplicated += c - 1
	}
	for n := range r.confirmed {
		if r.delivered[n] == 0 {
			rep.Lost++
			if len(rep.LostSample) < 10 {
				rep.LostSample = append(rep.LostSample, n)
			}
		}
	}
	sort.Slice(rep.LostSample, func(i, j int) bool { return rep.LostSample[i] < rep.LostSample[j] })
	rep.PublishGap = longestGap(r.pubTimes, start, end)
	rep.DeliveryGap = longestGap(r.delTimes, start, end)
	return rep
}

func (r *recorder) delivTimesLocked() []time.Time { return r.delTimes }

// longestGap is the longest interval in [start, end] with no event (events
// after end do not count: the window is the time the workload published).
func longestGap(ts []time.Time, start, end time.Time) time.Duration {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	prev, gap := start, time.Duration(0)
	for _, t := range ts {
		if t.After(end) {
			break
		}
		if d := t.Sub(prev); d > gap {
			gap = d
		}
		prev = t
	}
	if d := end.Sub(prev); d > gap {
		gap = d
	}
	return gap
}

func dial(o WorkloadOptions) (*amqp.Connection, error) {
	return amqp.DialConfig(o.URL, amqp.Config{
		Heartbeat: 2 * time.Second,
		Dial:      amqp.DefaultDial(2 * time.Second),
	})
}

func stopped(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func sleepOr(d time.Duration, stop <-chan struct{}) {
	select {
	case <-time.After(d):
	case <-stop:
	}
}

func publisher(o WorkloadOptions, id uint64, r *recorder, stop <-chan struct{}, logw io.Writer) {
	var seq uint64
	for !stopped(stop) {
		conn, err := dial(o)
		if err != nil {
			r.failedConnect()
			sleepOr(o.Backoff, stop)
			continue
		}
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		if err == nil {
			_, err = ch.QueueDeclare(o.Queue, true, false, false, false, nil)
		}
		if err != nil {
			r.failedConnect()
			conn.Close()
			sleepOr(o.Backoff, stop)
			continue
		}
		for !stopped(stop) {
			seq++
			n := id<<40 | seq
			body := make([]byte, 16)
			binary.BigEndian.PutUint64(body, n)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r.mu.Lock()
			r.sent++
			r.mu.Unlock()
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", o.Queue, false, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
			ok := false
			if err == nil {
				ok, err = dc.WaitContext(ctx)
			}
			cancel()
			if err != nil || !ok {
				fmt.Fprintf(logw, "publisher %d: message %d not confirmed (%v, ack=%v); reconnecting\n", id, seq, err, ok)
				break
			}
			now := time.Now()
			r.mu.Lock()
			r.confirmed[n] = true
			r.pubTimes = append(r.pubTimes, now)
			r.mu.Unlock()
			sleepOr(o.Interval, stop)
		}
		conn.Close()
	}
}

func consumer(o WorkloadOptions, r *recorder, stop <-chan struct{}, logw io.Writer) {
	for !stopped(stop) {
		conn, err := dial(o)
		if err != nil {
			r.failedConnect()
			sleepOr(o.Backoff, stop)
			continue
		}
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Qos(100, 0, false)
		}
		if err == nil {
			_, err = ch.QueueDeclare(o.Queue, true, false, false, false, nil)
		}
		var msgs <-chan amqp.Delivery
		if err == nil {
			msgs, err = ch.Consume(o.Queue, "", false, false, false, false, nil)
		}
		if err != nil {
			r.failedConnect()
			conn.Close()
			sleepOr(o.Backoff, stop)
			continue
		}
	loop:
		for {
			select {
			case <-stop:
				break loop
			case d, ok := <-msgs:
				if !ok {
					fmt.Fprintf(logw, "consumer: delivery channel closed; reconnecting\n")
					break loop
				}
				if len(d.Body) >= 8 {
					n := binary.BigEndian.Uint64(d.Body)
					now := time.Now()
					r.mu.Lock()
					r.delivered[n]++
					r.delTimes = append(r.delTimes, now)
					r.mu.Unlock()
				}
				if err := d.Ack(false); err != nil {
					fmt.Fprintf(logw, "consumer: ack failed (%v); reconnecting\n", err)
					break loop
				}
			}
		}
		conn.Close()
	}
}

// WorkloadMain is the client process (run inside the client host): options
// from the environment, runs until SIGTERM/SIGINT or HALAB_DURATION, then
// writes the report as JSON on stdout. Exit code 0.
func WorkloadMain() int {
	o := WorkloadOptions{
		URL: os.Getenv("HALAB_URL"), Queue: os.Getenv("HALAB_QUEUE"),
		Publishers: 2, Consumers: 2, Interval: 5 * time.Millisecond,
		Backoff: 200 * time.Millisecond, Drain: 20 * time.Second,
	}
	dur, _ := time.ParseDuration(os.Getenv("HALAB_DURATION"))
	if dur <= 0 || dur > 30*time.Minute {
		dur = 10 * time.Minute // bounded even when nobody stops it
	}
	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-sig:
		case <-time.After(dur):
		}
		close(stop)
	}()
	rep := RunWorkload(o, stop, os.Stderr)
	json.NewEncoder(os.Stdout).Encode(rep)
	return 0
}

var httpClient = &http.Client{Timeout: 3 * time.Second}

// HTTPGetMain fetches HALAB_HTTPGET (from inside a host) and prints the body.
func HTTPGetMain() int {
	resp, err := httpClient.Get(os.Getenv("HALAB_HTTPGET"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	io.Copy(os.Stdout, io.LimitReader(resp.Body, 1<<20))
	return 0
}
