package vrrp

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeLAN connects fake hosts: a packet sent by one reaches every other
// connected host.
type fakeLAN struct {
	mu    sync.Mutex
	hosts []*fakeNet
}

type fakeNet struct {
	lan       *fakeLAN
	ip        net.IP
	in        chan Received
	mu        sync.Mutex
	vips      map[string]bool
	connected bool
	sent      []Received // every packet sent, with its addresses
}

func (l *fakeLAN) host(ip string) *fakeNet {
	addr := net.ParseIP(ip)
	if a4 := addr.To4(); a4 != nil {
		addr = a4
	}
	h := &fakeNet{lan: l, ip: addr, in: make(chan Received, 64), vips: map[string]bool{}, connected: true}
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	return h
}

func (f *fakeNet) Primary(string, bool) (net.IP, error) { return f.ip, nil }
func (f *fakeNet) Packets() <-chan Received             { return f.in }
func (f *fakeNet) GARP(string, net.IP) error            { return nil }

func (f *fakeNet) Send(_ string, src, dst net.IP, payload []byte) error {
	f.mu.Lock()
	up := f.connected
	f.sent = append(f.sent, Received{Payload: append([]byte(nil), payload...), Src: src, Dst: dst})
	f.mu.Unlock()
	if !up {
		return nil
	}
	f.lan.mu.Lock()
	defer f.lan.mu.Unlock()
	for _, h := range f.lan.hosts {
		h.mu.Lock()
		ok := h != f && h.connected
		h.mu.Unlock()
		if ok {
			select {
			case h.in <- Received{Payload: append([]byte(nil), payload...), Src: src, Dst: dst, TTL: 255}:
			default:
			}
		}
	}
	return nil
}

func (f *fakeNet) AddVIP(_ string, v VIP) error {
	f.mu.Lock()
	f.vips[v.Addr.String()] = true
	f.mu.Unlock()
	return nil
}

func (f *fakeNet) DelVIP(_ string, v VIP) error {
	f.mu.Lock()
	delete(f.vips, v.Addr.String())
	f.mu.Unlock()
	return nil
}

func (f *fakeNet) holds() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.vips["10.77.8.66"]
}

func (f *fakeNet) cut() {
	f.mu.Lock()
	f.connected = false
	f.mu.Unlock()
}

func testConfig(prio int, state State) *Config {
	_, n, _ := net.ParseCIDR("10.77.8.66/24")
	return &Config{Version: 2, GarpRepeat: 1, Scripts: map[string]*Script{}, Instances: []*Instance{{
		Name: "VI_1", State: state, Interface: "eth0", VRID: 66, Priority: prio, AdvertInt: time.Second, Version: 2,
		AuthType: "PASS", AuthPass: "1111", VIPs: []VIP{{Addr: net.ParseIP("10.77.8.66"), Net: n}},
	}}}
}

// TestDaemonTimersSynctest runs two daemons over a fake LAN in virtual
// time: the higher priority one becomes master; when it is cut off, the
// backup takes over after Master_Down_Interval (3s + skew), not before.
func TestDaemonTimersSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lan := &fakeLAN{}
		a, b := lan.host("10.77.8.1"), lan.host("10.77.8.2")
		log := slog.New(slog.DiscardHandler)
		da, err := NewDaemon(testConfig(100, Master), a, log)
		if err != nil {
			t.Fatal(err)
		}
		db, _ := NewDaemon(testConfig(90, Backup), b, log)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); da.Run(ctx) }()
		go func() { defer wg.Done(); db.Run(ctx) }()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if !a.holds() || b.holds() {
			t.Fatalf("after 5s: a=%v b=%v", a.holds(), b.holds())
		}
		a.cut() // the master host dies
		cutAt := time.Now()
		// Master_Down_Interval for priority 90 = 3s + 166/256 s ≈ 3.648s,
		// counted from the last advertisement b received (up to 1s before)
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		if b.holds() {
			t.Fatalf("backup took over after only %v", time.Since(cutAt))
		}
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if !b.holds() {
			t.Fatalf("backup did not take over within %v", time.Since(cutAt))
		}
		cancel()
		wg.Wait()
	})
}
