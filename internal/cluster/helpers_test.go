package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// logs records what a link logs, to check the messages a user sees.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logs) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitLog waits until the log holds s.
func (l *logs) waitLog(t *testing.T, who, s string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to log %q", who, s), func() bool { return strings.Contains(l.String(), s) })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testNode struct {
	*Link
	logs *logs
	name NodeName
	id   uint64
}

// fastConfig is a Config with short waits, listening on a free port of
// the loopback unless addr is given.
func fastConfig(name string, id uint64, cookie string) Config {
	return Config{
		Name: MustParseNodeName(name), ID: id, Cookie: []byte(cookie), Listen: "127.0.0.1:0",
		HandshakeTimeout: 2 * time.Second, MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Keepalive: 50 * time.Millisecond, DeadAfter: 5 * time.Second,
	}
}

func startNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	lg := &logs{}
	cfg.Logger = lg.logger()
	var l *Link
	var err error
	for range 100 { // a restarted node takes its old port back
		if l, err = Listen(cfg); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &testNode{Link: l, logs: lg, name: cfg.Name, id: cfg.ID}
}

func (n *testNode) entry() Peer {
	return Peer{ID: n.id, Name: n.name, Addr: n.Addr().String()}
}

// meet makes every node a peer of every other, telling each node of the
// nodes that dial it first.
func meet(t *testing.T, nodes ...*testNode) {
	t.Helper()
	for _, dials := range []bool{false, true} {
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b && (a.id < b.id) == dials {
					if err := a.AddPeer(b.entry()); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

func waitConnected(t *testing.T, a, b *testNode) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s and %s to connect", a.name, b.name), func() bool { return a.Connected(b.id) && b.Connected(a.id) })
}

// inbox collects the frames of one kind a node receives.
type inbox struct {
	mu     sync.Mutex
	frames []string
}

func (in *inbox) handler(from uint64, p []byte) {
	in.mu.Lock()
	in.frames = append(in.frames, fmt.Sprintf("%d:%s", from, p))
	in.mu.Unlock()
}

func (in *inbox) list() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.frames...)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
