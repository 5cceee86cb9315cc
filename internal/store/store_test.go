package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/queue/storetest"
)

func msg(i int) *queue.Message {
	return &queue.Message{Exchange: "ex", RoutingKey: fmt.Sprintf("rk%d", i), Props: []byte{0x10, 0x00, byte(i)},
		Body: bytes.Repeat([]byte{byte(i)}, 100+i%50), Persistent: true, Priority: uint8(i % 3)}
}

func TestRecoveryKeepsOrderFlagsAndBodies(t *testing.T) {
	dir := t.TempDir()
	s, rec, err := Open(dir, nil, Options{NoSync: true, SegmentSize: 8 << 10})
	if err != nil || len(rec.Queues()) != 0 {
		t.Fatalf("open: %v %d", err, len(rec.Queues()))
	}
	refs := map[string][]uint64{}
	for i := 0; i < 300; i++ {
		q := []string{"/\x00a", "/\x00b"}[i%2]
		ref, err := s.Enqueue(q, msg(i), int64(i))
		if err != nil {
			t.Fatal(err)
		}
		refs[q] = append(refs[q], ref)
	}
	// a: the first 50 removed, the next 10 delivered (unacked)
	s.Remove("/\x00a", refs["/\x00a"][:50])
	s.Delivered("/\x00a", refs["/\x00a"][50:60])
	// b: everything removed
	s.Remove("/\x00b", refs["/\x00b"])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, rec, err = Open(dir, nil, Options{NoSync: true, SegmentSize: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(rec.Queues()) != 1 || rec.Count("/\x00a") != 100 {
		t.Fatalf("recovered %d queues, a has %d messages (want 1 queue, 100)", len(rec.Queues()), rec.Count("/\x00a"))
	}
	got := slices.Collect(rec.Messages("/\x00a"))
	loadRefs := make([]uint64, len(got))
	for k, r := range got {
		i := 2 * (50 + k) // message number of a's (50+k)-th message
		if r.Ref != refs["/\x00a"][50+k] || r.ExpiresAt != int64(i) || r.Size != uint32(msg(i).Size()) || r.Priority != uint8(i%3) || r.Msg != nil {
			t.Fatalf("recovered #%d: %+v", k, r)
		}
		if r.Redelivered != (k < 10) {
			t.Fatalf("recovered #%d redelivered=%v", k, r.Redelivered)
		}
		loadRefs[k] = r.Ref
	}
	n := 0
	err = s.Load(loadRefs, func(k int, m *queue.Message) {
		n++
		want := msg(2 * (50 + k))
		if !bytes.Equal(m.Body, want.Body) || !bytes.Equal(m.Props, want.Props) || m.RoutingKey != want.RoutingKey || m.Exchange != "ex" || !m.Persistent || m.Priority != want.Priority {
			t.Fatalf("loaded #%d differs: %+v", k, m)
		}
	})
	if err != nil || n != len(loadRefs) {
		t.Fatalf("load: %v (%d of %d)", err, n, len(loadRefs))
	}
	if err := s.Load([]uint64{refs["/\x00a"][99]}, func(int, *queue.Message) {}); err != nil {
		t.Fatalf("load one: %v", err)
	}
}

// TestBacklogBeyondMemoryBudget publishes a backlog far beyond what the
// queue keeps in memory, checks the bodies in memory stay bounded, and
// drains it in order with the bodies read back from disk.
func TestBacklogBeyondMemoryBudget(t *testing.T) {
	s, _, err := Open(t.TempDir(), nil, Options{NoSync: true, SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mem := &queue.Memory{}
	mem.SetBudget(64 << 10)
	q := queue.New(queue.Config{VHost: "/", Name: "big", Durable: true, Store: s, Memory: mem})
	const n = 20000
	for i := 0; i < n; i++ {
		m := &queue.Message{Body: []byte(fmt.Sprintf("%08d-%s", i, bytes.Repeat([]byte("x"), 500))), Persistent: true}
		if r, _ := q.Publish(m); r != queue.Enqueued {
			t.Fatalf("publish %d: %v", i, r)
		}
	}
	// the budget is exceeded after ~128 bodies; from then on at most the
	// head of the backlog stays in memory
	if used := mem.Used(); used > 256*600 {
		t.Fatalf("%d bytes of bodies in memory for a %d-message backlog", used, n)
	}
	if ram, bytes := q.InMemory(); ram < 64 || ram > 256 || bytes != mem.Used() {
		t.Fatalf("queue reports %d messages / %d bytes in memory (node: %d bytes)", ram, bytes, mem.Used())
	}
	segs := s.Segments()
	for i := 0; i < n; i++ {
		d, ok := q.Get(i%2 == 0)
		if !ok {
			t.Fatalf("queue empty after %d", i)
		}
		if want := fmt.Sprintf("%08d-", i); string(d.Msg.Body[:9]) != want {
			t.Fatalf("message %d: got %q", i, d.Msg.Body[:9])
		}
		if i%2 == 1 {
			q.Ack(d.ID)
		}
		if used := mem.Used(); used > 256*600 {
			t.Fatalf("%d bytes in memory while draining", used)
		}
	}
	if r, u, _ := q.Counts(); r != 0 || u != 0 || mem.Used() != 0 {
		t.Fatalf("after draining: %d ready, %d unacked, %d bytes accounted", r, u, mem.Used())
	}
	// one more remove batch triggers the segment clean-up
	q.Publish(&queue.Message{Body: []byte("last"), Persistent: true})
	for i := 0; i < 5000; i++ {
		q.Publish(&queue.Message{Body: []byte("churn"), Persistent: true})
		q.Get(true)
	}
	if after := s.Segments(); after >= segs || after > 2 {
		t.Fatalf("segments: %d with the backlog, %d after draining", segs, after)
	}
}

// TestTransientMessagesPagedUnderPressure checks that under memory
// pressure transient messages go to the pager and come back intact.
func TestTransientMessagesPagedUnderPressure(t *testing.T) {
	pager, err := OpenPager(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pager.Close()
	mem := &queue.Memory{}
	q := queue.New(queue.Config{VHost: "/", Name: "t", Pager: pager, Memory: mem})
	body := func(i int) []byte { return []byte(fmt.Sprintf("%06d-%s", i, bytes.Repeat([]byte("y"), 1000))) }
	for i := 0; i < 1000; i++ {
		q.Publish(&queue.Message{Body: body(i)})
	}
	if mem.Used() != int64(1000*len(body(0))) || pager.Segments() != 1 || pager.log.LastIndex() != 0 {
		t.Fatalf("without pressure everything stays in memory: %d bytes, %d pager records", mem.Used(), pager.log.LastIndex())
	}
	mem.SetPressure(true)
	freed := q.PageOut()
	if freed <= 0 || mem.Used() > 100*int64(len(body(0))) {
		t.Fatalf("page out freed %d, %d still in memory", freed, mem.Used())
	}
	for i := 1000; i < 3000; i++ {
		q.Publish(&queue.Message{Body: body(i)})
	}
	if mem.Used() > 100*int64(len(body(0))) {
		t.Fatalf("under pressure new messages are paged too: %d bytes in memory", mem.Used())
	}
	mem.SetPressure(false)
	for i := 0; i < 3000; i++ {
		d, ok := q.Get(true)
		if !ok || !bytes.Equal(d.Msg.Body, body(i)) {
			t.Fatalf("message %d: %v %q", i, ok, d.Msg.Body[:7])
		}
	}
	if _, ok := q.Get(true); ok || mem.Used() != 0 {
		t.Fatalf("left over: %v, %d bytes accounted", ok, mem.Used())
	}
}

// TestPriorityBacklogPagedStaysOrdered checks paging with priority levels.
func TestPriorityBacklogPagedStaysOrdered(t *testing.T) {
	s, _, err := Open(t.TempDir(), nil, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mem := &queue.Memory{}
	mem.SetBudget(1)
	q := queue.New(queue.Config{VHost: "/", Name: "p", Durable: true, Store: s, Memory: mem, Args: map[string]any{"x-max-priority": int32(5)}})
	for i := 0; i < 3000; i++ {
		q.Publish(&queue.Message{Body: []byte(fmt.Sprintf("%d-%05d", i%3, i)), Persistent: true, Priority: uint8(i % 3)})
	}
	last := ""
	for i := 0; i < 3000; i++ {
		d, ok := q.Get(true)
		if !ok {
			t.Fatalf("empty at %d", i)
		}
		b := string(d.Msg.Body)
		// priority 2 first, then 1, then 0; within one, publish order
		if last != "" && (b[0] > last[0] || (b[0] == last[0] && b < last)) {
			t.Fatalf("%s after %s", b, last)
		}
		last = b
	}
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range es {
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestPinnedMessagesDoNotPinTheDisk keeps a few messages in queues for the
// whole test while much more traffic flows through another queue: the
// segments behind them are compacted, disk use falls back, and after a
// reopen exactly the live messages are there (none of the removed ones
// come back, though their remove records were compacted away).
func TestPinnedMessagesDoNotPinTheDisk(t *testing.T) {
	dir := t.TempDir()
	s, _, err := Open(dir, nil, Options{NoSync: true, SegmentSize: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("z"), 1000)
	pin := func(name string) uint64 {
		ref, err := s.Enqueue(name, &queue.Message{Body: []byte(name), Persistent: true}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}
	first := pin("/\x00pinned")
	s.Delivered("/\x00pinned", []uint64{first})
	var middle uint64
	for i := 0; i < 3000; i++ {
		var refs []uint64
		for k := 0; k < 10; k++ {
			ref, err := s.Enqueue("/\x00churn", &queue.Message{Body: body, Persistent: true}, 0)
			if err != nil {
				t.Fatal(err)
			}
			refs = append(refs, ref)
		}
		if i == 1500 {
			middle = pin("/\x00middle")
		}
		s.Delivered("/\x00churn", refs)
		s.Remove("/\x00churn", refs)
	}
	traffic := int64(30000 * 1000)
	// compaction runs in the background: wait for the disk to shrink
	deadline := time.Now().Add(20 * time.Second)
	for dirBytes(t, dir) > traffic/20 {
		if time.Now().After(deadline) {
			t.Fatalf("after %d bytes of traffic the store still uses %d bytes (%d segments)", traffic, dirBytes(t, dir), s.Segments())
		}
		// removals trigger the clean-up; keep a little traffic going
		for k := 0; k < 100; k++ {
			ref, _ := s.Enqueue("/\x00churn", &queue.Message{Body: []byte("small"), Persistent: true}, 0)
			s.Remove("/\x00churn", []uint64{ref})
		}
		time.Sleep(10 * time.Millisecond)
	}
	used := dirBytes(t, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, rec, err := Open(dir, nil, Options{NoSync: true, SegmentSize: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(rec.Queues()) != 2 || rec.Count("/\x00pinned") != 1 || rec.Count("/\x00middle") != 1 {
		t.Fatalf("recovered queues: %v", rec.Queues())
	}
	p, m := slices.Collect(rec.Messages("/\x00pinned"))[0], slices.Collect(rec.Messages("/\x00middle"))[0]
	if p.Ref != first || !p.Redelivered || m.Ref != middle || m.Redelivered {
		t.Fatalf("recovered %+v and %+v", p, m)
	}
	err = s.Load([]uint64{first, middle}, func(i int, msg *queue.Message) {
		if want := []string{"/\x00pinned", "/\x00middle"}[i]; string(msg.Body) != want {
			t.Fatalf("body %q, want %q", msg.Body, want)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes of traffic, %d bytes on disk after compaction", traffic, used)
}

func TestMsgStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) queue.Store {
		s, _, err := Open(t.TempDir(), nil, Options{NoSync: true, SegmentSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestLazyQueueKeepsOnlyItsHeadInMemory checks x-queue-mode=lazy: without
// any memory pressure, persistent and transient messages past the head go
// to disk (the store and the pager), and come back in order.
func TestLazyQueueKeepsOnlyItsHeadInMemory(t *testing.T) {
	st, _, err := Open(t.TempDir(), nil, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pager, err := OpenPager(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pager.Close()
	mem := &queue.Memory{} // no budget, no pressure
	q := queue.New(queue.Config{VHost: "/", Name: "lazy", Durable: true, Store: st, Pager: pager, Memory: mem,
		Args: map[string]any{"x-queue-mode": "lazy"}})
	for i := 0; i < 1000; i++ {
		q.Publish(&queue.Message{Body: []byte(fmt.Sprintf("%04d", i)), Persistent: i%2 == 0})
	}
	if ram, _ := q.InMemory(); ram > 64 {
		t.Fatalf("a lazy queue holds %d of 1000 bodies in memory", ram)
	}
	for i := 0; i < 1000; i++ {
		d, ok := q.Get(true)
		if !ok || string(d.Msg.Body) != fmt.Sprintf("%04d", i) {
			t.Fatalf("message %d: %v %q", i, ok, d.Msg.Body)
		}
	}
	// the same queue without the argument keeps them in memory
	q2 := queue.New(queue.Config{VHost: "/", Name: "default", Durable: true, Store: st, Pager: pager, Memory: mem})
	for i := 0; i < 1000; i++ {
		q2.Publish(&queue.Message{Body: []byte("x"), Persistent: i%2 == 0})
	}
	if ram, _ := q2.InMemory(); ram != 1000 {
		t.Fatalf("a default queue holds %d of 1000 bodies in memory", ram)
	}
}

func TestPolicyTurnsAQueueLazy(t *testing.T) {
	st, _, err := Open(t.TempDir(), nil, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q := queue.New(queue.Config{VHost: "/", Name: "q", Durable: true, Store: st, Memory: &queue.Memory{}})
	for i := 0; i < 500; i++ {
		q.Publish(&queue.Message{Body: []byte(fmt.Sprintf("%04d", i)), Persistent: true})
	}
	if ram, _ := q.InMemory(); ram != 500 {
		t.Fatalf("before the policy: %d in memory", ram)
	}
	q.SetPolicy(map[string]any{"queue-mode": "lazy"})
	if ram, _ := q.InMemory(); ram > 64 {
		t.Fatalf("after queue-mode lazy: %d of 500 in memory", ram)
	}
	if d, ok := q.Get(true); !ok || string(d.Msg.Body) != "0000" {
		t.Fatalf("head after paging: %q", d.Msg.Body)
	}
}
