package vrrp_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// IPv6 multi-host tests: the same bridge layout as newLab, with
// fd77:77::i/64 on each host's eth0 (and the automatic link-local
// addresses), duplicate address detection off on the test interfaces.

const vip6 = "fd77:77::66"

func newLab6(t *testing.T, n int) *lab { return buildLab(t, n, true) }

func (l *lab) conf6(name, state string, prio int, advert string) string {
	p := filepath.Join(l.dir, name+".conf")
	text := fmt.Sprintf(`global_defs {
   router_id %s
   vrrp_garp_master_delay 1
}
vrrp_instance VI_6 {
   state %s
   interface eth0
   virtual_router_id 66
   priority %d
   advert_int %s
   virtual_ipaddress {
       %s/64
   }
}
`, name, state, prio, advert, vip6)
	os.WriteFile(p, []byte(text), 0o644)
	return p
}

func (l *lab) holders6() []string { return l.holdersOf("-6", vip6) }

func (l *lab) logs() string {
	logs := ""
	for _, h := range l.hosts {
		b, _ := os.ReadFile(filepath.Join(l.dir, h+".log"))
		logs += "--- " + h + ".log\n" + string(b)
	}
	return logs
}

// waitHolder6 waits until host holds the IPv6 VIP (alone unless others).
func (l *lab) waitHolder6(host string, limit time.Duration, others bool) time.Duration {
	l.t.Helper()
	start := time.Now()
	for {
		hs := l.holders6()
		if len(hs) == 1 && hs[0] == host || others && contains(hs, host) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			l.t.Fatalf("IPv6 VIP holders %v, want %s after %v\n%s", hs, host, limit, l.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping6 pings the IPv6 VIP from the client host until it answers, for
// at most limit.
func (l *lab) ping6(limit time.Duration) bool {
	start := time.Now()
	for time.Since(start) < limit {
		if l.net.Command("wvc", "ping", "-6", "-c", "1", "-W", "1", vip6).Run() == nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func (l *lab) mac(host string) string {
	t := l.t
	out := l.net.IP(host, "-o", "link", "show", "dev", "eth0")
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "link/ether" && i+1 < len(f) {
			return f[i+1]
		}
	}
	t.Fatalf("no MAC address for %s: %s", host, out)
	return ""
}

// TestIPv6KillMasterBackupTakesOver: two warren-vrrp hosts on an IPv6
// link (VRRPv3 to ff02::12 from the link-local addresses). The master
// host dies (SIGKILL, then its link goes down so it can no longer answer
// for the address); the backup takes the IPv6 VIP, and its unsolicited
// neighbour advertisement moves the client's neighbour entry at once, so
// ping -6 from the client answers again.
func TestIPv6KillMasterBackupTakesOver(t *testing.T) {
	_, err := exec.LookPath("ping")
	havePing := err == nil
	l := newLab6(t, 2)
	m := l.start("wv1", l.conf6("wv1", "MASTER", 100, "1"))
	l.start("wv2", l.conf6("wv2", "BACKUP", 90, "1"))
	l.waitHolder6("wv1", 5*time.Second, false)
	time.Sleep(1500 * time.Millisecond) // the backup has heard adverts
	if hs := l.holders6(); len(hs) != 1 || hs[0] != "wv1" {
		t.Fatalf("IPv6 adverts not heard: holders %v\n%s", hs, l.logs())
	}
	if havePing {
		if !l.ping6(3 * time.Second) {
			t.Fatalf("the IPv6 VIP does not answer the client before failover\n%s", l.logs())
		}
	} else {
		t.Log("ping not installed (apt-get install iputils-ping): the client's neighbour entry is set by hand")
		l.net.IP("wvc", "-6", "neigh", "replace", vip6, "lladdr", l.mac("wv1"), "dev", "eth0", "nud", "reachable")
	}
	neigh := l.net.IP("wvc", "-6", "neigh", "show", vip6)
	if !strings.Contains(neigh, l.mac("wv1")) {
		t.Fatalf("client's neighbour entry for the VIP %q is not wv1's MAC %s", neigh, l.mac("wv1"))
	}
	m.signal(syscall.SIGKILL)
	l.net.IP("wv1", "link", "set", "eth0", "down")
	// Master_Down_Interval = 3*1s + (256-90)/256 s ≈ 3.65 s
	took := l.waitHolder6("wv2", 6*time.Second, true)
	t.Logf("backup took the IPv6 VIP %v after SIGKILL of the master", took)
	// added without duplicate address detection (IFA_F_NODAD)
	if out := l.net.IP("wv2", "-6", "addr", "show", "dev", "eth0", "to", vip6+"/128"); !strings.Contains(out, "nodad") {
		t.Fatalf("the VIP was added with DAD: %s", out)
	}
	// the neighbour advertisement (sent with the address) replaced the
	// client's entry; without it the client would keep wv1's MAC for
	// its reachable time (about 30 s) before probing again
	want := l.mac("wv2")
	for i := 0; ; i++ {
		neigh = l.net.IP("wvc", "-6", "neigh", "show", vip6)
		if strings.Contains(neigh, want) {
			break
		}
		if i == 50 {
			t.Fatalf("client's neighbour entry for the VIP %q is not wv2's MAC %s 1s after the takeover\n%s", neigh, want, l.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if havePing && !l.ping6(3*time.Second) {
		t.Fatalf("the IPv6 VIP does not answer the client after failover\n%s", l.logs())
	}
}

// TestIPv6InteropWithKeepalived: warren-vrrp and keepalived share an IPv6
// virtual router. keepalived (backup) stays backup while warren-vrrp is
// master, so it accepts warren's adverts (checksum over the IPv6
// pseudo-header, link-local source, hop limit 255); it takes over when
// warren-vrrp stops gracefully; and warren-vrrp, back with a lower
// priority, stays backup, so it accepts keepalived's adverts too.
func TestIPv6InteropWithKeepalived(t *testing.T) {
	l := newLab6(t, 2)
	l.startKeepalived("wv2", l.conf6("wv2", "BACKUP", 90, "1"))
	w := l.start("wv1", l.conf6("wv1", "MASTER", 100, "1"))
	l.waitHolder6("wv1", 6*time.Second, false)
	time.Sleep(4500 * time.Millisecond) // past keepalived's Master_Down_Interval
	if hs := l.holders6(); len(hs) != 1 || hs[0] != "wv1" {
		b, _ := os.ReadFile(filepath.Join(l.dir, "wv2-keepalived.log"))
		t.Fatalf("keepalived does not accept warren-vrrp's IPv6 adverts: holders %v\n%s\n%s", hs, l.logs(), b)
	}
	w.signal(syscall.SIGTERM)
	took := l.waitHolder6("wv2", 3*time.Second, false)
	t.Logf("keepalived took the IPv6 VIP from warren-vrrp (graceful stop) in %v", took)
	l.start("wv1", l.conf6("wv1", "BACKUP", 80, "1"))
	time.Sleep(4500 * time.Millisecond) // past warren's Master_Down_Interval
	if hs := l.holders6(); len(hs) != 1 || hs[0] != "wv2" {
		t.Fatalf("warren-vrrp does not accept keepalived's IPv6 adverts: holders %v\n%s", hs, l.logs())
	}
}
