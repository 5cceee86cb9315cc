package perf

import (
	"errors"
	"testing"
	"time"
)

// a lossy input: 100 confirmed, 95 delivered; the check must fail.
func TestVerifyFailsOnLostMessages(t *testing.T) {
	r := &run{cfg: Config{Consumers: 1, Queues: 1}, tracker: NewTracker()}
	for i := uint32(0); i < 100; i++ {
		r.tracker.Sent(0, i)
		r.c.sent.Add(1)
		r.c.confirmed.Add(1)
		if i%20 != 7 {
			r.tracker.Received(0, i)
			r.c.received.Add(1)
		}
	}
	res := r.result(time.Second)
	if res.Lost != 5 || res.Duplicates != 0 {
		t.Fatalf("lost %d duplicates %d, want 5 and 0", res.Lost, res.Duplicates)
	}
	if err := res.Verify(); !errors.Is(err, ErrCheckFailed) {
		t.Fatalf("Verify on a lossy run: %v, want ErrCheckFailed", err)
	}
	if len(res.Missing) != 5 || res.Missing[0] != "queue 0 producer 0: 7-7" || res.Missing[4] != "queue 0 producer 0: 87-87" {
		t.Fatalf("missing ranges %q", res.Missing)
	}
	// the same run with everything delivered passes
	for i := uint32(7); i < 100; i += 20 {
		r.tracker.Received(0, i)
	}
	if err := r.result(time.Second).Verify(); err != nil {
		t.Fatalf("Verify on a complete run: %v", err)
	}
	// and a duplicate fails it again
	r.tracker.Received(0, 42)
	if res := r.result(time.Second); res.Duplicates != 1 || res.Verify() == nil {
		t.Fatalf("duplicate not reported: %+v", res)
	}
}

func TestVerifyFailsOnNacksErrorsAndNothingDelivered(t *testing.T) {
	for name, res := range map[string]Result{
		"nacked":    {Sent: 10, Nacked: 1},
		"error":     {Errors: []string{"producer 0: publish: closed"}},
		"delivered": {Checked: true, Sent: 10},
	} {
		if err := res.Verify(); !errors.Is(err, ErrCheckFailed) {
			t.Errorf("%s: Verify %v, want ErrCheckFailed", name, err)
		}
	}
	if err := (Result{Sent: 10, Lost: 3}).Verify(); err != nil {
		t.Errorf("a run without consumers is not checked for loss: %v", err)
	}
}

// A fanout delivers each message once to each queue: that is no
// duplicate, and a message missing from one queue is a loss.
func TestFanoutCheckedPerQueue(t *testing.T) {
	tr := NewTracker()
	for i := uint32(0); i < 10; i++ {
		tr.Sent(3, i)
		for q := 0; q < 4; q++ {
			tr.ReceivedIn(q, 3, i)
		}
	}
	if lost, dups := tr.CheckQueues(4); lost != 0 || dups != 0 {
		t.Fatalf("complete fanout: lost %d dups %d", lost, dups)
	}
	tr.Sent(3, 10)
	for q := 0; q < 4; q++ {
		if q != 2 {
			tr.ReceivedIn(q, 3, 10)
		}
	}
	tr.ReceivedIn(1, 3, 4)
	if lost, dups := tr.CheckQueues(4); lost != 1 || dups != 1 {
		t.Fatalf("lost %d dups %d, want 1 (queue 2) and 1 (queue 1)", lost, dups)
	}
}

// Issue 16: a 10 s run reported a third of its per-second rate because
// the summary divided by a time that included waiting for confirms,
// draining and closing. The rates divide by the sending and receiving
// windows.
func TestRatesDivideBySendingAndReceivingWindows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := &run{cfg: Config{Consumers: 1, Queues: 1}, tracker: NewTracker(), sendStart: t0}
	r.c.sent.Store(300_000)
	r.c.received.Store(300_000)
	r.lastSent.Store(t0.Add(10 * time.Second).UnixNano())
	r.lastRecv.Store(t0.Add(12 * time.Second).UnixNano())
	res := r.result(30 * time.Second) // connecting, confirms, drain, close
	if res.SendRate != 30_000 || res.SendWindow != 10*time.Second {
		t.Errorf("send rate %.0f over %v, want 30000 over 10s", res.SendRate, res.SendWindow)
	}
	if res.ReceiveRate != 25_000 || res.ReceiveWindow != 12*time.Second {
		t.Errorf("receive rate %.0f over %v, want 25000 over 12s", res.ReceiveRate, res.ReceiveWindow)
	}
	if res.Elapsed != 30*time.Second {
		t.Errorf("elapsed %v", res.Elapsed)
	}
}

func TestConfirmSetSettlesMultipleAndOutOfOrder(t *testing.T) {
	var s confirmSet
	var got []uint64
	note := func(tag uint64) { got = append(got, tag) }
	s.settle(3, false, note) // out of order
	s.settle(2, true, note)  // 1 and 2
	s.settle(2, false, note) // already settled
	s.settle(6, true, note)  // 4, 5, 6 (3 already)
	s.settle(7, false, note)
	want := []uint64{3, 1, 2, 4, 5, 6, 7}
	if len(got) != len(want) {
		t.Fatalf("settled %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("settled %v, want %v", got, want)
		}
	}
	if s.base != 7 || len(s.done) != 0 {
		t.Fatalf("base %d, %d pending", s.base, len(s.done))
	}
}

func TestMissingRanges(t *testing.T) {
	tr := NewTracker()
	for i := uint32(0); i < 200; i++ {
		tr.Sent(1, i)
		if (i < 50 || i > 59) && i < 190 {
			tr.ReceivedIn(0, 1, i)
		}
		tr.ReceivedIn(1, 1, i)
	}
	got := tr.MissingRanges(2, 10)
	if len(got) != 2 || got[0] != "queue 0 producer 1: 50-59" || got[1] != "queue 0 producer 1: 190-199" {
		t.Fatalf("%q", got)
	}
	if got := tr.MissingRanges(2, 1); len(got) != 2 || got[1] != "and 1 more ranges" {
		t.Fatalf("%q", got)
	}
}
