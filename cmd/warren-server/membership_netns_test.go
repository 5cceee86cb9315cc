package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/netlab"
)

// TestMembershipInNamespaces forms a cluster the guide's way with each
// node on a host of its own (a network namespace with its own address,
// every port at its default): join_cluster runs verbatim, without
// Warren's --dist-address. Definitions made on one host are seen on the
// others, and the cluster comes back after all three stop and start in
// reverse order.
func TestMembershipInNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three server processes in network namespaces")
	}
	lab := netlab.New(t, netlab.Options{})
	dir := t.TempDir()
	bin := filepath.Join(dir, "warren-server")
	ctlBin := filepath.Join(dir, "warrenctl")
	for out, pkg := range map[string]string{bin: ".", ctlBin: "../warrenctl"} {
		if b, err := exec.Command("go", buildArgs(out, pkg)...).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	cookie := filepath.Join(dir, "cookie")
	if err := os.WriteFile(cookie, []byte("namespaced-cookie"), 0o600); err != nil {
		t.Fatal(err)
	}
	type host struct {
		lab, name, data string
		cmd             *exec.Cmd
		log             *os.File
	}
	hosts := make([]*host, 3)
	for i := range hosts {
		h := &host{lab: fmt.Sprintf("h%d", i+1), name: fmt.Sprintf("warren@10.77.8.%d", i+1), data: filepath.Join(dir, fmt.Sprintf("data%d", i+1))}
		lab.AddHost(h.lab, fmt.Sprintf("10.77.8.%d/24", i+1))
		var err error
		if h.log, err = os.Create(filepath.Join(dir, h.lab+".log")); err != nil {
			t.Fatal(err)
		}
		hosts[i] = h
	}
	start := func(h *host) {
		t.Helper()
		h.cmd = lab.Command(h.lab, bin, "--data-dir", h.data, "--nodename", h.name, "--management-port", "0", "--prometheus-port", "0")
		h.cmd.Env = append(os.Environ(), "WARREN_COOKIE_FILE="+cookie)
		h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
		if err := h.cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	stop := func(h *host) {
		if h.cmd == nil || h.cmd.Process == nil {
			return
		}
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = h.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = h.cmd.Process.Kill()
			<-done
		}
		h.cmd = nil
	}
	t.Cleanup(func() {
		for _, h := range hosts {
			stop(h)
		}
		for _, h := range hosts {
			if b, _ := os.ReadFile(h.log.Name()); strings.Contains(string(b), "WARNING: DATA RACE") {
				t.Errorf("%s reported a data race (built with WARREN_TEST_RACE)", h.name)
			}
		}
		if t.Failed() {
			for _, h := range hosts {
				b, _ := os.ReadFile(h.log.Name())
				t.Logf("%s log:\n%s", h.name, b)
			}
		}
	})
	ctl := func(h *host, args ...string) string {
		t.Helper()
		full := append([]string{ctlBin, "-n", h.name, "--host", "127.0.0.1", "--cookie-file", cookie, "--timeout", "120s"}, args...)
		out, err := lab.Command(h.lab, full...).CombinedOutput()
		if err != nil {
			t.Fatalf("warrenctl -n %s %s: %v\n%s", h.name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	awaitMembers := func(h *host, want []string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			full := []string{ctlBin, "-n", h.name, "--host", "127.0.0.1", "--cookie-file", cookie, "cluster_status", "--formatter", "json"}
			out, err := lab.Command(h.lab, full...).CombinedOutput()
			var st clusterStatusJSON
			if err == nil && json.Unmarshal(out, &st) == nil {
				slices.Sort(st.DiskNodes)
				slices.Sort(st.RunningNodes)
				if slices.Equal(st.DiskNodes, want) && slices.Equal(st.RunningNodes, want) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster_status on %s never listed %v running:\n%s", h.name, want, out)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	for _, h := range hosts {
		start(h)
	}
	for _, h := range hosts {
		ctl(h, "await_startup")
	}
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	for _, h := range []*host{h2, h3} {
		ctl(h, "stop_app")
		ctl(h, "join_cluster", h1.name)
		ctl(h, "start_app")
	}
	all := []string{h1.name, h2.name, h3.name}
	slices.Sort(all)
	for _, h := range hosts {
		awaitMembers(h, all)
	}
	ctl(h3, "add_vhost", "made-on-h3")
	if v := ctl(h1, "list_vhosts"); !strings.Contains(v, "made-on-h3") {
		t.Fatalf("a vhost added on h3 is not on h1:\n%s", v)
	}
	for _, h := range hosts {
		stop(h)
	}
	b, _ := os.ReadFile(h2.log.Name())
	if !strings.Contains(string(b), "joined a cluster") {
		t.Fatalf("h2's log does not show the join:\n%s", b)
	}
	for _, h := range []*host{h3, h2, h1} {
		start(h)
	}
	awaitMembers(h2, all)
	if v := ctl(h2, "list_vhosts"); !strings.Contains(v, "made-on-h3") {
		t.Fatalf("after a full restart, h2 lacks the vhost:\n%s", v)
	}
}
