package broker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/metadata"
)

// node starts an in-process node on a loopback port and returns it with
// its AMQP URL.
func node(t testing.TB, mod ...func(*config.Config)) (*broker.Broker, string) {
	t.Helper()
	cfg := config.Default()
	cfg.AMQPListeners = []string{"127.0.0.1:0"}
	cfg.DataDir = t.TempDir()
	for _, m := range mod {
		m(&cfg)
	}
	level := slog.LevelWarn
	if os.Getenv("WARREN_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	b, err := broker.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return b, fmt.Sprintf("amqp://guest:guest@%s/", b.Addrs()[0].String())
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func dial(t testing.TB, url string) *amqp091.Connection {
	t.Helper()
	c, err := amqp091.DialConfig(url, amqp091.Config{Heartbeat: 10 * time.Second, Locale: "en_US"})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func channel(t testing.TB, c *amqp091.Connection) *amqp091.Channel {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	return ch
}

// amqpErr asserts err is an *amqp091.Error with code and scope.
func amqpErr(t testing.TB, err error, code int, server bool) *amqp091.Error {
	t.Helper()
	var e *amqp091.Error
	if !errors.As(err, &e) {
		t.Fatalf("want AMQP error %d, got %v", code, err)
	}
	if e.Code != code {
		t.Fatalf("want reply code %d, got %d (%s)", code, e.Code, e.Reason)
	}
	if !e.Server {
		t.Fatalf("error %d not raised by the server", code)
	}
	return e
}

// chanClosed waits for the channel's close notification and returns it.
func waitClose(t testing.TB, ch chan *amqp091.Error) *amqp091.Error {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no close notification within 5s")
	}
	return nil
}

func recv(t testing.TB, d <-chan amqp091.Delivery) amqp091.Delivery {
	t.Helper()
	select {
	case m, ok := <-d:
		if !ok {
			t.Fatal("delivery channel closed")
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery within 5s")
	}
	return amqp091.Delivery{}
}

func noRecv(t testing.TB, d <-chan amqp091.Delivery, wait time.Duration) {
	t.Helper()
	select {
	case m := <-d:
		t.Fatalf("unexpected delivery %q", m.Body)
	case <-time.After(wait):
	}
}

func publish(t testing.TB, ch *amqp091.Channel, ex, key string, body string) {
	t.Helper()
	if err := ch.PublishWithContext(context.Background(), ex, key, false, false, amqp091.Publishing{Body: []byte(body)}); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func setPolicy(b *broker.Broker, name, pattern string, def map[string]any) error {
	return b.Metadata().Propose(metadata.Command{Op: metadata.OpSetPolicy, Policy: &metadata.Policy{
		Name: name, VHost: "/", Pattern: pattern, ApplyTo: "all", Definition: def,
	}})
}
