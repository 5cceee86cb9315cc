package vrrp

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestParseIPv6Instance(t *testing.T) {
	cfg, err := parseText(t, `global_defs {
   vrrp_version 2
}
vrrp_instance VI_6 {
   interface eth0
   virtual_router_id 66
   version 2
   authentication {
       auth_type PASS
       auth_pass 1111
   }
   virtual_ipaddress {
       fd77:77::66
       fe80::66/64
   }
}
`)
	if err != nil {
		t.Fatal(err)
	}
	in := cfg.Instances[0]
	if !in.IPv6 || in.Version != 3 || in.AuthType != "" {
		t.Fatalf("IPv6 instance: IPv6=%v version %d auth %q", in.IPv6, in.Version, in.AuthType)
	}
	if ones, bits := in.VIPs[0].Net.Mask.Size(); ones != 128 || bits != 128 || in.VIPs[1].Net.String() != "fe80::66/64" {
		t.Fatalf("VIP masks %v %v", in.VIPs[0].Net, in.VIPs[1].Net)
	}
	w := strings.Join(cfg.Warnings, "\n")
	if !strings.Contains(w, "IPv6 needs VRRP version 3") || !strings.Contains(w, "no authentication") {
		t.Fatalf("warnings: %s", w)
	}

	_, err = parseText(t, "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 66\n virtual_ipaddress {\n  10.77.8.66/24\n  fd77:77::66/64\n }\n}\n")
	if err == nil || !strings.Contains(err.Error(), "keepalived.conf:6: vrrp_instance VI_1: virtual_ipaddress fd77:77::66 is IPv6 but the instance's first address 10.77.8.66 is IPv4") {
		t.Fatalf("mixed families: %v", err)
	}
	_, err = parseText(t, "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 66\n unicast_peer {\n  10.77.8.2\n }\n virtual_ipaddress {\n  fd77:77::66/64\n }\n}\n")
	if err == nil || !strings.Contains(err.Error(), "unicast_peer 10.77.8.2 is not IPv6") {
		t.Fatalf("IPv4 peer of an IPv6 instance: %v", err)
	}
}

// TestDaemonIPv6 drives an IPv6 instance over the fake LAN: it
// advertises VRRPv3 to ff02::12 from its link-local address with the
// link-local virtual address first, and ignores adverts with a hop limit
// other than 255 or from a non-link-local source (RFC 5798 5.1.2, 7.1).
func TestDaemonIPv6(t *testing.T) {
	cfg, err := parseText(t, "vrrp_instance VI_6 {\n state MASTER\n interface eth0\n virtual_router_id 66\n priority 100\n virtual_ipaddress {\n  fd77:77::66/64\n  fe80::66/64\n }\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		lan := &fakeLAN{}
		a := lan.host("fe80::1")
		d, err := NewDaemon(cfg, a, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); d.Run(ctx) }()
		defer wg.Wait()
		defer cancel()
		// "state MASTER" starts as BACKUP and takes over after
		// Master_Down_Interval (3 * 1 s + skew) with nobody else speaking
		time.Sleep(5 * time.Second) // master at ~3.6 s, adverts every 1 s
		synctest.Wait()
		if d.State()["VI_6"] != "MASTER" || !a.holdsAddr("fd77:77::66") || !a.holdsAddr("fe80::66") {
			t.Fatalf("state %v", d.State())
		}
		a.mu.Lock()
		sent := append([]Received(nil), a.sent...)
		a.mu.Unlock()
		if len(sent) < 2 {
			t.Fatalf("%d adverts sent", len(sent))
		}
		last := sent[len(sent)-1]
		p, err := Unmarshal(last.Payload, last.Src, last.Dst)
		if err != nil || !last.Src.Equal(net.ParseIP("fe80::1")) || !last.Dst.Equal(net.ParseIP(MulticastIPv6)) ||
			p.Version != 3 || len(p.IPs) != 2 || !p.IPs[0].Equal(net.ParseIP("fe80::66")) || !p.IPs[1].Equal(net.ParseIP("fd77:77::66")) {
			t.Fatalf("advert %s -> %s: %+v %v", last.Src, last.Dst, p, err)
		}
		higher := func(src string, hops int) {
			b, err := (&Packet{Version: 3, VRID: 66, Priority: 200, Interval: time.Second, IPs: p.IPs}).Marshal(net.ParseIP(src), last.Dst)
			if err != nil {
				t.Fatal(err)
			}
			a.in <- Received{Payload: b, Src: net.ParseIP(src), Dst: last.Dst, TTL: hops}
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
		}
		higher("fe80::2", 254)
		higher("fd77:77::2", 255)
		higher("10.77.8.2", 255) // not even IPv6
		if d.State()["VI_6"] != "MASTER" {
			t.Fatal("an advert with hop limit 254 or a non-link-local source was accepted")
		}
		higher("fe80::2", 255)
		if d.State()["VI_6"] != "BACKUP" || a.holdsAddr("fd77:77::66") {
			t.Fatalf("a valid higher priority IPv6 advert was ignored: %v", d.State())
		}
	})
}
