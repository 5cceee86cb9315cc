package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The broker processes the suite starts: a Warren node and a RabbitMQ
// node, each with its own ports and files under the suite's temporary
// directory. A single-node broker (scenarios 1-20) is one of them; a
// cluster (21-23, cluster.go) is three.

var warrenBuild struct {
	once sync.Once
	path string
	err  error
}

// warrenBinary is -warren-bin, or warren-server built from this tree into
// tmp (once per run).
func warrenBinary(tmp string) (string, error) {
	if *warren != "" {
		return *warren, nil
	}
	warrenBuild.once.Do(func() {
		bin := filepath.Join(tmp, "warren-server")
		out, err := exec.Command("go", "build", "-o", bin, "./cmd/warren-server").CombinedOutput()
		if err != nil {
			warrenBuild.err = fmt.Errorf("build: %v: %s", err, out)
			return
		}
		warrenBuild.path = bin
	})
	return warrenBuild.path, warrenBuild.err
}

// warrenNode is a warren-server process of its own, not started yet: AMQP
// on port, data and log under dir, the HTTP API, Prometheus endpoint and
// control port off, the cookie in cookie; extra are further flags (a
// cluster node's --config, --nodename, --dist-port). start starts it
// (again, on the same data) and returns once the AMQP port accepts
// connections; stop sends SIGTERM and waits for the exit.
func warrenNode(name, bin, dir string, port int, cookie string, extra ...string) *broker {
	os.MkdirAll(dir, 0o755)
	args := append([]string{"--port", strconv.Itoa(port), "--management-port", "0", "--prometheus-port", "0", "--control-port", "0",
		"--data-dir", filepath.Join(dir, "data"), "--log-level", *logLevel}, extra...)
	var cmd *exec.Cmd
	start := func() error {
		logf, err := os.OpenFile(filepath.Join(dir, "warren.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer logf.Close()
		if portOpen(port) {
			return fmt.Errorf("port %d is taken before the node starts (is an earlier process of it still running?)", port)
		}
		c := exec.Command(bin, args...)
		c.Env = append(os.Environ(), "WARREN_COOKIE_FILE="+cookie)
		c.Stdout, c.Stderr = logf, logf
		if err := c.Start(); err != nil {
			return err
		}
		cmd = c
		if err := waitPort(port, 10*time.Minute); err != nil {
			c.Process.Kill()
			c.Wait()
			return err
		}
		return nil
	}
	stop := func() {
		if cmd != nil && cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	}
	ver, _ := exec.Command("git", "describe", "--always", "--dirty").Output()
	return &broker{name: name, kind: "Warren", url: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port), dir: dir,
		pid: func() int {
			if cmd == nil {
				return 0
			}
			return cmd.Process.Pid
		},
		stop:  stop,
		start: start,
		info: map[string]string{"command": bin + " " + strings.Join(args, " "), "git_commit": strings.TrimSpace(string(ver)),
			"log_level": *logLevel, "GOMAXPROCS": "default (the CPUs the process may run on, as started: " + strconv.Itoa(runtime.NumCPU()) + ")",
			"management": "HTTP API off (--management-port 0), as RabbitMQ here runs without plugins"}}
}

// startWarren starts the single Warren node of scenarios 1-20.
func startWarren(tmp string) (*broker, error) {
	bin, err := warrenBinary(tmp)
	if err != nil {
		return nil, err
	}
	b := warrenNode("Warren", bin, filepath.Join(tmp, "warren"), freePortExcept(), filepath.Join(tmp, "cookie"))
	if err := b.start(); err != nil {
		return nil, err
	}
	return b, nil
}

var rabbitHomeOnce struct {
	once sync.Once
	dir  string
}

// rabbitHome is the HOME of every RabbitMQ node and rabbitmqctl the suite
// runs: a directory under tmp, owned by the rabbitmq user, holding an
// .erlang.cookie of this run's own. The nodes of a RabbitMQ cluster need
// one cookie; this one is not the shared RabbitMQ's
// (/var/lib/rabbitmq/.erlang.cookie), so the suite's nodes cannot talk to
// it. (RabbitMQ 3.10 reads the cookie from $HOME/.erlang.cookie; its
// RABBITMQ_ERLANG_COOKIE variable is deprecated.)
func rabbitHome(tmp string) string {
	rabbitHomeOnce.once.Do(func() {
		dir := filepath.Join(tmp, "rabbit-home")
		os.MkdirAll(dir, 0o755)
		b := make([]byte, 20)
		rand.Read(b)
		cookie := filepath.Join(dir, ".erlang.cookie")
		os.WriteFile(cookie, []byte(strings.ToUpper(hex.EncodeToString(b))), 0o400)
		exec.Command("chown", "-R", "rabbitmq:rabbitmq", dir).Run()
		exec.Command("chmod", "755", tmp).Run()
		rabbitHomeOnce.dir = dir
	})
	return rabbitHomeOnce.dir
}

// rabbitNode is a RabbitMQ node of its own, not started yet: node name
// node, AMQP port, a random distribution port (never
// 5672/15672/25672/4369/15692), data, log, config, plugins and env files
// under dir, HOME (so the Erlang cookie) rabbitHome(tmp). It never
// touches a RabbitMQ already on the machine; stop stops only this node
// (rabbitmqctl -n node stop, or SIGKILL of the pid the node wrote). Its
// ctl runs rabbitmqctl -n node with the node's environment.
func rabbitNode(tmp, name, dir, node string, port int, tuned bool) *broker {
	dist := freePortExcept()
	os.MkdirAll(filepath.Join(dir, "mnesia"), 0o755)
	os.MkdirAll(filepath.Join(dir, "log"), 0o755)
	conf := fmt.Sprintf("log.console.level = %s\nlog.file.level = %s\n", *logLevel, *logLevel)
	if tuned {
		conf += rabbitTunedConf
	}
	os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte(conf), 0o644)
	os.WriteFile(filepath.Join(dir, "rabbitmq-env.conf"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[].\n"), 0o644)
	home := rabbitHome(tmp)
	exec.Command("chown", "-R", "rabbitmq:rabbitmq", dir).Run()
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "RABBITMQ_") && !strings.HasPrefix(e, "ERL_") && !strings.HasPrefix(e, "HOME=") {
			env = append(env, e)
		}
	}
	env = append(env, "HOME="+home, "RABBITMQ_NODE_PORT="+strconv.Itoa(port), "RABBITMQ_DIST_PORT="+strconv.Itoa(dist),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODENAME="+node, "RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"), "RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"), "RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_FEATURE_FLAGS_FILE="+filepath.Join(dir, "ff"), "RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"))
	if tuned {
		env = append(env, "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+rabbitTunedErlArgs)
	}
	// Debian's /usr/sbin/rabbitmq-server and rabbitmqctl switch to the
	// rabbitmq user with su, whose PAM limits cut open files to 1024
	// (RabbitMQ then refuses connections past ~830 and crawls when
	// recovering 1,000 queues) and which resets HOME (so the cookie).
	// Run the real scripts as that user directly instead, so the node
	// inherits this process's raised limit, as a systemd unit with
	// LimitNOFILE would give it, and both see this run's HOME.
	cred := rabbitCredential()
	command := func(script string, args ...string) *exec.Cmd {
		var c *exec.Cmd
		if cred != nil {
			c = exec.Command("/usr/lib/rabbitmq/bin/"+script, args...)
			c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		} else {
			c = exec.Command(script, args...)
		}
		c.Dir, c.Env = home, env
		return c
	}
	var cmd *exec.Cmd
	start := func() error {
		logf, err := os.OpenFile(filepath.Join(dir, "rabbit.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer logf.Close()
		if portOpen(port) {
			return fmt.Errorf("port %d is taken before the node starts (is an earlier process of it still running?)", port)
		}
		c := command("rabbitmq-server")
		c.Stdout, c.Stderr = logf, logf
		if err := c.Start(); err != nil {
			return err
		}
		cmd = c
		if err := waitPort(port, 10*time.Minute); err != nil {
			c.Process.Kill()
			b, _ := os.ReadFile(filepath.Join(dir, "rabbit.out"))
			return fmt.Errorf("%v: %s", err, b)
		}
		return nil
	}
	beam := func() int {
		// rabbitmq-server writes the Erlang VM's pid to RABBITMQ_PID_FILE
		b, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil {
			return 0
		}
		p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return p
	}
	ctl := func(args ...string) (string, error) {
		out, err := command("rabbitmqctl", append([]string{"-n", node}, args...)...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("rabbitmqctl -n %s %s: %v: %s", node, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return string(out), nil
	}
	stop := func() {
		if cmd == nil || cmd.ProcessState != nil {
			return
		}
		p := beam()
		if _, err := ctl("stop"); err != nil && p > 0 {
			syscall.Kill(p, syscall.SIGKILL)
		}
		cmd.Wait()
	}
	b := &broker{name: name, kind: "RabbitMQ", url: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port), dir: dir, node: node,
		pid: beam, stop: stop, start: start, ctl: ctl}
	b.info = map[string]string{"node": node, "rabbitmq.conf": conf, "plugins": "none (enabled_plugins [])",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": map[bool]string{true: rabbitTunedErlArgs, false: "(unset)"}[tuned],
		"fd limit":                            "raised to the hard limit (the bench runs it as the rabbitmq user, not through su)"}
	return b
}

// startRabbit starts the single RabbitMQ node of scenarios 1-20 (default
// or tuned), named warrenbench<port>@localhost.
func startRabbit(tmp string, tuned bool) (*broker, error) {
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		return nil, fmt.Errorf("rabbitmq-server not installed (apt-get install rabbitmq-server)")
	}
	name, tag := "RabbitMQ", "default"
	if tuned {
		name, tag = "RabbitMQ tuned", "tuned"
	}
	port := freePortExcept()
	b := rabbitNode(tmp, name, filepath.Join(tmp, "rabbit-"+tag), fmt.Sprintf("warrenbench%d@localhost", port), port, tuned)
	if err := b.start(); err != nil {
		return nil, err
	}
	rabbitInfo(b)
	return b, nil
}

// rabbitInfo notes a running node's Erlang command line, schedulers,
// versions and open-files limit in b.info.
func rabbitInfo(b *broker) {
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", b.pid())); err == nil {
		b.info["erlang_command_line"] = strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	eval := func(expr string) string {
		out, err := b.ctl("eval", expr)
		if err != nil {
			return ""
		}
		return strings.Trim(strings.TrimSpace(out), "\"")
	}
	b.info["schedulers_online"] = eval("erlang:system_info(schedulers_online).")
	b.info["erlang_system_version"] = eval("erlang:system_info(system_version).")
	b.info["rabbitmq_version"] = eval("rabbit_misc:version().")
	if lim, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", b.pid())); err == nil {
		for _, l := range strings.Split(string(lim), "\n") {
			if strings.HasPrefix(l, "Max open files") {
				b.info["open_files_limit"] = strings.Join(strings.Fields(l)[3:5], " / ")
			}
		}
	}
}

// portOpen reports whether something accepts connections on port.
func portOpen(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
