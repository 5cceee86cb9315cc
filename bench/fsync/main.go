// Command fsync measures how long fsync takes on a directory's disk for
// the write-ahead log's pattern: append 4 KiB, fsync, repeat. It prints
// the latency distribution that the consensus host's election timeout is
// chosen from (internal/consensus, Options.Tick and the tick counts).
//
//	go run ./bench/fsync -dir /work -n 2000
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the disk to measure")
	n := flag.Int("n", 2000, "appends (each followed by one fsync)")
	size := flag.Int("size", 4096, "bytes per append")
	flag.Parse()
	f, err := os.CreateTemp(*dir, "fsync-probe-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fsync: cannot create a file in", *dir, ":", err)
		os.Exit(1)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, *size)
	lat := make([]time.Duration, 0, *n)
	start := time.Now()
	for i := 0; i < *n; i++ {
		buf[0] = byte(i)
		if _, err := f.Write(buf); err != nil {
			fmt.Fprintln(os.Stderr, "fsync: write:", err)
			os.Exit(1)
		}
		t := time.Now()
		if err := f.Sync(); err != nil {
			fmt.Fprintln(os.Stderr, "fsync: sync:", err)
			os.Exit(1)
		}
		lat = append(lat, time.Since(t))
	}
	total := time.Since(start)
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	abs, _ := filepath.Abs(*dir)
	fmt.Printf("fsync of %d-byte appends on %s: n=%d in %v\n", *size, abs, len(lat), total.Round(time.Millisecond))
	fmt.Printf("p50=%v p90=%v p99=%v p99.9=%v max=%v\n", q(0.50), q(0.90), q(0.99), q(0.999), lat[len(lat)-1])
}
