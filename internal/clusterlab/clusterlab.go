// Package clusterlab runs real warren-server processes as a cluster, each
// node on a host of its own (a network namespace, internal/netlab) with
// its own address, named warren@<host> and resolved through the hosts'
// /etc/hosts as the guide does, clustered from classic_config, all with
// one cookie. Tests kill nodes (SIGKILL), stop them (SIGTERM), cut their
// links and restart them with their data.
//
//	l := clusterlab.New(t, 3)
//	l.StartAll()
//	conn := l.Dial(t, 0) // amqp091 connection to node 0 (user lab/lab)
//	l.Kill(1); l.Start(1)
package clusterlab

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/netlab"
	"github.com/warrenmq/warren/internal/testenv"
)

// User and Pass are the credentials every node creates (default_user).
const (
	User = "lab"
	Pass = "lab"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries builds warren-server and warrenctl once per test process.
func binaries(t testing.TB) (server, ctl string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "clusterlab-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "./cmd/warren-server", "./cmd/warrenctl")
		cmd.Dir = testenv.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "warren-server"), filepath.Join(buildDir, "warrenctl")
}

// Lab is a cluster of real nodes.
type Lab struct {
	t      testing.TB
	Net    *netlab.Lab
	Dir    string
	Server string // warren-server binary
	CtlBin string // warrenctl binary
	Nodes  []*Node
	// Extra is appended to every node's warren.conf.
	Extra string
}

// Node is one broker host.
type Node struct {
	Host string // e.g. "n1"
	Name string // warren@n1
	IP   string
	Dir  string
	// Extra is appended to this node's warren.conf (after Lab.Extra).
	Extra string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// New makes n hosts n1..nN (10.80.0.1.. inside the lab only), with a
// hosts file naming all of them.
func New(t testing.TB, n int) *Lab {
	t.Helper()
	server, ctl := binaries(t)
	l := &Lab{t: t, Net: netlab.New(t, netlab.Options{}), Dir: t.TempDir(), Server: server, CtlBin: ctl}
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1 localhost\n")
	for i := range n {
		nd := &Node{Host: fmt.Sprintf("n%d", i+1), IP: fmt.Sprintf("10.80.0.%d", i+1)}
		nd.Name = "warren@" + nd.Host
		nd.Dir = filepath.Join(l.Dir, nd.Host)
		if err := os.MkdirAll(nd.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		l.Nodes = append(l.Nodes, nd)
		fmt.Fprintf(&hosts, "%s %s\n", nd.IP, nd.Host)
	}
	for _, nd := range l.Nodes {
		ns := l.Net.AddHost(nd.Host, nd.IP+"/24")
		// ip netns exec bind-mounts /etc/netns/<ns>/hosts over /etc/hosts
		etc := filepath.Join("/etc/netns", ns)
		if err := os.MkdirAll(etc, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(etc) })
		if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte(hosts.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(nd.Dir, "cookie"), []byte("clusterlab-cookie-0123456789"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(l.stopAll)
	return l
}

func (l *Lab) conf() string {
	var b strings.Builder
	b.WriteString("cluster_formation.peer_discovery_backend = classic_config\n")
	for i, nd := range l.Nodes {
		fmt.Fprintf(&b, "cluster_formation.classic_config.nodes.%d = %s\n", i+1, nd.Name)
	}
	fmt.Fprintf(&b, "default_user = %s\ndefault_pass = %s\ndefault_user_tags.administrator = true\nloopback_users = none\n", User, Pass)
	b.WriteString(l.Extra)
	return b.String()
}

func (l *Lab) env(nd *Node) []string {
	return append(os.Environ(), "WARREN_COOKIE_FILE="+filepath.Join(nd.Dir, "cookie"), "HOME="+nd.Dir)
}

// Start starts node i (or restarts it with its data) without waiting.
func (l *Lab) Start(i int) {
	l.t.Helper()
	nd := l.Nodes[i]
	conf := filepath.Join(nd.Dir, "warren.conf")
	if err := os.WriteFile(conf, []byte(l.conf()+nd.Extra), 0o644); err != nil {
		l.t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(nd.Dir, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	defer logf.Close()
	cmd := l.Net.Command(nd.Host, l.Server, "--config", conf, "--nodename", nd.Name, "--data-dir", filepath.Join(nd.Dir, "data"),
		"--port", "5672", "--management-port", "15672", "--prometheus-port", "0", "--control-port", "25673")
	cmd.Env = l.env(nd)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	nd.mu.Lock()
	nd.cmd = cmd
	nd.mu.Unlock()
}

// StartAll starts every node and waits until each accepts clients.
func (l *Lab) StartAll() {
	l.t.Helper()
	for i := range l.Nodes {
		l.Start(i)
	}
	for i := range l.Nodes {
		l.WaitReady(i)
	}
}

// URL is the AMQP URL of node i.
func (l *Lab) URL(i int) string {
	return fmt.Sprintf("amqp://%s:%s@%s:5672/", User, Pass, l.Nodes[i].IP)
}

// WaitReady waits (up to 60 s) until node i accepts an AMQP connection.
func (l *Lab) WaitReady(i int) {
	l.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := l.dial(i)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("node %s not ready after 60 s: %v\n%s", l.Nodes[i].Name, err, l.Log(i))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Log returns the end of node i's log.
func (l *Lab) Log(i int) string {
	b, _ := os.ReadFile(filepath.Join(l.Nodes[i].Dir, "node.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Kill SIGKILLs node i and reaps it.
func (l *Lab) Kill(i int) { l.signal(i, syscall.SIGKILL) }

// Stop stops node i with SIGTERM and waits for it to exit.
func (l *Lab) Stop(i int) { l.signal(i, syscall.SIGTERM) }

func (l *Lab) signal(i int, sig syscall.Signal) {
	nd := l.Nodes[i]
	nd.mu.Lock()
	cmd := nd.cmd
	nd.cmd = nil
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		l.t.Errorf("node %s did not exit within 30 s of %v; killed", nd.Name, sig)
	}
}

// Cut takes node i's network link down (it is cut off from the others
// and from clients); Heal brings it back.
func (l *Lab) Cut(i int)  { l.Net.IP(l.Nodes[i].Host, "link", "set", "eth0", "down") }
func (l *Lab) Heal(i int) { l.Net.IP(l.Nodes[i].Host, "link", "set", "eth0", "up") }

// Ctl runs warrenctl on node i's host against that node.
func (l *Lab) Ctl(i int, args ...string) (string, error) {
	nd := l.Nodes[i]
	cmd := l.Net.Command(nd.Host, append([]string{l.CtlBin, "-n", nd.Name}, args...)...)
	cmd.Env = l.env(nd)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (l *Lab) stopAll() {
	for i := range l.Nodes {
		l.Kill(i)
	}
}

// dial connects to node i from the test process: the lab's addresses
// live only inside its namespaces, so the connection is made from inside
// host i's namespace (a socket created there stays usable here).
func (l *Lab) dial(i int) (*amqp091.Connection, error) {
	return amqp091.DialConfig(l.URL(i), amqp091.Config{
		Dial: func(network, addr string) (net.Conn, error) {
			return l.Net.DialIn(l.Nodes[i].Host, network, addr, 5*time.Second)
		},
		Heartbeat: 10 * time.Second,
	})
}

// Dial connects to node i (fails the test on error).
func (l *Lab) Dial(t testing.TB, i int) *amqp091.Connection {
	t.Helper()
	c, err := l.dial(i)
	if err != nil {
		t.Fatalf("connecting to %s: %v", l.Nodes[i].Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TryDial connects to node i, returning the error.
func (l *Lab) TryDial(i int) (*amqp091.Connection, error) { return l.dial(i) }
