// Command warren-server runs a Warren node: an AMQP 0-9-1 broker that
// RabbitMQ clients use unchanged. With no flags it listens on 5672 with
// vhost "/" and user guest/guest (loopback only), like a fresh RabbitMQ.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // --pprof
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/node"
	"github.com/warrenmq/warren/internal/wal"
)

// repair runs the offline WAL repair (wal.Repair) and prints its report.
func repair(dir string, out io.Writer) error {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("--repair-wal %s: not a directory (give the log directory named in the error, e.g. DATA_DIR/msgs or DATA_DIR/meta/log)", dir)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rep, err := wal.Repair(wal.Options{Dir: dir, Logger: log})
	if err != nil {
		return fmt.Errorf("repairing %s: %w", dir, err)
	}
	fmt.Fprint(out, rep)
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "warren-server:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	def := config.Default()
	fs := flag.NewFlagSet("warren-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", os.Getenv("WARREN_CONFIG_FILE"), "rabbitmq.conf-style configuration file (env WARREN_CONFIG_FILE)")
	port := fs.Int("port", 5672, "AMQP port on all interfaces (env WARREN_NODE_PORT; overrides listeners.tcp.default)")
	mport := fs.Int("management-port", def.ManagementPort, "management HTTP API and web UI port (env WARREN_MANAGEMENT_PORT; management.tcp.port; 0 disables)")
	pport := fs.Int("prometheus-port", def.PrometheusPort, "Prometheus metrics port (prometheus.tcp.port; 0 disables)")
	cport := fs.Int("control-port", def.ControlPort, "warrenctl's control port, on control.tcp.ip (127.0.0.1 by default; env WARREN_CONTROL_PORT; control.tcp.port; 0 disables)")
	nodeName := fs.String("nodename", "", "node name, warren@HOST (env WARREN_NODENAME; default warren@<short hostname>)")
	distPort := fs.Int("dist-port", def.DistPort, "inter-node port of a clustered node (env WARREN_DIST_PORT; distribution.listener.port_range.min)")
	dataDir := fs.String("data-dir", "", "data directory (env WARREN_DATA_DIR; default ./warren-data)")
	logLevel := fs.String("log-level", "", "debug, info, warning or error (log.console.level)")
	pprofAddr := fs.String("pprof", "", "serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060)")
	repairWAL := fs.String("repair-wal", "", "offline: move the damaged segments of the write-ahead log in this directory aside (nothing is deleted), report what was lost, and exit; stop the node first")
	recreate := fs.Bool("recreate-missing-queues", false, "offline: declare again (durable, default arguments) every queue the message store holds messages for but the definitions lack, then exit; stop the node first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *repairWAL != "" {
		return repair(*repairWAL, os.Stdout)
	}
	// a flag overrides the file and the environment only when given
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	cfg := def
	if *cfgFile != "" {
		if err := config.ParseFile(*cfgFile, &cfg); err != nil {
			return err
		}
	}
	if err := config.ApplyEnv(&cfg, os.Getenv); err != nil {
		return err
	}
	if given["port"] {
		cfg.AMQPListeners = []string{":" + strconv.Itoa(*port)}
	}
	if given["management-port"] {
		cfg.ManagementPort = *mport
	}
	if given["prometheus-port"] {
		cfg.PrometheusPort = *pport
	}
	if given["control-port"] {
		cfg.ControlPort = *cport
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *nodeName != "" {
		cfg.NodeName = *nodeName
	}
	if given["dist-port"] {
		cfg.DistPort = *distPort
	}
	if *logLevel != "" {
		cfg.LogLevel = *logLevel
	}
	level := slog.LevelInfo
	switch cfg.LogLevel {
	case "debug":
		level = slog.LevelDebug
	case "warning", "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: level}))
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	if *recreate {
		keys, err := broker.RecreateMissingQueues(cfg.DataDir, log, nil)
		if err != nil {
			return err
		}
		for _, k := range keys {
			vh, name, _ := strings.Cut(k, "\x00")
			fmt.Printf("declared queue %q in vhost %q\n", name, vh)
		}
		fmt.Printf("%d queues declared again under %s\n", len(keys), cfg.DataDir)
		return nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("cannot create data directory %s: %w (set --data-dir or WARREN_DATA_DIR)", cfg.DataDir, err)
	}
	if *pprofAddr != "" {
		go func() { log.Error("pprof server stopped", "err", http.ListenAndServe(*pprofAddr, nil)) }()
	}
	n, err := node.Start(cfg, log)
	if err != nil {
		return err
	}
	log.Info("Warren node started", "node", cfg.NodeName, "version", broker.Version, "data_dir", cfg.DataDir, "cookie_file", n.CookiePath)
	// a membership change (warrenctl join_cluster, reset, or another node
	// joining this standalone one) restarts the node from its data
	// directory: the process executes itself again, keeping its pid
	restart := make(chan struct{}, 1)
	n.Broker.SetRestart(func() {
		select {
		case restart <- struct{}{}:
		default:
		}
	})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	select {
	case s := <-sig:
		log.Info("stopping node", "signal", s.String())
		return n.Stop(ctx)
	case <-restart:
		log.Info("restarting the node: its cluster membership changed")
		time.Sleep(200 * time.Millisecond) // let the answer to the request go out
		if err := n.Stop(ctx); err != nil {
			log.Warn("stopping before the restart", "err", err)
		}
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot restart: %w; start warren-server again", err)
		}
		return syscall.Exec(exe, os.Args, os.Environ())
	}
}
