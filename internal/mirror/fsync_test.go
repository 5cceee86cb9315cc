package mirror

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/consensus"
	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/wal"
)

// heldFS is the OS file system whose fsyncs can be held: Sync blocks
// until released.
type heldFS struct {
	wal.OSFS
	mu   sync.Mutex
	hold chan struct{}
}

func (f *heldFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	file, err := f.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return heldFile{file, f}, nil
}

func (f *heldFS) holdSyncs() {
	f.mu.Lock()
	f.hold = make(chan struct{})
	f.mu.Unlock()
}

func (f *heldFS) release() {
	f.mu.Lock()
	if f.hold != nil {
		close(f.hold)
		f.hold = nil
	}
	f.mu.Unlock()
}

type heldFile struct {
	wal.File
	fs *heldFS
}

func (f heldFile) Sync() error {
	f.fs.mu.Lock()
	hold := f.fs.hold
	f.fs.mu.Unlock()
	if hold != nil {
		<-hold
	}
	return f.File.Sync()
}

// TestConfirmWaitsForTheFsync: with every member's fsync held, a
// published message's confirm does not fire, however long the cluster
// keeps running; once the fsyncs complete, it does.
func TestConfirmWaitsForTheFsync(t *testing.T) {
	net := consensus.NewMemNetwork()
	dir := t.TempDir()
	ids := []uint64{1, 2, 3}
	fs := &heldFS{}
	defer fs.release()
	stores := map[uint64]*Store{}
	hosts := map[uint64]*consensus.Host{}
	for _, id := range ids {
		h, err := consensus.Open(consensus.Options{ID: id, Dir: filepath.Join(dir, fmt.Sprint(id)), Transport: net.Endpoint(id), Tick: 20 * time.Millisecond, FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		net.Attach(id, h)
		t.Cleanup(func() { fs.release(); h.Close() })
		s, err := Open(h, id, 7, ids)
		if err != nil {
			t.Fatal(err)
		}
		stores[id], hosts[id] = s, h
	}
	nodes := map[uint64]*node{}
	for id := range stores {
		nodes[id] = &node{hosts[id], stores[id]}
	}
	lead := leaderOf(t, nodes, ids...)
	q := queue.New(queue.Config{VHost: "/", Name: "held", Durable: true, Store: stores[lead]})
	// one confirmed message first: the path works with fsyncs running
	_, ref := q.Publish(&queue.Message{Body: []byte("before"), Persistent: true})
	first := make(chan error, 1)
	stores[lead].OnDurable(ref, func(err error) { first <- err })
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	fs.holdSyncs()
	_, ref = q.Publish(&queue.Message{Body: []byte("held"), Persistent: true})
	if ref == 0 {
		t.Fatal("no reference to wait for")
	}
	confirmed := make(chan error, 1)
	stores[lead].OnDurable(ref, func(err error) { confirmed <- err })
	// the cluster keeps running (the message reaches every member's log
	// and page cache) but no member's fsync completes
	waitFor(t, "the entry replicated", func() bool {
		for _, h := range hosts {
			if h.Stats().Sent == 0 {
				return false
			}
		}
		return true
	})
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		select {
		case err := <-confirmed:
			t.Fatalf("confirm fired (err %v) while no member had fsynced the message", err)
		default:
		}
		time.Sleep(10 * time.Millisecond)
	}
	fs.release()
	select {
	case err := <-confirmed:
		if err != nil {
			t.Fatalf("confirm after the fsync: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no confirm after the fsyncs completed")
	}
}
