package mirror

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/consensus"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/queue"
)

// TestDeletingAMirroredQueueWhilePublishing: publishers keep a mirrored
// queue busy while a metadata change deletes it (the metadata observer
// calls Queue.Delete, as the broker does). Publishing into a mirrored
// store waits for the consensus loop; the loop used to apply the
// metadata change itself and so waited for the queue's lock, which a
// publisher held across the store call: a deadlock. Store calls now run
// without the queue lock and commands apply off the loop.
func TestDeletingAMirroredQueueWhilePublishing(t *testing.T) {
	net := consensus.NewMemNetwork()
	dir := t.TempDir()
	ids := []uint64{1, 2, 3}
	hosts := map[uint64]*consensus.Host{}
	metas := map[uint64]*metadata.Store{}
	mirrors := map[uint64]*Store{}
	var q atomic.Pointer[queue.Queue]
	var stuck atomic.Bool // a deadlocked host cannot be closed: leave it
	for _, id := range ids {
		h, err := consensus.Open(consensus.Options{ID: id, Dir: filepath.Join(dir, fmt.Sprint(id)), Transport: net.Endpoint(id), Tick: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if !stuck.Load() {
				h.Close()
			}
		})
		net.Attach(id, h)
		hosts[id] = h
		l := metadata.NewReplicatedLog(h, 1, ids)
		l.Timeout = 30 * time.Second
		ms := metadata.NewStore(l)
		ms.Observe(func(c metadata.Command) {
			if c.Op == metadata.OpDeleteQueue && c.Name == "mirrored" {
				if qq := q.Load(); qq != nil && id == 1 {
					qq.Delete(false, false)
				}
			}
		})
		if err := l.Start(); err != nil {
			t.Fatal(err)
		}
		metas[id] = ms
		s, err := Open(h, id, 7, ids)
		if err != nil {
			t.Fatal(err)
		}
		mirrors[id] = s
	}
	waitFor(t, "leaders", func() bool { return hosts[1].Leader(1) != 0 && hosts[1].Leader(7) != 0 })
	for _, c := range []metadata.Command{
		{Op: metadata.OpAddVHost, VHost: "/"},
		{Op: metadata.OpDeclareQueue, Queue: &metadata.Queue{Name: "mirrored", VHost: "/", Durable: true}},
	} {
		if err := metas[1].Propose(c); err != nil {
			t.Fatal(err)
		}
	}
	q.Store(queue.New(queue.Config{VHost: "/", Name: "mirrored", Durable: true, Store: mirrors[1]}))
	var published atomic.Int64
	var wg sync.WaitGroup
	for p := 0; p < 16; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				res, _ := q.Load().Publish(&queue.Message{Body: []byte(fmt.Sprint(p, "-", i)), Persistent: true})
				if res == queue.Dropped {
					return
				}
				published.Add(1)
			}
		}()
	}
	waitFor(t, "publishing under way", func() bool { return published.Load() > 2000 })
	deleted := make(chan error, 1)
	go func() {
		deleted <- metas[1].Propose(metadata.Command{Op: metadata.OpDeleteQueue, VHost: "/", Name: "mirrored"})
	}()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	timeout := time.After(60 * time.Second)
	select {
	case err := <-deleted:
		if err != nil {
			t.Fatalf("deleting the queue: %v", err)
		}
	case <-timeout:
		stuck.Store(true)
		buf := make([]byte, 1<<20)
		t.Fatalf("deadlock: the metadata change deleting the queue did not complete in 60 s\n%s", buf[:runtime.Stack(buf, true)])
	}
	select {
	case <-finished:
	case <-timeout:
		stuck.Store(true)
		buf := make([]byte, 1<<20)
		t.Fatalf("deadlock: publishers still blocked 60 s after the queue was deleted\n%s", buf[:runtime.Stack(buf, true)])
	}
	if !q.Load().Deleted() {
		t.Fatal("the queue was not deleted")
	}
	t.Logf("%d messages published before the queue went", published.Load())
}
