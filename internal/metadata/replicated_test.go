package metadata

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
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
		h, err := consensus.Open(consensus.Options{ID: id, Dir: filepath.Join(dir, fmt.Sprint(id)), Transport: net.Endpoint(id), Tick: 20 * time.Millisecond, SnapshotEvery: 4})
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

func TestSnapshotRestoresEveryDefinition(t *testing.T) {
	a := NewStore(NewLocalLog())
	for _, c := range sampleCommands() {
		if err := a.Propose(c); err != nil {
			t.Fatal(err)
		}
	}
	// transient objects belong to a cluster snapshot too
	a.Propose(Command{Op: OpDeclareQueue, Queue: &Queue{Name: "excl", VHost: "/", Exclusive: true, Owner: 7}})
	snap, err := a.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b := NewStore(NewLocalLog())
	b.Propose(Command{Op: OpAddVHost, VHost: "stale"}) // replaced wholesale
	if err := b.restore(snap); err != nil {
		t.Fatal(err)
	}
	a.Read(func(sa *State) {
		b.Read(func(sb *State) {
			if !reflect.DeepEqual(sa, sb) {
				t.Fatalf("restored state differs:\n%+v\n%+v", sa, sb)
			}
		})
	})
	again, _ := b.snapshot()
	if string(again) != string(snap) {
		t.Fatal("snapshots of equal states differ (not deterministic)")
	}
}

func TestReplicatedCommandsKeepQueueOwnership(t *testing.T) {
	in := Command{Op: OpDeclareQueue, Queue: &Queue{Name: "amq.gen-1", VHost: "/", Exclusive: true, Owner: 42, Arguments: map[string]any{"x-expires": float64(1000)}}}
	raw, err := encodeCommand(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeCommand(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %+v → %+v", *in.Queue, *out.Queue)
	}
	// and the definitions format still leaves them out
	plain, _ := json.Marshal(in.Queue)
	if strings.Contains(string(plain), "owner") || strings.Contains(string(plain), "exclusive") {
		t.Fatalf("definitions JSON grew fields: %s", plain)
	}
}
