// Package netlab builds hosts for multi-host tests out of Linux network
// namespaces on one machine: a bridge in a namespace of its own and one
// namespace per host, each with eth0 on the bridge. Every name (namespaces,
// interfaces) carries an id unique to the lab, so two test runs can share
// a machine, and teardown ends only processes inside the lab's own
// namespaces (the processes the test started there, and their children).
//
//	l := netlab.New(t, netlab.Options{})
//	a := l.AddHost("a", "10.77.8.1/24")
//	out := l.Run("a", "ip", "addr")       // runs inside host a
//	cmd := l.Command("a", "warren-server") // an exec.Cmd inside host a
//
// Addresses live only inside the lab's namespaces. New skips the test when
// it is not root or iproute2 is missing (fails it in CI, see testenv).
package netlab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/warrenmq/warren/internal/testenv"
)

// Options shape a lab.
type Options struct {
	// IPv6 turns IPv6 on in every host with duplicate address detection
	// off, turns multicast snooping off on the bridge, and makes AddHost
	// wait until eth0's link-local address is usable.
	IPv6 bool
}

// Lab is one set of hosts on one bridge.
type Lab struct {
	t      testing.TB
	opts   Options
	ID     string // unique per lab, e.g. "w3f9a1"
	bridge string // the bridge's namespace

	mu    sync.Mutex
	hosts map[string]string // host name -> namespace
	order []string
}

// New makes an empty lab (the bridge only) and registers its teardown.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "apt-get install iproute2")
	if _, err := os.Stat("/proc/sys/net/ipv6"); opts.IPv6 && err != nil {
		testenv.Skip(t, "the kernel has no IPv6 (no /proc/sys/net/ipv6)")
	}
	l := &Lab{t: t, opts: opts, hosts: map[string]string{}}
	l.ID = newID(t)
	l.bridge = l.ID + "-br"
	t.Cleanup(l.Close)
	l.must("ip", "netns", "add", l.bridge)
	br := []string{"ip", "-n", l.bridge, "link", "add", "br0", "type", "bridge"}
	if opts.IPv6 {
		br = append(br, "mcast_snooping", "0")
	}
	l.must(br...)
	l.must("ip", "-n", l.bridge, "link", "set", "br0", "up")
	return l
}

// newID picks "w" and 5 hex digits that no existing namespace starts with.
func newID(t testing.TB) string {
	for range 100 {
		var b [3]byte
		rand.Read(b[:])
		id := "w" + hex.EncodeToString(b[:])[:5]
		out, _ := exec.Command("ip", "netns", "list").Output()
		if !strings.Contains(string(out), id) {
			return id
		}
	}
	t.Fatal("netlab: no free lab id after 100 tries")
	return ""
}

func (l *Lab) must(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// AddHost makes host name with eth0 on the bridge and the given
// addresses (CIDR), lo up, and returns its namespace.
func (l *Lab) AddHost(name string, addrs ...string) string {
	l.t.Helper()
	l.mu.Lock()
	if _, ok := l.hosts[name]; ok {
		l.mu.Unlock()
		l.t.Fatalf("netlab: host %s added twice", name)
	}
	n := len(l.order) + 1
	ns := l.ID + "-" + name
	l.hosts[name] = ns
	l.order = append(l.order, name)
	l.mu.Unlock()

	// interface names are at most 15 bytes: id (6) + number + side
	ve, vb := fmt.Sprintf("%s%de", l.ID, n), fmt.Sprintf("%s%db", l.ID, n)
	l.must("ip", "netns", "add", ns)
	sysctl := func(kv string) { l.must("ip", "netns", "exec", ns, "sysctl", "-qw", kv) }
	if l.opts.IPv6 { // IPv6 on and DAD off before any interface is up
		sysctl("net.ipv6.conf.all.disable_ipv6=0")
		sysctl("net.ipv6.conf.default.disable_ipv6=0")
		sysctl("net.ipv6.conf.default.accept_dad=0")
	}
	l.must("ip", "link", "add", ve, "type", "veth", "peer", "name", vb)
	l.must("ip", "link", "set", ve, "netns", ns)
	l.must("ip", "link", "set", vb, "netns", l.bridge)
	l.must("ip", "-n", ns, "link", "set", ve, "name", "eth0")
	if l.opts.IPv6 {
		sysctl("net.ipv6.conf.eth0.accept_dad=0")
	}
	for _, a := range addrs {
		l.must("ip", "-n", ns, "addr", "add", a, "dev", "eth0")
	}
	l.must("ip", "-n", ns, "link", "set", "eth0", "up")
	l.must("ip", "-n", ns, "link", "set", "lo", "up")
	l.must("ip", "-n", l.bridge, "link", "set", vb, "master", "br0")
	l.must("ip", "-n", l.bridge, "link", "set", vb, "up")
	if l.opts.IPv6 {
		l.waitLinkLocal(ns)
	}
	return ns
}

func (l *Lab) waitLinkLocal(ns string) {
	l.t.Helper()
	for i := 0; ; i++ {
		out, _ := exec.Command("ip", "-n", ns, "-6", "addr", "show", "dev", "eth0", "scope", "link").Output()
		if strings.Contains(string(out), "fe80::") && !strings.Contains(string(out), "tentative") {
			return
		}
		if i == 100 {
			l.t.Fatalf("%s: no usable IPv6 link-local address after 2s:\n%s", ns, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NS is host name's namespace.
func (l *Lab) NS(name string) string {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	ns, ok := l.hosts[name]
	if !ok {
		l.t.Fatalf("netlab: no host %s in lab %s", name, l.ID)
	}
	return ns
}

// Hosts lists the hosts in the order they were added.
func (l *Lab) Hosts() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.order...)
}

// Command is an exec.Cmd that runs argv inside host name.
func (l *Lab) Command(name string, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.NS(name)}, argv...)...)
}

// Run runs argv inside host name and fails the test on error.
func (l *Lab) Run(name string, argv ...string) string {
	l.t.Helper()
	out, err := l.Command(name, argv...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s on %s: %v\n%s", strings.Join(argv, " "), name, err, out)
	}
	return string(out)
}

// IP runs `ip -n <host's namespace> args...` and fails the test on error.
func (l *Lab) IP(name string, args ...string) string {
	l.t.Helper()
	return l.must(append([]string{"ip", "-n", l.NS(name)}, args...)...)
}

// KillHost ends every process inside host name at once with SIGKILL, as
// when the host dies (keepalived's VRRP child outlives a killed parent).
func (l *Lab) KillHost(name string) {
	killNS(l.NS(name))
}

func killNS(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Close ends the processes inside the lab's namespaces and deletes them.
// It runs at the test's cleanup; calling it again does nothing.
func (l *Lab) Close() {
	l.mu.Lock()
	nss := []string{}
	for _, h := range l.order {
		nss = append(nss, l.hosts[h])
	}
	l.hosts, l.order = map[string]string{}, nil
	bridge := l.bridge
	l.bridge = ""
	l.mu.Unlock()
	if bridge != "" {
		nss = append(nss, bridge)
	}
	for _, ns := range nss {
		killNS(ns)
	}
	for _, ns := range nss {
		// a process just killed may hold the namespace for a moment
		for i := 0; i < 50; i++ {
			if exec.Command("ip", "netns", "del", ns).Run() == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// DialIn connects to addr from inside host name's namespace, for a test
// process that lives outside the lab: the socket is made there (on a
// locked thread switched into the namespace and back) and stays usable
// from anywhere.
func (l *Lab) DialIn(name, network, addr string, timeout time.Duration) (net.Conn, error) {
	ns := l.NS(name)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("netlab: namespace %s: %w", ns, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("netlab: entering %s: %w", ns, err)
	}
	c, derr := net.DialTimeout(network, addr, timeout)
	if err := netns.Set(orig); err != nil {
		// this thread stays in the lab's namespace: keep it locked so it
		// dies with this goroutine instead of running other code
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("netlab: leaving %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return c, derr
}
