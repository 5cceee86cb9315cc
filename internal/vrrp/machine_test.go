package vrrp

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output in testdata/*.txt")

// TestScripts runs the scripted interaction tests in testdata (datadriven
// style): each "> command" line drives the machine with a virtual clock;
// the lines after it are the expected actions and state. -rewrite
// regenerates the expectations.
//
// Commands: new prio=N [version=2|3] [interval=1s] [preempt=false] [state=MASTER] [delay=D] [primary=IP]
//
//	start | wait D | advert prio=N [from=IP] [interval=D] | priority N | fault on|off | stop
//	sync master|backup (new ... sync=true: a vrrp_sync_group member)
func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScript(t, f) })
	}
}

func kv(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		m[k] = v
	}
	return m
}

func runScript(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	var m *Machine
	now := time.Unix(1000, 0)
	start := now
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	var expected strings.Builder
	var actual strings.Builder
	flushCmd := func() {}
	_ = flushCmd
	var cmds []string
	var wants []string
	cur := -1
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "> ") {
			cmds = append(cmds, line[2:])
			wants = append(wants, "")
			cur++
			continue
		}
		if cur >= 0 {
			wants[cur] += line + "\n"
		}
	}
	fmtActs := func(acts []Action) string {
		var b strings.Builder
		for _, a := range acts {
			switch a.Kind {
			case SendAdvert:
				fmt.Fprintf(&b, "send advert prio=%d\n", a.Priority)
			case AddVIPs:
				b.WriteString("add vips\n")
			case RemoveVIPs:
				b.WriteString("remove vips\n")
			case Transition:
				fmt.Fprintf(&b, "-> %s (%s)\n", a.State, a.Reason)
			case WantMaster:
				b.WriteString("want master\n")
			}
		}
		return b.String()
	}
	for i, c := range cmds {
		f := strings.Fields(c)
		args := kv(f[1:])
		var acts []Action
		switch f[0] {
		case "new":
			p := Params{VRID: 66, Version: 2, Interval: time.Second, Preempt: true, Primary: net.ParseIP("10.77.8.1")}
			n, _ := strconv.Atoi(args["prio"])
			p.Priority = uint8(n)
			if v := args["version"]; v != "" {
				p.Version, _ = strconv.Atoi(v)
			}
			if v := args["interval"]; v != "" {
				p.Interval, _ = time.ParseDuration(v)
			}
			if args["preempt"] == "false" {
				p.Preempt = false
			}
			if args["state"] == "MASTER" {
				p.InitialState = Master
			}
			if v := args["delay"]; v != "" {
				p.PreemptDelay, _ = time.ParseDuration(v)
			}
			p.Sync = args["sync"] == "true"
			if v := args["primary"]; v != "" {
				p.Primary = net.ParseIP(v)
			}
			m = NewMachine(p)
		case "start":
			acts = m.Start(now)
		case "wait":
			d, _ := time.ParseDuration(f[1])
			end := now.Add(d)
			// fire every timer that falls inside the wait, in order
			for i := 0; i < 1000; i++ {
				dl := m.NextDeadline()
				if dl.IsZero() || dl.After(end) {
					break
				}
				now = dl
				if a := m.Tick(now); len(a) > 0 {
					acts = append(acts, a...)
					fmt.Fprintf(&actual, "")
				}
			}
			now = end
		case "advert":
			n, _ := strconv.Atoi(args["prio"])
			from := net.ParseIP("10.77.8.2")
			if v := args["from"]; v != "" {
				from = net.ParseIP(v)
			}
			iv := time.Second
			if v := args["interval"]; v != "" {
				iv, _ = time.ParseDuration(v)
			}
			acts = m.Advert(now, &Packet{Version: 2, VRID: 66, Priority: uint8(n), Interval: iv}, from)
		case "priority":
			n, _ := strconv.Atoi(f[1])
			acts = m.SetPriority(now, uint8(n))
		case "fault":
			acts = m.SetFault(now, f[1] == "on")
		case "stop":
			acts = m.Stop(now)
		case "sync":
			if f[1] == "master" {
				acts = m.SyncMaster(now)
			} else {
				acts = m.SyncBackup(now)
			}
		default:
			t.Fatalf("%s: unknown command %q", path, c)
		}
		got := fmtActs(acts) + fmt.Sprintf("state=%s prio=%d t=%v", m.State(), m.Priority(), now.Sub(start))
		if m.p.Sync {
			got += fmt.Sprintf(" wants=%v", m.Wants())
		}
		if dl := m.NextDeadline(); !dl.IsZero() {
			got += fmt.Sprintf(" next=%v", dl.Sub(start))
		}
		got += "\n"
		fmt.Fprintf(&out, "> %s\n%s", c, got)
		if !*rewrite && strings.TrimSpace(got) != strings.TrimSpace(wants[i]) {
			t.Errorf("%s: after %q\n got:\n%s\nwant:\n%s", path, c, got, wants[i])
		}
	}
	_ = expected
	if *rewrite {
		os.WriteFile(path, []byte(out.String()), 0o644)
	}
}
