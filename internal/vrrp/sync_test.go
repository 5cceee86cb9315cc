package vrrp

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func (f *fakeNet) holdsAddr(ip string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.vips[ip]
}

// notifyLog records the notify scripts a daemon runs.
type notifyLog struct {
	mu    sync.Mutex
	calls []string
}

func (n *notifyLog) run(cmdline string, args ...string) {
	n.mu.Lock()
	n.calls = append(n.calls, strings.Join(append([]string{cmdline}, args...), " "))
	n.mu.Unlock()
}

func (n *notifyLog) has(call string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Contains(n.calls, call)
}

func (n *notifyLog) reset() {
	n.mu.Lock()
	n.calls = nil
	n.mu.Unlock()
}

func vipOf(addr string) VIP {
	_, n, _ := net.ParseCIDR(addr + "/24")
	return VIP{Addr: net.ParseIP(addr), Net: &net.IPNet{IP: net.ParseIP(addr), Mask: n.Mask}}
}

func instance(name string, vrid, prio int, state State, vip string) *Instance {
	return &Instance{Name: name, State: state, Interface: "eth0", VRID: vrid, Priority: prio, AdvertInt: time.Second, Version: 2,
		AuthType: "PASS", AuthPass: "1111", VIPs: []VIP{vipOf(vip)}}
}

// syncConfig: instances VI_1 (VRID 66, 10.77.8.66) and VI_2 (VRID 67,
// 10.77.8.67) in sync group G1 with notify scripts; VI_1 tracks the
// script chk (weight -20: ignored in a sync group) when flag is set.
func syncConfig(prio int, state State, flag string) *Config {
	cfg := &Config{Version: 2, GarpRepeat: 1, Scripts: map[string]*Script{}, Instances: []*Instance{
		instance("VI_1", 66, prio, state, "10.77.8.66"),
		instance("VI_2", 67, prio, state, "10.77.8.67"),
	}, SyncGroups: []*SyncGroup{{Name: "G1", Group: []string{"VI_1", "VI_2"},
		NotifyMaster: "/n/master", NotifyBackup: "/n/backup", NotifyFault: "/n/fault", NotifyStop: "/n/stop", Notify: "/n/notify"}}}
	if flag != "" {
		cfg.Scripts["chk"] = &Script{Name: "chk", Command: "test -e " + flag, Interval: time.Second, Weight: -20, Rise: 1, Fall: 1}
		cfg.Instances[0].Tracks = []Track{{Script: "chk"}}
	}
	return cfg
}

func (f *fakeNet) holdsBoth() bool { return f.holdsAddr("10.77.8.66") && f.holdsAddr("10.77.8.67") }
func (f *fakeNet) holdsNone() bool { return !f.holdsAddr("10.77.8.66") && !f.holdsAddr("10.77.8.67") }
func states(d *Daemon) string      { s := d.State(); return s["VI_1"] + "," + s["VI_2"] }
func groupState(d *Daemon) string  { return d.GroupState()["G1"] }

func startDaemon(t *testing.T, ctx context.Context, wg *sync.WaitGroup, cfg *Config, h *fakeNet) (*Daemon, *notifyLog) {
	t.Helper()
	d, err := NewDaemon(cfg, h, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n := &notifyLog{}
	d.RunNotify = n.run
	wg.Add(1)
	go func() { defer wg.Done(); d.Run(ctx) }()
	return d, n
}

// TestSyncGroupFault: host a (priority 100) and host b (90) each run a
// sync group of two instances. When a's VI_1 track script fails (its
// weight -20 would leave a at 80 < 90, but in a sync group any failure is
// FAULT), both of a's instances go to FAULT and b takes both VIPs; when
// the script recovers, a takes both back together.
func TestSyncGroupFault(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "alive")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		lan := &fakeLAN{}
		a, b := lan.host("10.77.8.1"), lan.host("10.77.8.2")
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		da, na := startDaemon(t, ctx, &wg, syncConfig(100, Master, flag), a)
		db, nb := startDaemon(t, ctx, &wg, syncConfig(90, Backup, ""), b)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if !a.holdsBoth() || !b.holdsNone() || states(da) != "MASTER,MASTER" || states(db) != "BACKUP,BACKUP" {
			t.Fatalf("after 5s: a %s b %s", states(da), states(db))
		}
		if groupState(da) != "MASTER" || !na.has("/n/master") || !na.has("/n/notify GROUP G1 MASTER 0") {
			t.Fatalf("a's group %s, notifies %q", groupState(da), na.calls)
		}
		// the --status-addr endpoint reports the same
		for path, want := range map[string]string{"/": `{"VI_1":"MASTER","VI_2":"MASTER"}`, "/sync_groups": `{"G1":"MASTER"}`} {
			rec := httptest.NewRecorder()
			da.StatusHandler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			if got := strings.TrimSpace(rec.Body.String()); got != want || rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("status %s: %s", path, got)
			}
		}
		if groupState(db) != "BACKUP" || !nb.has("/n/backup") || !nb.has("/n/notify GROUP G1 BACKUP 0") || nb.has("/n/notify GROUP G1 MASTER 0") {
			t.Fatalf("b's group %s, notifies %q", groupState(db), nb.calls)
		}
		na.reset()
		nb.reset()
		os.Remove(flag) // VI_1's check fails on a
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if states(da) != "FAULT,FAULT" || !a.holdsNone() {
			t.Fatalf("a after its VI_1 check failed: %s (holds .66 %v .67 %v)", states(da), a.holdsAddr("10.77.8.66"), a.holdsAddr("10.77.8.67"))
		}
		if groupState(da) != "FAULT" || !na.has("/n/fault") || !na.has("/n/notify GROUP G1 FAULT 0") || na.has("/n/master") {
			t.Fatalf("a's group %s, notifies %q", groupState(da), na.calls)
		}
		// a's FAULT sent priority 0 on both: b takes over after Skew_Time
		if states(db) != "MASTER,MASTER" || !b.holdsBoth() || !nb.has("/n/notify GROUP G1 MASTER 0") {
			t.Fatalf("b: %s, notifies %q", states(db), nb.calls)
		}
		os.WriteFile(flag, nil, 0o644) // recovered: a preempts with both
		time.Sleep(8 * time.Second)
		synctest.Wait()
		if states(da) != "MASTER,MASTER" || !a.holdsBoth() || states(db) != "BACKUP,BACKUP" || !b.holdsNone() {
			t.Fatalf("after recovery: a %s b %s", states(da), states(db))
		}
		if dump := da.Dump(); !strings.Contains(dump, "VRRP Sync Group = G1, MASTER\n   monitor = VI_1 (MASTER)\n   monitor = VI_2 (MASTER)\n") {
			t.Fatalf("dump:\n%s", dump)
		}
		cancel()
		wg.Wait()
		if !na.has("/n/stop") || !na.has("/n/notify GROUP G1 STOP 0") {
			t.Fatalf("no STOP notifies for the group: %q", na.calls)
		}
	})
}

// TestSyncGroupFollowsBackup: a's sync group holds both VIPs; host c
// appears with a plain VI_1 (no group) at priority 150. a's VI_1 goes
// BACKUP, and so does its VI_2 although nobody else serves VRID 67: a
// group member becomes MASTER only when all members want to (keepalived
// prefers BACKUP to thrashing).
func TestSyncGroupFollowsBackup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lan := &fakeLAN{}
		a := lan.host("10.77.8.1")
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		da, na := startDaemon(t, ctx, &wg, syncConfig(100, Master, ""), a)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if !a.holdsBoth() || groupState(da) != "MASTER" {
			t.Fatalf("a alone: %s, group %s", states(da), groupState(da))
		}
		na.reset()
		c := lan.host("10.77.8.3")
		cfg := &Config{Version: 2, GarpRepeat: 1, Scripts: map[string]*Script{}, Instances: []*Instance{instance("VI_1", 66, 150, Backup, "10.77.8.66")}}
		dc, _ := startDaemon(t, ctx, &wg, cfg, c)
		time.Sleep(5 * time.Second) // c's Master_Down_Interval, then preemption
		synctest.Wait()
		if dc.State()["VI_1"] != "MASTER" || !c.holdsAddr("10.77.8.66") {
			t.Fatalf("c: %v", dc.State())
		}
		if states(da) != "BACKUP,BACKUP" || !a.holdsNone() || groupState(da) != "BACKUP" {
			t.Fatalf("a after a higher priority VI_1 appeared: %s (group %s)", states(da), groupState(da))
		}
		if !na.has("/n/backup") || !na.has("/n/notify GROUP G1 BACKUP 0") {
			t.Fatalf("a's notifies %q", na.calls)
		}
		// VI_2 hears nobody, but stays BACKUP with its group
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if states(da) != "BACKUP,BACKUP" || !a.holdsNone() {
			t.Fatalf("a after 20s more: %s", states(da))
		}
		// c leaves: a's members both want MASTER again and go together
		c.cut()
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if states(da) != "MASTER,MASTER" || !a.holdsBoth() {
			t.Fatalf("a after c left: %s", states(da))
		}
	})
}

// TestNotifyScriptArguments runs real notify scripts: keepalived's
// arguments for a sync group's generic notify script (GROUP NAME STATE 0,
// after the configured ones) and the notify_<state> script alone.
func TestNotifyScriptArguments(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" > \"$OUT_DIR/$1.$4.out\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OUT_DIR", dir)
	cfg := syncConfig(100, Master, "")
	g := cfg.SyncGroups[0]
	g.Notify = script + " custom"
	g.NotifyMaster = "touch " + filepath.Join(dir, "master.done")
	cfg.Instances[0].Notify = script + " custom"
	d, err := NewDaemon(cfg, (&fakeLAN{}).host("10.77.8.1"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var l *loop
	for _, x := range d.loops {
		if x.group != nil {
			l = x
		}
	}
	if l == nil || len(l.runners) != 2 {
		t.Fatal("VI_1 and VI_2 do not share a loop")
	}
	l.groupNotify("MASTER")
	l.runners[0].notify("BACKUP", "")
	want := map[string]string{
		"custom.MASTER.out": "custom GROUP G1 MASTER 0", // $1=custom $4=MASTER
		"custom.BACKUP.out": "custom INSTANCE VI_1 BACKUP 100",
		"master.done":       "",
	}
	deadline := time.Now().Add(5 * time.Second)
	for name, content := range want {
		for {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil && strings.TrimSpace(string(b)) == content {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %q, %v; want %q", name, b, err, content)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
