package metadata

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/consensus"
)

// TestReplicatedLogKeepsEveryNodeAlike drives three Stores over a
// consensus group: the callers are the same as on one node, and every
// node ends with the same definitions and saw the same commands.
func TestReplicatedLogKeepsEveryNodeAlike(t *testing.T) {
	net := consensus.NewMemNetwork()
	dir := t.TempDir()
	ids := []uint64{1, 2, 3}
	stores := map[uint64]*Store{}
	logs := map[uint64]*ReplicatedLog{}
	var mu sync.Mutex
	seen := map[uint64][]Op{}
	for _, id := range ids {
		h, err := consensus.Open(consensus.Options{ID: id, Dir: filepath.Join(dir, fmt.Sprint(id)), Transport: net.Endpoint(id), NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		net.Attach(id, h)
		l := NewReplicatedLog(h, 1, ids)
		l.Timeout = 5 * time.Second
		s := NewStore(l)
		s.Observe(func(c Command) {
			mu.Lock()
			seen[id] = append(seen[id], c.Op)
			mu.Unlock()
		})
		if err := l.Start(); err != nil {
			t.Fatal(err)
		}
		stores[id], logs[id] = s, l
	}
	// the same commands as a single node's tests, proposed on all nodes
	for i, c := range sampleCommands() {
		if err := stores[ids[i%3]].Propose(c); err != nil {
			t.Fatalf("command %d (%s) via node %d: %v", i, c.Op, ids[i%3], err)
		}
	}
	// a command that cannot apply fails at the proposer, like on one node
	if err := stores[2].Propose(Command{Op: OpDeleteUser, Name: "nobody"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting a missing user: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		same := true
		for _, id := range ids[1:] {
			if !reflect.DeepEqual(stores[id].Export(), stores[1].Export()) {
				same = false
			}
		}
		mu.Lock()
		n3 := len(seen[3])
		mu.Unlock()
		if same && n3 == len(sampleCommands()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("definitions differ between nodes or observers lag (node 3 saw %d)", n3)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d := stores[3].Export()
	if len(d.Users) != 1 || len(d.Queues) != 1 || len(d.Policies) != 1 {
		t.Fatalf("node 3 has %d users, %d durable queues, %d policies", len(d.Users), len(d.Queues), len(d.Policies))
	}
	// a node cut off from the others cannot change definitions
	net.Isolate([]uint64{3}, ids)
	logs[3].Timeout = 700 * time.Millisecond
	if err := stores[3].Propose(Command{Op: OpAddVHost, VHost: "cut-off"}); err == nil {
		t.Fatal("a minority node committed a definition")
	}
}
