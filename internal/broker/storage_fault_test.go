package broker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/wal"
)

// faultFS fails fsyncs or writes (with ENOSPC) once told to.
type faultFS struct {
	wal.OSFS
	failSync atomic.Bool
	noSpace  atomic.Bool
}

type faultFile struct {
	*os.File
	fs *faultFS
}

func (f faultFile) Sync() error {
	if f.fs.failSync.Load() {
		return errors.New("injected fsync failure")
	}
	return f.File.Sync()
}

func (f faultFile) Write(p []byte) (int, error) {
	if f.fs.noSpace.Load() {
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Write(p)
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return faultFile{f, fs}, nil
}

// TestStorageFailureNacksAndKeepsServing injects an fsync failure and a
// full disk under the message store: persistent publishes are nacked,
// never confirmed; transient traffic and other connections keep working;
// what was confirmed before is still there after a restart.
func TestStorageFailureNacksAndKeepsServing(t *testing.T) {
	for _, fault := range []string{"fsync", "ENOSPC"} {
		t.Run(fault, func(t *testing.T) {
			dir := t.TempDir()
			cfg := config.Default()
			cfg.AMQPListeners = []string{"127.0.0.1:0"}
			cfg.DataDir = dir
			fs := &faultFS{}
			b, err := broker.NewWithStoreFS(cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), fs)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Start(); err != nil {
				t.Fatal(err)
			}
			url := fmt.Sprintf("amqp://guest:guest@%s/", b.Addrs()[0].String())
			ch := channel(t, dial(t, url))
			declare(t, ch, "transient-q", nil)
			if _, err := ch.QueueDeclare("durable-q", true, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
			ch.Confirm(false)
			acks := ch.NotifyPublish(make(chan amqp091.Confirmation, 16))
			pub := func(q string, mode uint8, body string) bool {
				t.Helper()
				if err := ch.PublishWithContext(context.Background(), "", q, false, false, amqp091.Publishing{DeliveryMode: mode, Body: []byte(body)}); err != nil {
					t.Fatal(err)
				}
				select {
				case a := <-acks:
					return a.Ack
				case <-time.After(10 * time.Second):
					t.Fatalf("no confirm for %s", body)
					return false
				}
			}
			if !pub("durable-q", 2, "before") {
				t.Fatal("nacked before any fault")
			}
			if fault == "fsync" {
				fs.failSync.Store(true)
			} else {
				fs.noSpace.Store(true)
			}
			if pub("durable-q", 2, "during") {
				t.Fatal("a persistent message was confirmed though the store could not persist it")
			}
			if pub("durable-q", 2, "during-2") {
				t.Fatal("the store's failure must stick: later persistent messages are nacked too")
			}
			if !pub("transient-q", 1, "transient") {
				t.Fatal("transient traffic must keep flowing")
			}
			other := channel(t, dial(t, url))
			if m, ok, err := other.Get("transient-q", true); err != nil || !ok || string(m.Body) != "transient" {
				t.Fatalf("another connection: %v %v %q", ok, err, m.Body)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			b.Stop(ctx)
			// back on a healthy disk, the confirmed message is there
			b2, url2 := node(t, func(c *config.Config) { c.DataDir = dir })
			_ = b2
			ch2 := channel(t, dial(t, url2))
			m, ok, err := ch2.Get("durable-q", true)
			if err != nil || !ok || string(m.Body) != "before" {
				t.Fatalf("confirmed message after restart: %v %v %q", ok, err, m.Body)
			}
		})
	}
}
