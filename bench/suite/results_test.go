package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/warrenmq/warren/internal/perf"
)

// A broker that failed a scenario's check in any round has FAILED in its
// cell and no ratio, even with figures from other rounds.
func TestFailedRunHasNoRatio(t *testing.T) {
	rs := newResults([]*broker{{name: "Warren", kind: "Warren"}, {name: "RabbitMQ", kind: "RabbitMQ"}})
	plain := allModes[0]
	s := scenario{id: 5, name: "fanout"}
	rs.add("Warren", 5, plain, value{key: "5", name: "fanout", metric: "msg/s", higher: true, v: 300})
	rs.add("RabbitMQ", 5, plain, value{key: "5", name: "fanout", metric: "msg/s", higher: true, v: 100})
	r := rs.byKey["5"]
	if x, ok := rs.ratio(r, "RabbitMQ"); !ok || x != 3 {
		t.Fatalf("ratio %v %v, want 3", x, ok)
	}
	rs.fail("Warren", s, "plain", perf.ErrCheckFailed)
	if _, ok := rs.ratio(r, "RabbitMQ"); ok {
		t.Fatal("a ratio for a run that lost messages")
	}
	if c := rs.cell(r, "Warren"); c != "FAILED" {
		t.Fatalf("cell %q", c)
	}
	if !rs.failed() {
		t.Fatal("the suite would exit 0")
	}
	// a scenario that failed before producing any row still gets one
	rs.fail("RabbitMQ", scenario{id: 12, name: "backlog"}, "plain", errors.New("x"))
	if r := rs.byKey["12"]; r == nil || rs.cell(r, "RabbitMQ") != "FAILED" {
		t.Fatalf("no FAILED row for scenario 12: %+v", rs.byKey["12"])
	}
}

// RabbitMQ-only variant rows (the lazy and v2 backlog queues) are
// compared with Warren's figure of their base row.
func TestVariantRowsUseTheBaseWarrenFigure(t *testing.T) {
	rs := newResults([]*broker{{name: "Warren", kind: "Warren"}, {name: "RabbitMQ", kind: "RabbitMQ"}})
	plain := allModes[0]
	rs.add("Warren", 12, plain, value{key: "14", metric: "MiB", v: 50})
	rs.add("RabbitMQ", 12, plain, value{key: "14", metric: "MiB", v: 500})
	rs.add("RabbitMQ", 12, plain, value{key: "14 lazy", base: "14", metric: "MiB", v: 200})
	if x, ok := rs.ratio(rs.byKey["14 lazy"], "RabbitMQ"); !ok || x != 4 {
		t.Fatalf("lazy row ratio %v %v, want 200/50 = 4", x, ok)
	}
}

// The durability scenarios' check: a confirmed message not drained fails.
func TestCheckTrackerFailsOnLoss(t *testing.T) {
	tr := perf.NewTracker()
	for i := uint32(0); i < 10; i++ {
		tr.Sent(3, i)
		if i != 4 {
			tr.Received(3, i)
		}
	}
	if err := checkTracker(tr, 1); !errors.Is(err, perf.ErrCheckFailed) || !strings.Contains(err.Error(), "1 confirmed messages lost") {
		t.Fatalf("checkTracker: %v", err)
	}
	tr.Received(3, 4)
	if err := checkTracker(tr, 1); err != nil {
		t.Fatal(err)
	}
}

func TestParseModes(t *testing.T) {
	if _, err := parseModes("pinned,plain"); err == nil {
		t.Error("modes not starting with plain accepted")
	}
	if _, err := parseModes("plain,fast"); err == nil {
		t.Error("an unknown mode accepted")
	}
	ms, err := parseModes("plain, raw-pinned")
	if err != nil || len(ms) != 2 || !ms[1].raw || !ms[1].pinned {
		t.Fatalf("%v %+v", err, ms)
	}
}
