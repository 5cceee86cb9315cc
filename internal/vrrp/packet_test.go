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
	f.Add(b2)
	f.Add(b3)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Unmarshal(data, net.IPv4(10, 77, 8, 9), net.IPv4(224, 0, 0, 18))
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
