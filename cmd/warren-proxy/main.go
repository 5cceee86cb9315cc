// Command warren-proxy is the load balancer in front of the nodes
// (HAProxy's role), driven by a haproxy.cfg-style file:
//
//	warren-proxy -f haproxy.cfg        # -c checks the file, -db stays in the foreground
//
// SIGHUP or SIGUSR2 reloads (established sessions continue), SIGTERM
// drains, SIGINT stops.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/warrenmq/warren/internal/lb"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

const proxyUsage = `usage: warren-proxy -f haproxy.cfg [-f more.cfg] [-c] [-D] [-db] [-q] [-p pidfile] [--haproxy-checks]
  -f FILE            configuration file (may be repeated)
  -c                 check the configuration and exit
  -D                 run in the background (also the global 'daemon' keyword)
  -db                stay in the foreground even with 'daemon'
  -q                 quiet: no warnings
  -p FILE            write the process id to FILE (also the global 'pidfile' keyword)
  --haproxy-checks   server health from checks only, exactly as HAProxy: live traffic
                     errors count only for servers with 'observe layer4' (by default
                     warren-proxy also observes every checked server; see the README)
  -h, --help         this text
  -v                 the version
`

func run(args []string) int {
	var files []string
	check, daemon, foreground, quiet, haproxyChecks := false, false, false, false, false
	pidFile := ""
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "-f":
			if i+1 >= len(args) {
				fmt.Fprintln(os.Stderr, "warren-proxy: -f needs a file")
				return 64
			}
			i++
			files = append(files, args[i])
		case "-c":
			check = true
		case "-D":
			daemon = true
		case "-db":
			foreground = true
		case "-q":
			quiet = true
		case "-p":
			if i+1 >= len(args) {
				fmt.Fprintln(os.Stderr, "warren-proxy: -p needs a file")
				return 64
			}
			i++
			pidFile = args[i]
		case "--haproxy-checks":
			haproxyChecks = true
		case "-h", "--help":
			fmt.Print(proxyUsage)
			return 0
		case "-v", "-vv":
			fmt.Printf("warren-proxy version %s (HAProxy-compatible configuration subset)\n", lb.Version)
			return 0
		default:
			if strings.HasPrefix(a, "-f") && len(a) > 2 {
				files = append(files, a[2:])
				continue
			}
			fmt.Fprintf(os.Stderr, "warren-proxy: unknown option %s\n%s", a, proxyUsage)
			return 64
		}
	}
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "warren-proxy: no configuration file: use -f haproxy.cfg")
		return 64
	}
	cfg, err := lb.ParseFiles(files)
	if err != nil {
		fmt.Fprintf(os.Stderr, "[ALERT] %v\n[ALERT] Fatal errors found in configuration.\n", err)
		return 1
	}
	for _, w := range cfg.Warnings {
		if !quiet {
			fmt.Fprintf(os.Stderr, "[WARNING] %s\n", w)
		}
	}
	if check {
		fmt.Println("Configuration file is valid")
		return 0
	}
	if (daemon || cfg.Global.Daemon) && !foreground && os.Getenv("WARREN_PROXY_DAEMON") == "" {
		return detach()
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	rt := lb.New(log)
	rt.HAProxyChecks = haproxyChecks
	if err := rt.Apply(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "[ALERT] Starting proxies: %v\n", err)
		return 1
	}
	if pidFile == "" {
		pidFile = cfg.Global.PidFile
	}
	if pidFile != "" {
		if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "[ALERT] cannot write the pid file %s: %v (choose a writable path with 'pidfile' or -p)\n", pidFile, err)
			rt.Close(context.Background(), false)
			return 1
		}
		defer os.Remove(pidFile)
	}
	log.Info("warren-proxy started", "files", strings.Join(files, ","))
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT)
	for s := range sig {
		switch s {
		case syscall.SIGHUP, syscall.SIGUSR2:
			nc, err := lb.ParseFiles(files)
			if err != nil {
				log.Error("reload refused: configuration has errors; keeping the running one", "err", err)
				continue
			}
			if err := rt.Apply(nc); err != nil {
				log.Error("reload failed; keeping the running configuration", "err", err)
				continue
			}
			log.Info("configuration reloaded")
		case syscall.SIGTERM:
			log.Info("draining: no new sessions; waiting for established ones")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			rt.Close(ctx, true)
			cancel()
			return 0
		case syscall.SIGINT:
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			rt.Close(ctx, false)
			cancel()
			return 0
		}
	}
	return 0
}

// detach re-executes the program in a new session with its output
// discarded, as HAProxy's daemon mode does, and returns at once.
func detach() int {
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), "WARREN_PROXY_DAEMON=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "warren-proxy: cannot daemonize:", err)
		return 1
	}
	fmt.Println(cmd.Process.Pid)
	return 0
}
