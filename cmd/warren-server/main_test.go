package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warrenmq/warren/internal/wal"
)

// TestRepairWALFlag runs `warren-server --repair-wal DIR` on a log with a
// damaged middle segment: the node's log refuses to open before, opens
// after, and the damaged files are kept in a dated folder.
func TestRepairWALFlag(t *testing.T) {
	dir := t.TempDir()
	l, err := wal.Open(wal.Options{Dir: dir, SegmentSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := l.Append([]byte(strings.Repeat("m", 40))); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	b, _ := os.ReadFile(segs[1])
	b[20] ^= 0xff
	os.WriteFile(segs[1], b, 0o640)
	if _, err := wal.Open(wal.Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "--repair-wal "+dir) {
		t.Fatalf("Open over damage: %v", err)
	}
	var out bytes.Buffer
	if err := repair(dir, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "moved aside (nothing was deleted)") || !strings.Contains(out.String(), "records still readable") {
		t.Fatalf("report:\n%s", out.String())
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "damaged-*", "*.wal"))
	if len(aside) != len(segs)-1 {
		t.Fatalf("%d files aside, want %d", len(aside), len(segs)-1)
	}
	l, err = wal.Open(wal.Options{Dir: dir})
	if err != nil {
		t.Fatalf("log does not open after the repair: %v", err)
	}
	l.Close()
	if err := run([]string{"--repair-wal", filepath.Join(dir, "nope")}, &out); err == nil {
		t.Fatal("repair of a missing directory succeeded")
	}
}

// TestHelpShowsRealDefaults: -h shows the ports a node opens by default,
// not the internal "not given" marker.
func TestHelpShowsRealDefaults(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run -h: %v", err)
	}
	help := out.String()
	if strings.Contains(help, "(default -") {
		t.Errorf("a negative default in -h:\n%s", help)
	}
	for _, w := range []string{"(default 5672)", "(default 15672)", "(default 15692)", "(default 25673)"} {
		if !strings.Contains(help, w) {
			t.Errorf("-h lacks %s:\n%s", w, help)
		}
	}
}
