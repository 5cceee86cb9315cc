package perf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// NullSink is a stand-in AMQP 0-9-1 server that accepts publishes and
// discards them: it answers the handshake, Channel.Open and
// Confirm.Select, confirms every publish (one multiple ack per read), and
// does nothing else. Publishing to it measures what the load generator
// itself costs per message, with no broker behind it.
//
//	s, _ := perf.NewNullSink()
//	defer s.Close()
//	perf.Run(ctx, perf.Config{URIs: []string{s.URI()}, Producers: 1, Consumers: 0, Duration: 5 * time.Second}, os.Stdout)
type NullSink struct {
	ln        net.Listener
	published atomic.Uint64
	wg        sync.WaitGroup
}

// NewNullSink listens on a loopback port.
func NewNullSink() (*NullSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &NullSink{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
			}()
		}
	}()
	return s, nil
}

// URI is the sink's AMQP URI.
func (s *NullSink) URI() string { return "amqp://guest:guest@" + s.ln.Addr().String() + "/" }

// Published is how many Basic.Publish the sink has read.
func (s *NullSink) Published() uint64 { return s.published.Load() }

// Close stops accepting; connections end when their clients close.
func (s *NullSink) Close() error { return s.ln.Close() }

func (s *NullSink) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 256<<10)
	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := c.Write(b)
		return err
	}
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return
	}
	start := []byte{0, 9}
	start = binary.BigEndian.AppendUint32(start, 0) // no server properties
	start = longstr(start, "PLAIN")
	start = longstr(start, "en_US")
	tune := binary.BigEndian.AppendUint16(nil, 2047)
	tune = binary.BigEndian.AppendUint32(tune, 131072)
	tune = binary.BigEndian.AppendUint16(tune, 0)
	if write(appendMethodFrame(appendMethodFrame(nil, 0, 10, 10, start), 0, 10, 30, tune)) != nil {
		return
	}
	// heartbeats, in case the client asked for them
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if write([]byte{frameHeartbeat, 0, 0, 0, 0, 0, 0, frameEnd}) != nil {
					return
				}
			}
		}
	}()
	confirming := map[uint16]bool{}
	tags := map[uint16]uint64{}
	acked := map[uint16]uint64{}
	for {
		f, err := readFrame(r)
		if err != nil {
			return
		}
		cl, m := f.method()
		var out []byte
		switch {
		case cl == 10 && m == 40: // Connection.Open
			out = appendMethodFrame(nil, 0, 10, 41, shortstr(nil, ""))
		case cl == 10 && m == 50: // Connection.Close
			write(appendMethodFrame(nil, 0, 10, 51, nil))
			return
		case cl == 20 && m == 10: // Channel.Open
			out = appendMethodFrame(nil, f.channel, 20, 11, longstr(nil, ""))
		case cl == 20 && m == 40: // Channel.Close
			out = appendMethodFrame(nil, f.channel, 20, 41, nil)
		case cl == 85 && m == 10: // Confirm.Select
			confirming[f.channel] = true
			if len(f.payload) < 5 || f.payload[4]&1 == 0 {
				out = appendMethodFrame(nil, f.channel, 85, 11, nil)
			}
		case cl == 60 && m == 40: // Basic.Publish
			s.published.Add(1)
			tags[f.channel]++
		}
		// once the client's writes are read, confirm them all at once
		if r.Buffered() == 0 {
			for ch := range confirming {
				if t := tags[ch]; t > acked[ch] {
					args := binary.BigEndian.AppendUint64(nil, t)
					out = appendMethodFrame(out, ch, 60, 80, append(args, 1))
					acked[ch] = t
				}
			}
		}
		if len(out) > 0 && write(out) != nil {
			return
		}
	}
}

const nullSinkEnv = "WARREN_PERF_SERVE_NULL_SINK"

// MaybeServeNullSink is for the top of a main that uses
// StartNullSinkProcess: in the child it starts, it serves a NullSink,
// prints its URI and exits when its stdin closes; elsewhere it returns.
func MaybeServeNullSink() {
	if os.Getenv(nullSinkEnv) != "1" {
		return
	}
	s, err := NewNullSink()
	if err != nil {
		fmt.Fprintln(os.Stderr, "null sink:", err)
		os.Exit(1)
	}
	fmt.Println(s.URI())
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// StartNullSinkProcess runs a NullSink in a child process (this program
// again, which must call MaybeServeNullSink first), so that this
// process's CPU time is the client's alone. stop ends the child.
func StartNullSinkProcess() (uri string, stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), nullSinkEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { in.Close(); cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("null sink process: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}
