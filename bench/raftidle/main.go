// Command raftidle measures what idle Raft groups cost: three consensus
// hosts in this process, connected over the TCP transport on loopback,
// run -groups groups that each span the three; once every group has a
// leader and had -settle to calm down, the hosts sit idle for -idle and
// the command reports, per node, CPU seconds per second (the process's
// CPU divided by three), Raft messages, frames (writes) and bytes sent
// per second. -old runs the settings from before quiescence (10 ms tick,
// a heartbeat every tick, no quiescence) for comparison.
//
//	go run ./bench/raftidle -groups 1000 -idle 10s
//	go run ./bench/raftidle -groups 1000 -idle 10s -old
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/warrenmq/warren/internal/consensus"
)

type nopFSM struct{}

func (nopFSM) Apply(uint64, []byte) any { return nil }

func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	groups := flag.Int("groups", 1000, "groups, each on all three nodes")
	idle := flag.Duration("idle", 10*time.Second, "how long to measure the idle cluster")
	settle := flag.Duration("settle", 3*time.Second, "wait after every group has a leader")
	old := flag.Bool("old", false, "settings before quiescence: 10 ms tick, heartbeat every tick, never quiet")
	dir := flag.String("dir", "", "data directory (default: a temporary one)")
	wait := flag.Duration("wait", 3*time.Minute, "measure anyway after this long without a leader in every group")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "raftidle-*")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	ids := []uint64{1, 2, 3}
	addrs := map[uint64]string{}
	for _, id := range ids {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		addrs[id] = ln.Addr().String()
		ln.Close()
	}
	lg := slog.New(slog.DiscardHandler)
	hosts := map[uint64]*consensus.Host{}
	trs := map[uint64]*consensus.TCPTransport{}
	for _, id := range ids {
		tr, err := consensus.ListenTCP(id, addrs[id], addrs, "bench", lg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		o := consensus.Options{ID: id, Dir: filepath.Join(*dir, fmt.Sprint(id)), Transport: tr}
		if *old {
			o.Tick, o.HeartbeatTicks, o.ElectionTicks, o.NoQuiesce = 10*time.Millisecond, 1, 10, true
		}
		h, err := consensus.Open(o)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		tr.Start(h)
		hosts[id], trs[id] = h, tr
		defer tr.Close()
		defer h.Close()
	}
	start := time.Now()
	for g := 1; g <= *groups; g++ {
		for _, id := range ids {
			if err := hosts[id].AddGroup(uint64(g), ids, nopFSM{}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
	led := 0
	for g := 1; g <= *groups; g++ {
		for hosts[1].Leader(uint64(g)) == 0 && time.Since(start) < *wait {
			time.Sleep(10 * time.Millisecond)
		}
		if hosts[1].Leader(uint64(g)) != 0 {
			led++
		}
	}
	elected := time.Since(start)
	time.Sleep(*settle)
	type snap struct {
		sent, ticks, wakes uint64
		awake              int64
		tr                 consensus.TransportStats
	}
	take := func() map[uint64]snap {
		m := map[uint64]snap{}
		for _, id := range ids {
			st := hosts[id].Stats()
			m[id] = snap{st.Sent, st.Ticks, st.Wakes, st.Awake, trs[id].Stats()}
		}
		return m
	}
	s0, c0, t0 := take(), cpu(), time.Now()
	time.Sleep(*idle)
	s1, c1, t1 := take(), cpu(), time.Now()
	secs := t1.Sub(t0).Seconds()
	mode := "quiescence (default settings)"
	if *old {
		mode = "old settings (10 ms tick, heartbeat every tick, no quiescence)"
	}
	fmt.Printf("raftidle: %d groups x 3 nodes over TCP loopback, %s; %d groups led after %v; idle %v\n", *groups, mode, led, elected.Round(time.Millisecond), t1.Sub(t0).Round(time.Millisecond))
	fmt.Printf("cpu per node: %.3f s/s (process %.3f s/s)\n", (c1-c0).Seconds()/secs/3, (c1-c0).Seconds()/secs)
	for _, id := range ids {
		a, b := s0[id], s1[id]
		fmt.Printf("node %d: %.0f msgs/s, %.0f frames/s, %.0f bytes/s, %.0f group ticks/s, %d groups awake, %.1f wake-ups/s\n", id,
			float64(b.sent-a.sent)/secs, float64(b.tr.Frames-a.tr.Frames)/secs, float64(b.tr.Bytes-a.tr.Bytes)/secs, float64(b.ticks-a.ticks)/secs,
			b.awake, float64(b.wakes-a.wakes)/secs)
	}
}
