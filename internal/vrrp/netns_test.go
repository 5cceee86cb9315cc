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

	"github.com/warrenmq/warren/internal/netlab"
	"github.com/warrenmq/warren/internal/testenv"
)

// Multi-host tests: hosts are network namespaces of a netlab lab (names
// unique per run, so two runs can share a machine) on one bridge,
// addresses 10.77.8.0/24 (or fd77:77::/64) only inside them. The lab is
// torn down after each test, ending only the processes inside it.

type lab struct {
	t     *testing.T
	net   *netlab.Lab
	bin   string
	dir   string
	hosts []string // wv1..wvn; the client host is wvc
}

// newLab makes hosts wv1..wvn with 10.77.8.i/24 on eth0, plus a client
// host wvc at 10.77.8.100.
func newLab(t *testing.T, n int) *lab { return buildLab(t, n, false) }

// buildLab makes the lab over IPv4 (10.77.8.i/24) or IPv6 (fd77:77::i/64,
// with DAD off and multicast snooping off on the bridge, and waiting for
// the link-local addresses every VRRPv3-over-IPv6 packet is sent from).
func buildLab(t *testing.T, n int, v6 bool) *lab {
	l := &lab{t: t, net: netlab.New(t, netlab.Options{IPv6: v6}), dir: t.TempDir()}
	l.bin = filepath.Join(l.dir, "warren-vrrp")
	if out, err := exec.Command("go", "build", "-o", l.bin, "github.com/warrenmq/warren/cmd/warren-vrrp").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	addr := func(i int) string {
		if v6 {
			return fmt.Sprintf("fd77:77::%d/64", i)
		}
		return fmt.Sprintf("10.77.8.%d/24", i)
	}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("wv%d", i)
		l.net.AddHost(name, addr(i))
		l.hosts = append(l.hosts, name)
	}
	l.net.AddHost("wvc", addr(100))
	return l
}

const vip = "10.77.8.66"

func (l *lab) conf(name, state string, prio int, advert string, version int, extra string) string {
	p := filepath.Join(l.dir, name+".conf")
	auth := "   authentication {\n       auth_type PASS\n       auth_pass 1111\n   }\n"
	if version == 3 {
		auth = ""
	}
	text := fmt.Sprintf(`global_defs {
   router_id %s
   vrrp_version %d
   vrrp_garp_master_delay 1
}
%s
vrrp_instance VI_1 {
   state %s
   interface eth0
   virtual_router_id 66
   priority %d
   advert_int %s
%s%s
   virtual_ipaddress {
       %s/24
   }
}
`, name, version, scriptBlock(extra), state, prio, advert, auth, instanceExtra(extra), vip)
	os.WriteFile(p, []byte(text), 0o644)
	return p
}

// extra is "script:<path>" (a track script checking a file), "nopreempt"
// or "track:<ifname>" (track_interface).
func scriptBlock(extra string) string {
	if f, ok := strings.CutPrefix(extra, "script:"); ok {
		return fmt.Sprintf("vrrp_script chk {\n   script \"/bin/test -e %s\"\n   interval 0.2\n   weight -20\n   fall 1\n   rise 1\n}\n", f)
	}
	return ""
}

func instanceExtra(extra string) string {
	switch {
	case strings.HasPrefix(extra, "script:"):
		return "   track_script {\n       chk\n   }\n"
	case extra == "nopreempt":
		return "   nopreempt\n"
	case strings.HasPrefix(extra, "unicast:"):
		ips := strings.Split(strings.TrimPrefix(extra, "unicast:"), ",")
		return "   unicast_src_ip " + ips[0] + "\n   unicast_peer {\n       " + ips[1] + "\n   }\n"
	case strings.HasPrefix(extra, "track:"):
		return "   track_interface {\n       " + strings.TrimPrefix(extra, "track:") + "\n   }\n"
	}
	return ""
}

type proc struct {
	cmd *exec.Cmd
	log string
}

func (l *lab) start(host, conf string) *proc {
	logf := filepath.Join(l.dir, host+".log")
	f, _ := os.OpenFile(logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	cmd := l.net.Command(host, l.bin, "-f", conf)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logf}
	l.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return p
}

func (l *lab) startKeepalived(host, conf string) *proc {
	testenv.NeedCommand(l.t, "keepalived", "apt-get install keepalived")
	logf := filepath.Join(l.dir, host+"-keepalived.log")
	f, _ := os.OpenFile(logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	cmd := l.net.Command(host, "keepalived", "-n", "-l", "-P", "-f", conf,
		"-p", filepath.Join(l.dir, host+".pid"), "-r", filepath.Join(l.dir, host+"-vrrp.pid"))
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logf}
	l.t.Cleanup(func() {
		// SIGTERM lets keepalived stop its VRRP child; then make sure
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return p
}

func (p *proc) signal(s syscall.Signal) {
	p.cmd.Process.Signal(s)
	p.cmd.Wait()
}

func (l *lab) holders() []string { return l.holdersOf("-4", vip) }

// holdersOf lists the hosts whose eth0 has addr (family "-4" or "-6").
func (l *lab) holdersOf(family, addr string) []string {
	var hs []string
	for _, h := range l.hosts {
		out, _ := exec.Command("ip", "-n", l.net.NS(h), family, "addr", "show", "dev", "eth0").Output()
		if strings.Contains(string(out), addr+"/") {
			hs = append(hs, h)
		}
	}
	return hs
}

// waitHolder waits until exactly host holds the VIP and returns how long.
func (l *lab) waitHolder(host string, limit time.Duration) time.Duration {
	return l.waitHolderAmong(host, limit, false)
}

// waitTakenBy waits until host holds the VIP; a SIGKILLed master (a dead
// host) may still have it configured, as with keepalived.
func (l *lab) waitTakenBy(host string, limit time.Duration) time.Duration {
	return l.waitHolderAmong(host, limit, true)
}

func (l *lab) waitHolderAmong(host string, limit time.Duration, others bool) time.Duration {
	l.t.Helper()
	start := time.Now()
	for {
		hs := l.holders()
		if len(hs) == 1 && hs[0] == host || others && contains(hs, host) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			logs := ""
			for _, h := range l.hosts {
				for _, suf := range []string{".log", "-keepalived.log"} {
					b, _ := os.ReadFile(filepath.Join(l.dir, h+suf))
					logs += "--- " + h + suf + "\n" + string(b)
				}
			}
			l.t.Fatalf("VIP holders %v, want only %s after %v\n%s", hs, host, limit, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answering checks the client reaches the VIP (ARP + ICMP).
func contains(xs []string, x string) bool {
	for _, e := range xs {
		if e == x {
			return true
		}
	}
	return false
}

func (l *lab) answering() bool {
	return l.net.Command("wvc", "ping", "-c", "1", "-W", "1", vip).Run() == nil
}

func TestKillMasterBackupTakesOver(t *testing.T) {
	l := newLab(t, 2)
	m := l.start("wv1", l.conf("wv1", "MASTER", 100, "1", 2, ""))
	l.start("wv2", l.conf("wv2", "BACKUP", 90, "1", 2, ""))
	l.waitHolder("wv1", 5*time.Second)
	time.Sleep(1500 * time.Millisecond) // the backup has heard adverts
	m.signal(syscall.SIGKILL)
	// Master_Down_Interval = 3*1s + (256-90)/256 s ≈ 3.65 s
	took := l.waitTakenBy("wv2", 6*time.Second)
	t.Logf("backup took the VIP %v after SIGKILL of the master", took)
	if _, err := exec.LookPath("ping"); err == nil && !l.answering() {
		t.Fatal("VIP not answering from the client after failover")
	}
}

func TestGracefulStopHandsOverQuickly(t *testing.T) {
	l := newLab(t, 2)
	m := l.start("wv1", l.conf("wv1", "MASTER", 100, "1", 2, ""))
	l.start("wv2", l.conf("wv2", "BACKUP", 90, "1", 2, ""))
	l.waitHolder("wv1", 5*time.Second)
	time.Sleep(1500 * time.Millisecond)
	m.signal(syscall.SIGTERM)
	// priority 0: the backup takes over after Skew_Time (≈0.65 s), not 3.65 s
	took := l.waitHolder("wv2", 2500*time.Millisecond)
	t.Logf("handover after graceful stop: %v", took)
}

func TestTrackScriptMovesVIPAndPreemptsBack(t *testing.T) {
	l := newLab(t, 2)
	flag := filepath.Join(l.dir, "proxy-alive")
	os.WriteFile(flag, nil, 0o644)
	l.start("wv1", l.conf("wv1", "MASTER", 100, "0.1", 3, "script:"+flag))
	l.start("wv2", l.conf("wv2", "BACKUP", 90, "0.1", 3, ""))
	l.waitHolder("wv1", 3*time.Second)
	os.Remove(flag) // "haproxy died": priority 100-20 = 80 < 90
	l.waitHolder("wv2", 3*time.Second)
	os.WriteFile(flag, nil, 0o644) // recovered: 100 > 90, preempt
	l.waitHolder("wv1", 3*time.Second)
}

func TestTrackInterfaceFault(t *testing.T) {
	l := newLab(t, 2)
	// a second interface on wv1 that the instance tracks
	l.net.IP("wv1", "link", "add", "trk0", "type", "veth", "peer", "name", "trk1")
	l.net.IP("wv1", "link", "set", "trk0", "up")
	l.net.IP("wv1", "link", "set", "trk1", "up")
	l.start("wv1", l.conf("wv1", "MASTER", 100, "0.1", 3, "track:trk0"))
	l.start("wv2", l.conf("wv2", "BACKUP", 90, "0.1", 3, ""))
	l.waitHolder("wv1", 3*time.Second)
	l.net.IP("wv1", "link", "set", "trk0", "down")
	l.waitHolder("wv2", 3*time.Second)
	l.net.IP("wv1", "link", "set", "trk0", "up")
	l.waitHolder("wv1", 3*time.Second)
}

func TestUnicastPeers(t *testing.T) {
	l := newLab(t, 2)
	m := l.start("wv1", l.conf("wv1", "MASTER", 100, "0.1", 3, "unicast:10.77.8.1,10.77.8.2"))
	l.start("wv2", l.conf("wv2", "BACKUP", 90, "0.1", 3, "unicast:10.77.8.2,10.77.8.1"))
	l.waitHolder("wv1", 3*time.Second)
	time.Sleep(500 * time.Millisecond)
	if hs := l.holders(); len(hs) != 1 || hs[0] != "wv1" {
		t.Fatalf("unicast adverts not heard: holders %v", hs)
	}
	m.signal(syscall.SIGTERM)
	l.waitHolder("wv2", 3*time.Second)
}

func TestNoPreemptKeepsVIP(t *testing.T) {
	l := newLab(t, 2)
	b := l.start("wv2", l.conf("wv2", "BACKUP", 90, "0.1", 3, "nopreempt"))
	_ = b
	l.waitHolder("wv2", 3*time.Second) // alone: it becomes master
	l.start("wv1", l.conf("wv1", "BACKUP", 100, "0.1", 3, "nopreempt"))
	time.Sleep(1500 * time.Millisecond)
	if hs := l.holders(); len(hs) != 1 || hs[0] != "wv2" {
		t.Fatalf("nopreempt: holders %v", hs)
	}
}

func TestFastFailoverV3(t *testing.T) {
	l := newLab(t, 2)
	m := l.start("wv1", l.conf("wv1", "MASTER", 100, "0.1", 3, ""))
	l.start("wv2", l.conf("wv2", "BACKUP", 90, "0.1", 3, ""))
	l.waitHolder("wv1", 3*time.Second)
	time.Sleep(500 * time.Millisecond)
	m.signal(syscall.SIGKILL)
	took := l.waitTakenBy("wv2", 2*time.Second)
	t.Logf("v3 advert_int 0.1: failover in %v", took)
}

func TestInteropWithKeepalived(t *testing.T) {
	l := newLab(t, 2)
	// keepalived is the backup; warren-vrrp the master, then the reverse
	kconf := l.conf("wv2", "BACKUP", 90, "1", 2, "")
	ka := l.startKeepalived("wv2", kconf)
	w := l.start("wv1", l.conf("wv1", "MASTER", 100, "1", 2, ""))
	l.waitHolder("wv1", 6*time.Second)
	time.Sleep(1500 * time.Millisecond)
	if hs := l.holders(); len(hs) != 1 {
		t.Fatalf("both claim the VIP: %v", hs)
	}
	w.signal(syscall.SIGTERM)
	took := l.waitHolder("wv2", 6*time.Second)
	t.Logf("keepalived took over from warren-vrrp (graceful stop) in %v", took)
	// warren-vrrp comes back with the higher priority and preempts keepalived
	l.start("wv1", l.conf("wv1", "BACKUP", 100, "1", 2, ""))
	l.waitHolder("wv1", 8*time.Second)
	// and the other way: keepalived master stops gracefully, warren backup takes over
	_ = ka
}

// TestFailoverFigures measures (it asserts nothing) the time from the
// master's death (SIGKILL and its link down, as a host that dies) to the
// VIP answering pings again from a client host, and the pings lost, for
// keepalived and warren-vrrp with the guide's settings (VRRPv2,
// advert_int 1), and both with VRRPv3 at advert_int 0.1 in the same
// namespaces. Run by bench/vrrp/run.sh (WARREN_VRRP_FIGURES=1).
func TestFailoverFigures(t *testing.T) {
	if os.Getenv("WARREN_VRRP_FIGURES") == "" {
		t.Skip("a measurement: set WARREN_VRRP_FIGURES=1 (bench/vrrp/run.sh)")
	}
	testenv.NeedCommand(t, "ping", "apt-get install iputils-ping")
	type row struct {
		name     string
		took     time.Duration
		lost, of int
	}
	var rows []row
	for _, tc := range []struct {
		name      string
		keepalive bool
		advert    string
		version   int
	}{{"keepalived, advert_int 1", true, "1", 2}, {"warren-vrrp, advert_int 1", false, "1", 2},
		{"keepalived v3, advert_int 0.1", true, "0.1", 3}, {"warren-vrrp v3, advert_int 0.1", false, "0.1", 3}} {
		for round := 0; round < 3; round++ {
			l := newLab(t, 2)
			var m *proc
			if tc.keepalive {
				m = l.startKeepalived("wv1", l.conf("wv1", "MASTER", 100, tc.advert, tc.version, ""))
				l.startKeepalived("wv2", l.conf("wv2", "BACKUP", 90, tc.advert, tc.version, ""))
			} else {
				m = l.start("wv1", l.conf("wv1", "MASTER", 100, tc.advert, tc.version, ""))
				l.start("wv2", l.conf("wv2", "BACKUP", 90, tc.advert, tc.version, ""))
			}
			l.waitHolder("wv1", 10*time.Second)
			time.Sleep(1500 * time.Millisecond)
			done := make(chan row)
			go func() {
				start := time.Now()
				lost, sent := 0, 0
				for time.Since(start) < 10*time.Second {
					sent++
					if l.net.Command("wvc", "ping", "-c", "1", "-W", "0.05", "-i", "0.05", vip).Run() == nil && time.Since(start) > 100*time.Millisecond {
						done <- row{tc.name, time.Since(start), lost, sent}
						return
					}
					lost++
				}
				done <- row{tc.name, -1, lost, sent}
			}()
			// the host dies: every process in its namespace at once, then its link
			l.net.KillHost("wv1")
			exec.Command("ip", "-n", l.net.NS("wv1"), "link", "set", "eth0", "down").Run()
			m.cmd.Wait()
			r := <-done
			rows = append(rows, r)
			l.net.Close()
		}
	}
	fmt.Printf("\n| setup | failover (kill to VIP answering) | pings lost (50 ms apart) |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %v | %d of %d |\n", r.name, r.took.Round(time.Millisecond), r.lost, r.of)
	}
}
