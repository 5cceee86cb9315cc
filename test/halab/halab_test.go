package halab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/testenv"
)

func TestMain(m *testing.M) {
	switch {
	case os.Getenv("HALAB_WORKLOAD") == "1":
		os.Exit(WorkloadMain())
	case os.Getenv("HALAB_HTTPGET") != "":
		os.Exit(HTTPGetMain())
	case os.Getenv("HALAB_DIAL") != "":
		c, err := net.DialTimeout("tcp", os.Getenv("HALAB_DIAL"), time.Second)
		if err != nil {
			os.Exit(1)
		}
		c.Close()
		os.Exit(0)
	}
	HandleSignals()
	code := m.Run()
	if built.Server != "" {
		os.RemoveAll(filepath.Dir(built.Server))
	}
	os.Exit(code)
}

func TestGeneratedConfigsKeepTheGuide(t *testing.T) {
	root := testenv.RepoRoot(t)
	h, err := GuideFile(root, "haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := ProxyConfig(h, ProxyOptions{Servers: []string{BrokerAddr(0), BrokerAddr(1)}, PidFile: "/x/proxy.pid"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pidfile /x/proxy.pid", "bind 0.0.0.0:5672", "server A " + BrokerAddr(0) + ":5672 check inter 5000 rise 2 fall 3",
		"server B " + BrokerAddr(1) + ":5672 check inter 5000 rise 2 fall 3", "balance roundrobin", "timeout client 30s", "stats uri /monitor"} {
		if !strings.Contains(pc, want) {
			t.Errorf("generated haproxy.cfg lacks %q:\n%s", want, pc)
		}
	}
	if strings.Contains(pc, "172.16.150") {
		t.Errorf("generated haproxy.cfg still has the guide's addresses:\n%s", pc)
	}
	k, err := GuideFile(root, "keepalived.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, master := range []bool{true, false} {
		vc, err := VRRPConfig(k, VRRPOptions{RouterID: "lb1", Master: master, Interface: "eth0", Script: "/x/check.sh"})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{`script "/x/check.sh"`, "interface eth0", VIP + "/24", "virtual_router_id 66", "advert_int 1", "weight -20", "auth_pass 1111", "interval 2"}
		if master {
			want = append(want, "state MASTER", "priority 100")
		} else {
			want = append(want, "state BACKUP", "priority 90")
		}
		for _, w := range want {
			if !strings.Contains(vc, w) {
				t.Errorf("generated keepalived.conf (master=%v) lacks %q:\n%s", master, w, vc)
			}
		}
		if strings.Contains(vc, "ens33") || strings.Contains(vc, "192.168.204") || strings.Contains(vc, "haproxy_check.sh") {
			t.Errorf("generated keepalived.conf keeps the guide's host-specific values:\n%s", vc)
		}
	}
}

// env checks what the lab needs and builds the binaries once.
var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

func setup(t *testing.T, stack string) (Binaries, string) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "apt-get install iproute2")
	if stack != "" && stack != "warren" {
		if stack == "rabbitmq" {
			testenv.NeedCommand(t, "rabbitmq-server", "apt-get install rabbitmq-server")
			testenv.NeedCommand(t, "haproxy", "apt-get install haproxy")
			testenv.NeedCommand(t, "keepalived", "apt-get install keepalived")
			testenv.NeedFile(t, rabbitBin+"rabbitmq-server", "Debian's rabbitmq-server package keeps its scripts there")
		} else {
			t.Fatalf("STACK=%s: unknown stack (warren or rabbitmq)", stack)
		}
	}
	root := testenv.RepoRoot(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "halab-bin-")
		if err != nil {
			buildErr = err
			return
		}
		onSignal(func() { os.RemoveAll(dir) })
		built, buildErr = BuildBinaries(root, dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built, root
}

func runFault(t *testing.T, bin Binaries, root string, f Fault) Result {
	t.Helper()
	res := Result{Fault: f}
	l := New(t, bin, root, f.Opts)
	w := l.StartWorkload("halab-" + f.ID)
	time.Sleep(f.Warmup)
	res.Note = f.Inject(l)
	time.Sleep(f.Settle)
	res.Report, res.Err = l.StopWorkload(w)
	if res.Err == nil && res.Report.Confirmed == 0 {
		res.Err = fmt.Errorf("no message was confirmed at all; logs:\n%s", l.Logs())
	}
	if res.Err == nil && res.Report.Lost > 0 && !f.Known {
		t.Logf("lost %d confirmed messages (e.g. %v); logs:\n%s", res.Report.Lost, res.Report.LostSample, l.Logs())
	}
	return res
}

// runSub runs one fault and appends its row; a lab that fails to come up
// (t.Fatal) still gets a row.
func runSub(t *testing.T, bin Binaries, root string, f Fault, rs *[]Result) {
	done := false
	defer func() {
		if !done {
			*rs = append(*rs, Result{Fault: f, Err: fmt.Errorf("the lab failed (see the test log)")})
		}
	}()
	r := runFault(t, bin, root, f)
	*rs = append(*rs, r)
	done = true
}

func check(t *testing.T, rs []Result) {
	t.Helper()
	fmt.Print("\n" + Table(rs))
	for _, f := range Failures(rs) {
		t.Error(f)
	}
}

// TestShort is the short version for `go test`/`make test`: faults 1 and
// 2 once, Warren stack, one broker node; zero confirmed messages lost.
func TestShort(t *testing.T) {
	if os.Getenv("HALAB_FULL") != "" {
		t.Skip("HALAB_FULL set: TestFull runs the whole list")
	}
	bin, root := setup(t, "warren")
	var rs []Result
	for _, f := range Faults() {
		if f.ID != "1" && f.ID != "2" {
			continue
		}
		t.Run("fault"+f.ID, func(t *testing.T) { runSub(t, bin, root, f, &rs) })
	}
	check(t, rs)
}

// TestFull runs the whole fault list (make halab; HALAB_FULL=1).
func TestFull(t *testing.T) {
	if os.Getenv("HALAB_FULL") == "" {
		t.Skip("the full fault list runs with HALAB_FULL=1 (make halab)")
	}
	stack := os.Getenv("STACK")
	bin, root := setup(t, stack)
	t.Logf("stack: %s", stack)
	var rs []Result
	for _, f := range Faults() {
		f = f.ForStack(stack)
		if only := os.Getenv("HALAB_FAULTS"); only != "" && !strings.Contains(","+only+",", ","+f.ID+",") {
			continue
		}
		if f.NotYet != "" {
			rs = append(rs, Result{Fault: f})
			continue
		}
		t.Run("fault"+f.ID, func(t *testing.T) { runSub(t, bin, root, f, &rs) })
	}
	check(t, rs)
}

// The checker counts from what was recorded: lost is confirmed and never
// delivered, duplicates are deliveries beyond the first, gaps span the
// window's edges.
func TestChecker(t *testing.T) {
	r := newRecorder()
	t0 := time.Unix(1000, 0)
	for n := uint64(1); n <= 5; n++ {
		r.confirmed[n] = true
		r.pubTimes = append(r.pubTimes, t0.Add(time.Duration(n)*time.Second))
	}
	r.sent = 7 // 6 and 7 never confirmed
	r.delivered[1], r.delivered[2], r.delivered[4], r.delivered[6] = 1, 3, 1, 1
	r.delTimes = []time.Time{t0.Add(2 * time.Second), t0.Add(9 * time.Second)}
	r.failed = 4
	rep := r.report(t0, t0.Add(10*time.Second))
	want := Report{Confirmed: 5, Delivered: 4, Lost: 2, Duplicated: 2, Unconfirmed: 2, FailedConnects: 4,
		PublishGap: 5 * time.Second, DeliveryGap: 7 * time.Second, LostSample: []uint64{3, 5}}
	if fmt.Sprint(rep) != fmt.Sprint(want) {
		t.Fatalf("report\n got %+v\nwant %+v", rep, want)
	}
	ok := Result{Fault: Fault{ID: "1"}, Report: Report{Confirmed: 3}}
	known := Result{Fault: Fault{ID: "rr3", Known: true}, Report: Report{Confirmed: 3, Lost: 2}}
	lost := Result{Fault: Fault{ID: "2"}, Report: Report{Confirmed: 3, Lost: 1}}
	notYet := Result{Fault: Fault{ID: "5", NotYet: "later"}}
	if f := Failures([]Result{ok, known, notYet}); len(f) != 0 {
		t.Errorf("no failure expected, got %v", f)
	}
	if f := Failures([]Result{ok, lost, known}); len(f) != 1 || !strings.Contains(f[0], "fault 2") {
		t.Errorf("one failure (fault 2) expected, got %v", f)
	}
}
