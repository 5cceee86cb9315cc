package halab

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Fault is one entry of the fault list as the lab runs it.
type Fault struct {
	ID     string // the number, e.g. "1"
	Name   string
	Opts   Options
	Known  bool // a known loss (not counted as a failure): what clustering removes
	Warmup time.Duration
	Inject func(l *Lab) string // with the workload running; returns a note for the table
	Settle time.Duration       // workload keeps running after Inject
	NotYet string              // non-empty: not runnable yet, and why
	// Cluster: three broker nodes behind the guide's round robin. For
	// Warren with HALAB_CLUSTER=0 (independent nodes) a labelled known
	// loss: publishers and consumers land on different nodes.
	Cluster    bool
	NA         bool // with NotYet: does not apply to this stack
	OnlyWarren bool // a Warren-only variant (check-amqp)
	// NeedsCluster: the fault is about nodes of a cluster (a partition
	// between nodes, a frozen node, a rolling restart); it runs only with
	// clustered nodes (not with HALAB_CLUSTER=0).
	NeedsCluster bool
}

// ForStack adapts a fault to a stack and to the clustering switch
// (HALAB_CLUSTER=1): with it, Warren's nodes are clustered from
// warren.conf and every fault runs with the guide's three nodes (on both
// stacks); without it, the three-node rows are labelled known losses for
// Warren (independent nodes) and the other faults use one node.
func (f Fault) ForStack(stack string, cluster bool) Fault {
	f.Opts.Stack = stack
	if f.NeedsCluster && !cluster {
		f.NotYet = "needs three clustered nodes (HALAB_CLUSTER=0 runs them independent)"
	}
	if cluster && f.NotYet == "" {
		f.Opts.Cluster = stack != "rabbitmq"
		f.Opts.Brokers = 3
	}
	if f.Cluster {
		switch {
		case stack == "rabbitmq":
			f.Name += " (3 clustered nodes, ha-mode all)"
		case cluster:
			f.Name += " (3 clustered nodes)"
		default:
			f.Name += " (3 independent nodes: KNOWN LOSS until clustering)"
			f.Known = true
		}
	}
	if f.OnlyWarren && stack == "rabbitmq" {
		f.NotYet, f.NA = "HAProxy has no check-amqp / --haproxy-checks (warren-proxy only)", true
	}
	return f
}

// Faults is the fault list. Warren nodes are not clustered yet, so faults
// that do not concern brokers run with ONE broker node behind the proxies;
// the 3-independent-node round-robin case is a labelled known loss.
func Faults() []Fault {
	single := Options{Brokers: 1}
	return []Fault{
		{ID: "1", Name: "master LB host dies", Opts: single, Warmup: 3 * time.Second, Settle: 5 * time.Second,
			Inject: func(l *Lab) string {
				l.HostDown("lb1")
				d := l.WaitVIP("lb2", 20*time.Second)
				return fmt.Sprintf("VIP on lb2 after %.1fs", d.Seconds())
			}},
		{ID: "2", Name: "proxy dies on master LB (VRRP lives)", Opts: single, Warmup: 3 * time.Second, Settle: 4 * time.Second,
			Inject: func(l *Lab) string {
				l.Kill("lb1/proxy")
				d := l.WaitVIP("lb2", 20*time.Second)
				note := fmt.Sprintf("tracking script moved VIP in %.1fs", d.Seconds())
				time.Sleep(2 * time.Second)
				l.StartProxy("lb1") // repaired: lb1 takes the VIP back (preempt)
				d = l.WaitVIP("lb1", 20*time.Second)
				return note + fmt.Sprintf("; back on lb1 %.1fs after proxy restart", d.Seconds())
			}},
		{ID: "3", Name: "broker SIGKILLed, restarted after 3s", Opts: single, Warmup: 3 * time.Second, Settle: 8 * time.Second,
			Inject: func(l *Lab) string {
				l.KillBroker("b1")
				time.Sleep(3 * time.Second)
				l.StartBroker("b1")
				if l.Opts.Brokers == 1 {
					return "single node: clients wait for the restart"
				}
				return ""
			}},
		{ID: "4", Name: "broker stop_app, guide's TCP check", Opts: single, Warmup: 3 * time.Second, Settle: 5 * time.Second,
			Inject: func(l *Lab) string { return stopApp(l) }},
		{ID: "4h", Name: "broker stop_app, guide's TCP check, --haproxy-checks", Opts: Options{Brokers: 1, HAProxyChecks: true}, OnlyWarren: true,
			Warmup: 3 * time.Second, Settle: 5 * time.Second,
			Inject: func(l *Lab) string { return stopApp(l) }},
		{ID: "4a", Name: "broker stop_app, check-amqp", Opts: Options{Brokers: 1, CheckAMQP: true}, OnlyWarren: true, Warmup: 3 * time.Second, Settle: 5 * time.Second,
			Inject: func(l *Lab) string { return stopApp(l) }},
		{ID: "8", Name: "both LB hosts restart, one after the other", Opts: single, Warmup: 3 * time.Second, Settle: 6 * time.Second,
			Inject: func(l *Lab) string {
				l.HostDown("lb1")
				d1 := l.WaitVIP("lb2", 20*time.Second)
				time.Sleep(2 * time.Second)
				l.HostUp("lb1")
				d2 := l.WaitVIP("lb1", 30*time.Second)
				time.Sleep(3 * time.Second)
				l.HostDown("lb2")
				time.Sleep(3 * time.Second)
				l.HostUp("lb2")
				return fmt.Sprintf("VIP to lb2 %.1fs, back to lb1 %.1fs after its boot", d1.Seconds(), d2.Seconds())
			}},
		{ID: "rr3", Name: "no fault", Opts: Options{Brokers: 3}, Cluster: true,
			Warmup: 3 * time.Second, Settle: 5 * time.Second,
			Inject: func(l *Lab) string { return "" }},
		{ID: "3c", Name: "broker b1 SIGKILLed, restarted after 3s", Opts: Options{Brokers: 3}, Cluster: true,
			Warmup: 3 * time.Second, Settle: 8 * time.Second,
			Inject: func(l *Lab) string {
				l.KillBroker("b1")
				time.Sleep(3 * time.Second)
				l.StartBroker("b1")
				return ""
			}},
		{ID: "4c", Name: "broker b1 stop_app, guide's TCP check", Opts: Options{Brokers: 3}, Cluster: true,
			Warmup: 3 * time.Second, Settle: 5 * time.Second,
			Inject: func(l *Lab) string { return stopApp(l) }},
		{ID: "5", Name: "broker b1 cut off from the other nodes for 10s (proxies still reach it)", Opts: Options{Brokers: 3}, NeedsCluster: true,
			Warmup: 3 * time.Second, Settle: 8 * time.Second,
			Inject: func(l *Lab) string {
				l.Partition("b1", true)
				time.Sleep(10 * time.Second)
				l.Partition("b1", false)
				return ""
			}},
		{ID: "6", Name: "broker b1 frozen (SIGSTOP 10s, then SIGCONT)", Opts: Options{Brokers: 3}, NeedsCluster: true,
			Warmup: 3 * time.Second, Settle: 8 * time.Second,
			Inject: func(l *Lab) string {
				l.SignalHost("b1", syscall.SIGSTOP)
				time.Sleep(10 * time.Second)
				l.SignalHost("b1", syscall.SIGCONT)
				return ""
			}},
		{ID: "7", Name: "rolling restart of the 3 nodes (drain, restart, wait, ready)", Opts: Options{Brokers: 3}, NeedsCluster: true,
			Warmup: 3 * time.Second, Settle: 5 * time.Second,
			Inject: func(l *Lab) string { return l.RollingRestart() }},
	}
}

// stopApp stops the broker's AMQP side and watches what the proxies make
// of it for up to 20 s (the guide's inter 5000 fall 3 is 15 s), then
// starts it again.
func stopApp(l *Lab) string {
	if out, err := l.Ctl("b1", "stop_app"); err != nil {
		return "warrenctl stop_app failed: " + strings.TrimSpace(out)
	}
	start := time.Now()
	note := "proxy never marked A DOWN within 20s"
	for time.Since(start) < 20*time.Second {
		if st := l.ServerStatus("lb1", "A"); strings.HasPrefix(st, "DOWN") {
			note = fmt.Sprintf("proxy marked A DOWN after %.1fs", time.Since(start).Seconds())
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if out, err := l.Ctl("b1", "start_app"); err != nil {
		return note + "; warrenctl start_app failed: " + strings.TrimSpace(out)
	}
	return note
}

// Result is one row of the table.
type Result struct {
	Fault  Fault
	Report Report
	Note   string
	Err    error
}

// Table formats results as the table.
func Table(rs []Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-4s %-72s %9s %9s %5s %5s %7s %8s %8s  %s\n", "id", "fault", "confirmed", "delivered", "lost", "dup", "failcon", "pub-gap", "del-gap", "note")
	for _, r := range rs {
		f := r.Fault
		if f.NotYet != "" {
			label := "NOT YET RUNNABLE: "
			if f.NA {
				label = "N/A: "
			}
			fmt.Fprintf(&b, "%-4s %-72s %9s %9s %5s %5s %7s %8s %8s  %s%s\n", f.ID, f.Name, "-", "-", "-", "-", "-", "-", "-", label, f.NotYet)
			continue
		}
		if r.Err != nil {
			fmt.Fprintf(&b, "%-4s %-72s ERROR: %v\n", f.ID, f.Name, firstLine(r.Err.Error()))
			continue
		}
		p := r.Report
		fmt.Fprintf(&b, "%-4s %-72s %9d %9d %5d %5d %7d %7.2fs %7.2fs  %s\n", f.ID, f.Name, p.Confirmed, p.Delivered, p.Lost, p.Duplicated, p.FailedConnects,
			p.PublishGap.Seconds(), p.DeliveryGap.Seconds(), r.Note)
	}
	return b.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Failures lists what makes the run fail: an error, or a confirmed message
// lost outside a labelled known loss.
func Failures(rs []Result) []string {
	var out []string
	for _, r := range rs {
		switch {
		case r.Fault.NotYet != "":
		case r.Err != nil:
			out = append(out, fmt.Sprintf("fault %s (%s): %v", r.Fault.ID, r.Fault.Name, r.Err))
		case r.Report.Lost > 0 && !r.Fault.Known:
			out = append(out, fmt.Sprintf("fault %s (%s): %d confirmed messages lost (e.g. %v)", r.Fault.ID, r.Fault.Name, r.Report.Lost, r.Report.LostSample))
		}
	}
	return out
}

// Jitter is the long mode's random timing: the fault comes 0-3 s later
// into the workload and the workload runs 0-2 s longer after it.
func (f Fault) Jitter(r *rand.Rand) Fault {
	f.Warmup += time.Duration(r.Int63n(int64(3 * time.Second)))
	f.Settle += time.Duration(r.Int63n(int64(2 * time.Second)))
	return f
}

// Summary is the long mode's table: for every fault and stack (rows of one
// fault next to each other), over its runs: lost (total and worst run),
// then median and worst of duplicates, failed connection attempts and the
// two gaps. Runs that failed to produce a report are counted as errors.
func Summary(stacks []string, rs map[string][]Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-4s %-9s %-60s %4s %4s %10s %11s %13s %15s %15s\n", "id", "stack", "fault", "runs", "errs", "lost(tot/max)", "dup med/max", "failcon med/max", "pub-gap med/max", "del-gap med/max")
	var ids []string
	names := map[string]string{}
	for _, st := range stacks {
		for _, r := range rs[st] {
			if _, ok := names[r.Fault.ID]; !ok {
				ids = append(ids, r.Fault.ID)
				names[r.Fault.ID] = r.Fault.Name
			}
		}
	}
	for _, id := range ids {
		for _, st := range stacks {
			var dup, fc []int
			var pg, dg []time.Duration
			runs, errs, lost, maxLost := 0, 0, 0, 0
			name, notYet := "", ""
			for _, r := range rs[st] {
				if r.Fault.ID != id {
					continue
				}
				name = r.Fault.Name
				if r.Fault.NotYet != "" {
					notYet = r.Fault.NotYet
					if r.Fault.NA {
						notYet = "N/A: " + notYet
					}
					continue
				}
				runs++
				if r.Err != nil {
					errs++
					continue
				}
				p := r.Report
				lost += p.Lost
				maxLost = max(maxLost, p.Lost)
				dup, fc = append(dup, p.Duplicated), append(fc, p.FailedConnects)
				pg, dg = append(pg, p.PublishGap), append(dg, p.DeliveryGap)
			}
			if name == "" {
				continue
			}
			if len(name) > 60 {
				name = name[:57] + "..."
			}
			if notYet != "" {
				fmt.Fprintf(&b, "%-4s %-9s %-60s %s\n", id, st, name, notYet)
				continue
			}
			if len(dup) == 0 {
				fmt.Fprintf(&b, "%-4s %-9s %-60s %4d %4d  (no run produced a report)\n", id, st, name, runs, errs)
				continue
			}
			dm, dx := medMax(dup)
			fm, fx := medMax(fc)
			pm, px := medMaxD(pg)
			gm, gx := medMaxD(dg)
			fmt.Fprintf(&b, "%-4s %-9s %-60s %4d %4d %13s %11s %15s %15s %15s\n", id, st, name, runs, errs,
				fmt.Sprintf("%d/%d", lost, maxLost), fmt.Sprintf("%d/%d", dm, dx), fmt.Sprintf("%d/%d", fm, fx),
				fmt.Sprintf("%.2f/%.2fs", pm.Seconds(), px.Seconds()), fmt.Sprintf("%.2f/%.2fs", gm.Seconds(), gx.Seconds()))
		}
	}
	return b.String()
}

// medMax returns the median (the lower of the two middle values for an
// even count) and the maximum.
func medMax(v []int) (int, int) {
	s := append([]int(nil), v...)
	sort.Ints(s)
	return s[(len(s)-1)/2], s[len(s)-1]
}

func medMaxD(v []time.Duration) (time.Duration, time.Duration) {
	s := append([]time.Duration(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)/2], s[len(s)-1]
}
