package perf_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/perf"
)

// node starts an in-process Warren node on a loopback port.
func node(t *testing.T) string {
	t.Helper()
	cfg := config.Default()
	cfg.AMQPListeners = []string{"127.0.0.1:0"}
	cfg.DataDir = t.TempDir()
	b, err := broker.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.Stop(ctx)
	})
	return fmt.Sprintf("amqp://guest:guest@%s/", b.Addrs()[0])
}

// The raw-frame publisher against a real broker: persistent messages
// with confirms, several per write and split over body frames, all
// confirmed, all delivered once.
func TestRawPublisher(t *testing.T) {
	url := node(t)
	for _, size := range []int{16, 300 << 10} {
		res, err := perf.Run(context.Background(), perf.Config{URIs: []string{url}, Producers: 2, Consumers: 2, Queues: 2,
			Size: size, Persistent: true, Durable: true, ConfirmWindow: 100, Prefetch: 100, MultiAckEvery: 10,
			Raw: true, Batch: 16, MessageCount: 2000, QueuePattern: fmt.Sprintf("raw-%d-%%d", size)}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Verify(); err != nil {
			t.Fatalf("size %d: %v (%+v)", size, err, res)
		}
		if res.Confirmed != 4000 || res.Received != 4000 || res.SendRate <= 0 || res.ReceiveRate <= 0 {
			t.Fatalf("size %d: %+v", size, res)
		}
	}
	// without confirms: every message written must arrive
	res, err := perf.Run(context.Background(), perf.Config{URIs: []string{url}, Producers: 1, Consumers: 1, AutoAck: true,
		Raw: true, Batch: 64, MessageCount: 10000, QueuePattern: "raw-nc-%d"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Verify(); err != nil || res.Received != 10000 {
		t.Fatalf("%v %+v", err, res)
	}
}

// A fanout to 3 queues: each message once per queue is no duplicate,
// with either client.
func TestFanoutEveryQueue(t *testing.T) {
	url := node(t)
	for _, raw := range []bool{false, true} {
		res, err := perf.Run(context.Background(), perf.Config{URIs: []string{url}, Producers: 1, Consumers: 3, Queues: 3,
			Exchange: fmt.Sprintf("fan-%v", raw), ExchangeType: "fanout", RoutingKey: "x", EveryQueue: true, AutoAck: true,
			ConfirmWindow: 50, Raw: raw, MessageCount: 1000, QueuePattern: fmt.Sprintf("fan-%v-%%d", raw)}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Verify(); err != nil || res.Received != 3000 || res.Duplicates != 0 {
			t.Fatalf("raw %v: %v %+v", raw, err, res)
		}
	}
}

// A real loss from the checker's point of view: producer 1 publishes
// (confirmed) into a queue that no consumer reads. The run must fail.
func TestLossDetectedAgainstBroker(t *testing.T) {
	url := node(t)
	res, err := perf.Run(context.Background(), perf.Config{URIs: []string{url}, Producers: 2, Consumers: 1, Queues: 2,
		ConfirmWindow: 10, AutoAck: true, MessageCount: 100, QueuePattern: "lossy-%d"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost != 100 || !errors.Is(res.Verify(), perf.ErrCheckFailed) {
		t.Fatalf("lost %d, Verify %v; want 100 and a failure", res.Lost, res.Verify())
	}
}

// Both publishers against the null sink: every publish read and
// confirmed, so the per-message client cost it prints is of complete
// publishes.
func TestNullSink(t *testing.T) {
	s, err := perf.NewNullSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, raw := range []bool{false, true} {
		before := s.Published()
		for _, window := range []int{0, 100} {
			res, err := perf.Run(context.Background(), perf.Config{URIs: []string{s.URI()}, Producers: 1, Consumers: 0,
				Size: 16, ConfirmWindow: window, Raw: raw, MessageCount: 5000, Predeclared: true}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Verify(); err != nil || res.Sent != 5000 || (window > 0 && res.Confirmed != 5000) {
				t.Fatalf("raw %v window %d: %v %+v", raw, window, err, res)
			}
		}
		if got := s.Published() - before; got != 10000 {
			t.Fatalf("raw %v: the sink read %d publishes, want 10000", raw, got)
		}
	}
}
