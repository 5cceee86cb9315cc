package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/vfs"
	"github.com/warrenmq/warren/internal/wal"
)

func startAt(t *testing.T, dir string) (*broker.Broker, string, error) {
	t.Helper()
	cfg := config.Default()
	cfg.AMQPListeners = []string{"127.0.0.1:0"}
	cfg.DataDir = dir
	b, err := broker.New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return nil, "", err
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	return b, fmt.Sprintf("amqp://guest:guest@%s/", b.Addrs()[0].String()), nil
}

func stop(t *testing.T, b *broker.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func publishConfirmed(t *testing.T, ch *amqp091.Channel, q string, n int) {
	t.Helper()
	acks := ch.NotifyPublish(make(chan amqp091.Confirmation, n))
	for i := 0; i < n; i++ {
		if err := ch.PublishWithContext(context.Background(), "", q, false, false, amqp091.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprintf("%s-%d", q, i))}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case a := <-acks:
			if !a.Ack {
				t.Fatal("nacked")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no confirm")
		}
	}
}

func filesUnder(t *testing.T, dir string) map[string]string {
	out := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			out[p] = string(b)
		}
		return nil
	})
	return out
}

// TestDamagedDefinitionsKeepMessages: one corrupted byte in the metadata
// log used to drop every later definition and then delete the confirmed
// messages of the vanished queues as orphans, with a warning. Now: the
// node refuses to start naming the file; after the operator's repair
// (which loses the damaged definitions) it refuses again, naming the
// queues whose messages it keeps; after --recreate-missing-queues every
// confirmed message is there.
func TestDamagedDefinitionsKeepMessages(t *testing.T) {
	dir := t.TempDir()
	b, url, err := startAt(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	ch := channel(t, dial(t, url))
	ch.Confirm(false)
	for _, q := range []string{"keep-1", "lost-queue-2", "later-3"} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	publishConfirmed(t, ch, "keep-1", 5)
	publishConfirmed(t, ch, "lost-queue-2", 7)
	stop(t, b)

	// flip a byte inside lost-queue-2's declaration (later records follow)
	segs, _ := filepath.Glob(filepath.Join(dir, "meta", "log", "*.wal"))
	flipped := false
	for _, s := range segs {
		raw, _ := os.ReadFile(s)
		if i := bytes.Index(raw, []byte("lost-queue-2")); i >= 0 {
			raw[i+3] ^= 0x20
			os.WriteFile(s, raw, 0o640)
			flipped = true
		}
	}
	if !flipped {
		t.Fatal("declaration not found in the metadata log")
	}
	msgsBefore := filesUnder(t, filepath.Join(dir, "msgs"))

	_, _, err = startAt(t, dir)
	if !errors.Is(err, wal.ErrCorrupt) || !strings.Contains(err.Error(), "--repair-wal") {
		t.Fatalf("start over a damaged metadata log: want a corruption error, got %v", err)
	}
	if _, err := wal.Repair(wal.Options{Dir: filepath.Join(dir, "meta", "log")}); err != nil {
		t.Fatal(err)
	}
	_, _, err = startAt(t, dir)
	var mq *broker.MissingQueuesError
	if !errors.As(err, &mq) {
		t.Fatalf("want MissingQueuesError, got %v", err)
	}
	if !reflect.DeepEqual(mq.Queues, map[string]int{"/\x00lost-queue-2": 7}) {
		t.Fatalf("missing queues %v", mq.Queues)
	}
	for _, want := range []string{`queue "lost-queue-2" (7 messages)`, "nothing was deleted", "--recreate-missing-queues"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if !reflect.DeepEqual(msgsBefore, filesUnder(t, filepath.Join(dir, "msgs"))) {
		t.Fatal("the message store changed although the node refused to start")
	}
	declared, err := broker.RecreateMissingQueues(dir, nil, nil)
	if err != nil || len(declared) != 1 {
		t.Fatalf("recreate: %v %v", declared, err)
	}
	b, url, err = startAt(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(t, b)
	ch = channel(t, dial(t, url))
	for q, n := range map[string]int{"keep-1": 5, "lost-queue-2": 7} {
		st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil || st.Messages != n {
			t.Fatalf("%s: %d messages (%v), want %d", q, st.Messages, err, n)
		}
	}
}

// TestExclusiveDurableQueueMessagesDropped: a durable exclusive queue does
// not survive a restart (as in RabbitMQ); the metadata log knew it, so its
// persisted messages are not "missing": they are dropped, the node starts,
// and the drop holds on the next restart. (Before the byte-exact encoding
// the log lost the exclusive flag and the queue came back as a shared one.)
func TestExclusiveDurableQueueMessagesDropped(t *testing.T) {
	dir := t.TempDir()
	b, url, err := startAt(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	ch := channel(t, dial(t, url))
	ch.Confirm(false)
	if _, err := ch.QueueDeclare("excl", true, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("dur", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	publishConfirmed(t, ch, "excl", 3)
	publishConfirmed(t, ch, "dur", 2)
	b.Stop(context.Background())
	for i := 0; i < 2; i++ {
		b, url, err = startAt(t, dir)
		if err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
		ch = channel(t, dial(t, url))
		if _, err := ch.QueueDeclarePassive("excl", true, false, true, false, nil); err == nil {
			t.Fatal("an exclusive queue survived a restart")
		}
		ch = channel(t, dial(t, url))
		if st, err := ch.QueueDeclarePassive("dur", true, false, false, false, nil); err != nil || st.Messages != 2 {
			t.Fatalf("dur: %v %v", st, err)
		}
		stop(t, b)
	}
}

// TestDeletedQueueMessagesStayDeadAfterPowerLoss: a durable queue with
// confirmed messages is deleted and declared again, then the power fails
// before the deletion's remove records reach the disk (the message store
// runs on a crashable file system; the definitions are synced on every
// change). The old messages used to come back inside the new queue; the
// synced drop record keeps them dead.
func TestDeletedQueueMessagesStayDeadAfterPowerLoss(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.AMQPListeners = []string{"127.0.0.1:0"}
	cfg.DataDir = dir
	lg := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fs := vfs.NewMem()
	b, err := broker.NewWithStoreFS(cfg, lg, fs)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	ch := channel(t, dial(t, fmt.Sprintf("amqp://guest:guest@%s/", b.Addrs()[0].String())))
	ch.Confirm(false)
	if _, err := ch.QueueDeclare("rq", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	publishConfirmed(t, ch, "rq", 3)
	if _, err := ch.QueueDelete("rq", false, false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("rq", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashOptions{}) // only what was fsynced
	stop(t, b)

	b, err = broker.NewWithStoreFS(cfg, lg, crashed)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer stop(t, b)
	ch = channel(t, dial(t, fmt.Sprintf("amqp://guest:guest@%s/", b.Addrs()[0].String())))
	st, err := ch.QueueDeclarePassive("rq", true, false, false, false, nil)
	if err != nil || st.Messages != 0 {
		t.Fatalf("the re-declared queue has %d messages (%v): the deleted queue's messages came back", st.Messages, err)
	}
}
