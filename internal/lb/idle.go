package lb

import (
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Idle timeouts (timeout client / timeout server) without giving up
// splice: a watcher samples each side's kernel byte counters (TCP_INFO
// bytes_received and bytes_acked) and closes the session when a side has
// been inactive for longer than its timeout, as HAProxy does.

func tcpBytes(c *net.TCPConn) (uint64, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var n uint64
	var ok bool
	rc.Control(func(fd uintptr) {
		if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n, ok = ti.Bytes_received+ti.Bytes_acked, true
		}
	})
	return n, ok
}

// watchIdle returns a stop function; it closes both connections when
// either side is idle past its timeout (0 disables that side).
func watchIdle(client, server *net.TCPConn, clientTO, serverTO time.Duration, onTimeout func(side string)) func() {
	if clientTO <= 0 && serverTO <= 0 {
		return func() {}
	}
	step := time.Second
	for _, d := range []time.Duration{clientTO, serverTO} {
		if d > 0 && d/4 < step {
			step = max(d/4, 10*time.Millisecond)
		}
	}
	// A timer, not a goroutine: short sessions end before it first fires,
	// so connection churn pays almost nothing for it.
	type state struct {
		mu           sync.Mutex
		stopped      bool
		lastC, lastS uint64
		seenC, seenS time.Time
		t            *time.Timer
	}
	// counters are first sampled when the timer fires (short sessions never
	// pay for the system calls); any bytes by then count as activity
	st := &state{seenC: time.Now(), seenS: time.Now()}
	var check func()
	check = func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.stopped {
			return
		}
		now := time.Now()
		if n, ok := tcpBytes(client); ok && n != st.lastC {
			st.lastC, st.seenC = n, now
		}
		if n, ok := tcpBytes(server); ok && n != st.lastS {
			st.lastS, st.seenS = n, now
		}
		side := ""
		if clientTO > 0 && now.Sub(st.seenC) > clientTO {
			side = "client"
		} else if serverTO > 0 && now.Sub(st.seenS) > serverTO {
			side = "server"
		}
		if side != "" {
			onTimeout(side)
			client.Close()
			server.Close()
			return
		}
		st.t.Reset(step)
	}
	st.mu.Lock()
	st.t = time.AfterFunc(step, check)
	st.mu.Unlock()
	return func() {
		st.mu.Lock()
		st.stopped = true
		st.t.Stop()
		st.mu.Unlock()
	}
}
