// Command warren-vrrp holds a floating virtual IP with VRRP (keepalived's
// role), driven by a keepalived.conf-style file:
//
//	warren-vrrp -f /etc/keepalived/keepalived.conf   # -t tests the file
//
// It runs in the foreground and logs to stdout (-D detaches, --pid-file
// writes the pid). SIGUSR1 writes a state dump (instances and
// vrrp_sync_groups) to /tmp/warren-vrrp.data; SIGTERM or SIGINT stops
// gracefully (the master hands over at once). --status-addr serves the
// instances' states as JSON ({"VI_1":"MASTER"}), and at /sync_groups the
// sync groups' states ({"G1":"MASTER"}).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/warrenmq/warren/internal/vrrp"
	"github.com/warrenmq/warren/internal/vrrp/netlink"
)

func main() { os.Exit(run(os.Args[1:])) }

const vrrpUsage = `usage: warren-vrrp [-f keepalived.conf] [-t] [-D] [-p pidfile] [--status-addr 127.0.0.1:9000] [--dump-file F]
  -f, --use-file FILE    configuration (default /etc/keepalived/keepalived.conf)
  -t, --config-test      check the configuration and exit
  -D, --daemon           accepted (warren-vrrp stays in the foreground; run it under a service manager)
  -p, --pid-file FILE    write the process id to FILE
  --status-addr ADDR     serve the instances' state as JSON on ADDR
  --dump-file FILE       where SIGUSR1 writes the state dump (default /tmp/warren-vrrp.data)
  -n, -l, -P             accepted for keepalived compatibility
  -h, --help             this text
  -v, --version          the version
`

func run(args []string) int {
	file := "/etc/keepalived/keepalived.conf"
	test, daemon := false, false
	pidFile, status, dump := "", "", "/tmp/warren-vrrp.data"
	for i := 0; i < len(args); i++ {
		next := func() string {
			if i+1 < len(args) {
				i++
				return args[i]
			}
			fmt.Fprintf(os.Stderr, "warren-vrrp: %s needs a value\n", args[i])
			os.Exit(64)
			return ""
		}
		switch args[i] {
		case "-f", "--use-file":
			file = next()
		case "-t", "--config-test":
			test = true
		case "-D", "--daemon":
			daemon = true
		case "-n", "--dont-fork", "-l", "--log-console", "-P", "--vrrp":
		case "--pid-file", "-p":
			pidFile = next()
		case "--status-addr":
			status = next()
		case "--dump-file":
			dump = next()
		case "-h", "--help":
			fmt.Print(vrrpUsage)
			return 0
		case "-v", "--version":
			fmt.Println("warren-vrrp 0.1.0 (keepalived-compatible VRRP subset)")
			return 0
		default:
			fmt.Fprintf(os.Stderr, "warren-vrrp: unknown option %s\n%s", args[i], vrrpUsage)
			return 64
		}
	}
	cfg, err := vrrp.Parse(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "warren-vrrp:", err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(os.Stderr, "warren-vrrp: warning:", w)
	}
	if test {
		fmt.Printf("%s: configuration is valid (%d instance(s))\n", file, len(cfg.Instances))
		return 0
	}
	if err := vrrp.CheckCapabilities(); err != nil {
		fmt.Fprintln(os.Stderr, "warren-vrrp:", err)
		return 1
	}
	if daemon && os.Getenv("WARREN_VRRP_CHILD") == "" {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "WARREN_VRRP_CHILD=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "warren-vrrp: cannot daemonize:", err)
			return 1
		}
		return 0
	}
	if pidFile != "" {
		os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
		defer os.Remove(pidFile)
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	// the interfaces to join the VRRP group on, per address family
	var ifs4, ifs6 []string
	seen := map[string]bool{}
	for _, in := range cfg.Instances {
		key := fmt.Sprint(in.IPv6, in.Interface)
		if seen[key] {
			continue
		}
		seen[key] = true
		if in.IPv6 {
			ifs6 = append(ifs6, in.Interface)
		} else {
			ifs4 = append(ifs4, in.Interface)
		}
	}
	nt, err := netlink.Open(ifs4, ifs6)
	if err != nil {
		fmt.Fprintln(os.Stderr, "warren-vrrp:", err)
		return 1
	}
	defer nt.Close()
	d, err := vrrp.NewDaemon(cfg, nt, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "warren-vrrp:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	go func() {
		for s := range sig {
			if s == syscall.SIGUSR1 {
				os.WriteFile(dump, []byte(d.Dump()), 0o644)
				continue
			}
			log.Info("stopping", "signal", s.String())
			cancel()
			return
		}
	}()
	if status != "" {
		go http.ListenAndServe(status, d.StatusHandler())
	}
	d.Run(ctx)
	return 0
}
