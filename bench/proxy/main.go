// Command proxy measures direct vs warren-proxy vs HAProxy (Debian
// haproxy) on loopback in one run: bytes/s over 1 and 16 connections and
// the connection rate (connect, small echo, close), with the CPU seconds
// each proxy used. HAProxy runs twice: plain (it copies through user
// space) and with `option splice-auto` (kernel splice, as warren-proxy's
// io.Copy between TCP connections does), and both are printed.
// Run: go run ./bench/proxy [-d 5s]
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var dur = flag.Duration("d", 5*time.Second, "duration of each measurement")

func main() {
	flag.Parse()
	tmp, _ := os.MkdirTemp("", "proxy-bench-")
	defer os.RemoveAll(tmp)
	// backend: discards what it reads; echoes one line for the rate test
	sink, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, 64<<10)
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if n > 0 && buf[0] == 'E' { // echo mode
					c.Write(buf[:n])
					return
				}
				io.CopyBuffer(io.Discard, c, buf)
			}(c)
		}
	}()
	backend := sink.Addr().String()
	wp, hp, hsp := freePort(), freePort(), freePort()
	cfg := func(port int, extra string) string {
		return fmt.Sprintf("global\n  maxconn 4096\ndefaults\n  mode tcp\n%s  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\nlisten bench\n  bind 127.0.0.1:%d\n  balance roundrobin\n  server s1 %s\n", extra, port, backend)
	}
	os.WriteFile(filepath.Join(tmp, "w.cfg"), []byte(cfg(wp, "")), 0o644)
	os.WriteFile(filepath.Join(tmp, "h.cfg"), []byte(cfg(hp, "")), 0o644)
	os.WriteFile(filepath.Join(tmp, "hs.cfg"), []byte(cfg(hsp, "  option splice-auto\n")), 0o644)
	wbin := filepath.Join(tmp, "warren-proxy")
	if out, err := exec.Command("go", "build", "-o", wbin, "./cmd/warren-proxy").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v %s\n", err, out)
		os.Exit(1)
	}
	targets := []struct {
		name string
		addr string
		pid  int
	}{{"direct", backend, 0}}
	w := exec.Command(wbin, "-db", "-q", "-f", filepath.Join(tmp, "w.cfg"))
	w.Stdout = io.Discard
	if err := w.Start(); err == nil {
		defer func() { w.Process.Kill(); w.Wait() }()
		waitPort(wp)
		targets = append(targets, struct {
			name string
			addr string
			pid  int
		}{"warren-proxy", fmt.Sprintf("127.0.0.1:%d", wp), w.Process.Pid})
	}
	if hb, err := exec.LookPath("haproxy"); err == nil {
		for _, v := range []struct {
			name, cfg string
			port      int
		}{{"haproxy", "h.cfg", hp}, {"haproxy splice-auto", "hs.cfg", hsp}} {
			h := exec.Command(hb, "-db", "-f", filepath.Join(tmp, v.cfg))
			if err := h.Start(); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", v.name, err)
				continue
			}
			defer func() { h.Process.Kill(); h.Wait() }()
			waitPort(v.port)
			targets = append(targets, struct {
				name string
				addr string
				pid  int
			}{v.name, fmt.Sprintf("127.0.0.1:%d", v.port), h.Process.Pid})
		}
	} else {
		fmt.Fprintln(os.Stderr, "haproxy not installed (apt-get install haproxy): its columns are skipped")
	}
	fmt.Printf("| target | MB/s 1 conn | MB/s 16 conns | conn/s | proxy CPU s |\n|---|---|---|---|---|\n")
	res := map[string][3]float64{}
	for _, t := range targets {
		c0 := cpu(t.pid)
		a := throughput(t.addr, 1)
		b := throughput(t.addr, 16)
		r := connRate(t.addr)
		res[t.name] = [3]float64{a, b, r}
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.2f |\n", t.name, a, b, r, cpu(t.pid)-c0)
	}
	if w, ok := res["warren-proxy"]; ok {
		for _, hn := range []string{"haproxy", "haproxy splice-auto"} {
			if h, ok := res[hn]; ok {
				fmt.Printf("\nwarren-proxy / %s: 1 conn %.2fx, 16 conns %.2fx, conn/s %.2fx\n", hn, w[0]/h[0], w[1]/h[1], w[2]/h[2])
			}
		}
	}
}

func freePort() int {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitPort(p int) {
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cpu(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100
}

func throughput(addr string, conns int) float64 {
	var total atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(*dur)
	buf := make([]byte, 256<<10)
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			c.Write([]byte("D"))
			for time.Now().Before(deadline) {
				n, err := c.Write(buf)
				total.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(total.Load()) / dur.Seconds() / 1e6
}

func connRate(addr string) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(*dur)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 16)
			for time.Now().Before(deadline) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					continue
				}
				c.Write([]byte("Echo\n"))
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Read(b); err == nil {
					n.Add(1)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / dur.Seconds()
}
