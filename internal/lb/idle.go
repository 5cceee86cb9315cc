package lb

import (
	"net"
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
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(step)
		defer t.Stop()
		lastC, _ := tcpBytes(client)
		lastS, _ := tcpBytes(server)
		seenC, seenS := time.Now(), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if n, ok := tcpBytes(client); ok && n != lastC {
					lastC, seenC = n, now
				}
				if n, ok := tcpBytes(server); ok && n != lastS {
					lastS, seenS = n, now
				}
				side := ""
				if clientTO > 0 && now.Sub(seenC) > clientTO {
					side = "client"
				} else if serverTO > 0 && now.Sub(seenS) > serverTO {
					side = "server"
				}
				if side != "" {
					onTimeout(side)
					client.Close()
					server.Close()
					return
				}
			}
		}
	}()
	return func() { close(done) }
}
