package vrrp

import (
	"bytes"
	"encoding/hex"
	"go/build"
	"net"
	"strings"
	"testing"
	"time"
)

// Advertisements captured from Debian's keepalived 2.2.7 (state MASTER,
// VRID 66, priority 100, advert_int 1, VIP 10.77.8.66) on a veth pair
// between two namespaces; the first 20 bytes are the IPv4 header.
const (
	keepalivedV2 = "45c0002800010000ff70c83c0a4d0809e000001221426401010104ca0a4d08423131313100000000"
	keepalivedV3 = "45c0002000010000ff70c8440a4d0809e000001231426401006464e40a4d0842"
)

func ipPayload(t *testing.T, h string) (src, dst net.IP, ttl int, payload []byte) {
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return net.IP(b[12:16]), net.IP(b[16:20]), int(b[8]), b[20:]
}

func TestDecodeKeepalivedPackets(t *testing.T) {
	src, dst, ttl, v2 := ipPayload(t, keepalivedV2)
	if ttl != 255 || b(b2proto(keepalivedV2)) != Proto {
		t.Fatalf("ttl %d", ttl)
	}
	p, err := Unmarshal(v2, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 2 || p.VRID != 66 || p.Priority != 100 || p.Interval != time.Second || p.AuthType != AuthPass ||
		p.AuthData != PassAuth("1111") || len(p.IPs) != 1 || !p.IPs[0].Equal(net.ParseIP("10.77.8.66")) {
		t.Fatalf("v2 %+v", p)
	}
	// re-encoding gives keepalived's bytes exactly
	out, _ := p.Marshal(src, dst)
	if !bytes.Equal(out, v2) {
		t.Fatalf("v2 re-encoded:\n%x\n%x", out, v2)
	}
	src, dst, _, v3 := ipPayload(t, keepalivedV3)
	p, err = Unmarshal(v3, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 3 || p.VRID != 66 || p.Priority != 100 || p.Interval != time.Second || len(p.IPs) != 1 {
		t.Fatalf("v3 %+v", p)
	}
	out, _ = p.Marshal(src, dst)
	if !bytes.Equal(out, v3) {
		t.Fatalf("v3 re-encoded (pseudo-header checksum):\n%x\n%x", out, v3)
	}
	// a v3 checksum depends on the addresses
	if _, err := Unmarshal(v3, net.ParseIP("10.77.8.1"), dst); err != ErrChecksum {
		t.Fatalf("wrong source accepted: %v", err)
	}
}

func b2proto(h string) string { return h[18:20] }

func b(s string) int {
	x, _ := hex.DecodeString(s)
	return int(x[0])
}

func TestRejectsBadPackets(t *testing.T) {
	_, _, _, v2 := ipPayload(t, keepalivedV2)
	bad := append([]byte(nil), v2...)
	bad[2] = 99 // priority changed, checksum not
	if _, err := Unmarshal(bad, nil, nil); err != ErrChecksum {
		t.Fatalf("checksum: %v", err)
	}
	if _, err := Unmarshal(v2[:10], nil, nil); err != ErrShort {
		t.Fatalf("short: %v", err)
	}
	bad = append([]byte(nil), v2...)
	bad[0] = 0x41
	if _, err := Unmarshal(bad, nil, nil); err != ErrVersion {
		t.Fatalf("version: %v", err)
	}
	for i := range v2 {
		Unmarshal(v2[:i], nil, nil) // never panics
	}
}

func FuzzUnmarshal(f *testing.F) {
	b2, _ := hex.DecodeString(keepalivedV2[40:])
	b3, _ := hex.DecodeString(keepalivedV3[40:])
	b6, _ := hex.DecodeString(keepalivedV6[80:])
	f.Add(b2, false)
	f.Add(b3, false)
	f.Add(b6, true)
	f.Fuzz(func(t *testing.T, data []byte, v6 bool) {
		src, dst := net.IPv4(10, 77, 8, 9), net.IPv4(224, 0, 0, 18)
		if v6 {
			src, dst = net.ParseIP("fe80::a402:f9ff:feae:baee"), net.ParseIP(MulticastIPv6)
		}
		p, err := Unmarshal(data, src, dst)
		if err == nil && p == nil {
			t.Fatal("nil packet without error")
		}
	})
}

// TestImportsNoBrokerPackage enforces the architecture rule.
func TestImportsNoBrokerPackage(t *testing.T) {
	for _, dir := range []string{".", "netlink"} {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pkg.Imports {
			if strings.HasPrefix(imp, "github.com/warrenmq/warren/") && imp != "github.com/warrenmq/warren/internal/vrrp" {
				t.Errorf("%s imports %s; vrrp must not import broker packages", dir, imp)
			}
		}
	}
}

// keepalivedV6 is an advertisement captured from Debian's keepalived
// 2.2.7 (an IPv6 instance, so VRRPv3: VRID 66, priority 100, advert_int
// 1, VIPs fe80::66/64 and fd77:77::66/64) on a veth pair between two
// namespaces; the first 40 bytes are the IPv6 header (hop limit 255, next
// header 112, from the interface's link-local address to ff02::12).
const keepalivedV6 = "6c014bfe002870fffe80000000000000a402f9fffeaebaeeff020000000000000000000000000012" +
	"314264020064174dfe800000000000000000000000000066fd770077000000000000000000000066"

// handV6 was built by hand from RFC 5798 section 5.1/5.2 for a packet
// from fe80::1 to ff02::12: version 3, type 1, VRID 66, priority 100, two
// addresses, Max Adver Int 100 cs, checksum 0x6eec over the IPv6
// pseudo-header (RFC 8200 section 8.1: src, dst, length 40, next header
// 112), addresses fe80::66 and fd77:77::66.
const handV6 = "31426402" + "00646eec" + "fe800000000000000000000000000066" + "fd770077000000000000000000000066"

func TestIPv6Advertisements(t *testing.T) {
	raw, _ := hex.DecodeString(keepalivedV6)
	if raw[6] != Proto || raw[7] != 255 || int(raw[4])<<8|int(raw[5]) != len(raw)-40 {
		t.Fatalf("IPv6 header: next header %d hop limit %d", raw[6], raw[7])
	}
	src, dst, v6 := net.IP(raw[8:24]), net.IP(raw[24:40]), raw[40:]
	if !src.IsLinkLocalUnicast() || !dst.Equal(net.ParseIP(MulticastIPv6)) {
		t.Fatalf("addresses %s -> %s", src, dst)
	}
	vips := []net.IP{net.ParseIP("fe80::66"), net.ParseIP("fd77:77::66")}
	p, err := Unmarshal(v6, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 3 || p.VRID != 66 || p.Priority != 100 || p.Interval != time.Second || len(p.IPs) != 2 ||
		!p.IPs[0].Equal(vips[0]) || !p.IPs[1].Equal(vips[1]) {
		t.Fatalf("keepalived's IPv6 advert decoded as %+v", p)
	}
	out, err := p.Marshal(src, dst)
	if err != nil || !bytes.Equal(out, v6) {
		t.Fatalf("re-encoded (IPv6 pseudo-header checksum): %v\n%x\n%x", err, out, v6)
	}
	// the checksum covers the pseudo-header: another source fails it
	if _, err := Unmarshal(v6, net.ParseIP("fe80::1"), dst); err != ErrChecksum {
		t.Fatalf("wrong source accepted: %v", err)
	}

	hand, _ := hex.DecodeString(handV6)
	p = &Packet{Version: 3, VRID: 66, Priority: 100, Interval: time.Second, IPs: vips}
	out, err = p.Marshal(net.ParseIP("fe80::1"), dst)
	if err != nil || !bytes.Equal(out, hand) {
		t.Fatalf("hand-built vector: %v\n%x\n%x", err, out, hand)
	}
	q, err := Unmarshal(hand, net.ParseIP("fe80::1"), dst)
	if err != nil || len(q.IPs) != 2 || !q.IPs[1].Equal(vips[1]) {
		t.Fatalf("hand-built vector decoded: %+v %v", q, err)
	}
	// truncated: the address count says 2 addresses of 16 bytes
	if _, err := Unmarshal(hand[:39], net.ParseIP("fe80::1"), dst); err != ErrShort {
		t.Fatalf("short IPv6 advert: %v", err)
	}
	// VRRPv2 has no IPv6 (RFC 3768), nor can IPv4 addresses go over IPv6
	p.Version, p.Interval = 2, time.Second
	if _, err := p.Marshal(net.ParseIP("fe80::1"), dst); err != ErrFamily {
		t.Fatalf("v2 over IPv6: %v", err)
	}
	p.Version, p.IPs = 3, []net.IP{net.ParseIP("10.77.8.66")}
	if _, err := p.Marshal(net.ParseIP("fe80::1"), dst); err != ErrFamily {
		t.Fatalf("IPv4 address in an IPv6 advert: %v", err)
	}
	_, _, _, v2 := ipPayload(t, keepalivedV2)
	if _, err := Unmarshal(v2, net.ParseIP("fe80::1"), dst); err != ErrFamily {
		t.Fatalf("v2 over IPv6 decoded: %v", err)
	}
}
