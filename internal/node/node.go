// Package node runs a whole Warren node: the broker, the management HTTP
// API and UI, and the Prometheus endpoint, with the node cookie. It is what
// cmd/warren-server calls after reading flags and configuration.
//
//	n, err := node.Start(cfg, logger)
//	defer n.Stop(ctx)
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/net/netutil"

	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/mgmt"
)

// Node is a running node.
type Node struct {
	Broker     *broker.Broker
	Cookie     string
	CookiePath string
	mgmt       *mgmt.Server
	servers    []*http.Server
	addrs      map[string]net.Addr
	log        *slog.Logger
}

// Start builds and starts everything; on error nothing is left running.
func Start(cfg config.Config, log *slog.Logger) (*Node, error) {
	n := &Node{log: log, addrs: map[string]net.Addr{}}
	n.CookiePath = broker.DefaultCookiePath(cfg.DataDir)
	cookie, err := broker.EnsureCookie(n.CookiePath)
	if err != nil {
		return nil, err
	}
	n.Cookie = cookie
	cfg.Cookie = cookie
	b, err := broker.New(cfg, log)
	if err != nil {
		return nil, err
	}
	n.Broker = b
	if err := b.Start(); err != nil {
		return nil, err
	}
	n.mgmt = mgmt.New(b, cookie, log)
	if cfg.ManagementPort > 0 || cfg.ManagementPort == -1 {
		if err := n.serve("management", cfg.ManagementIP, cfg.ManagementPort, n.mgmt); err != nil {
			n.Stop(context.Background())
			return nil, err
		}
		n.mgmt.AddListener("http", n.addrs["management"])
	}
	if cfg.PrometheusPort > 0 || cfg.PrometheusPort == -1 {
		if err := n.serve("prometheus", "", cfg.PrometheusPort, mgmt.MetricsHandler(b, log)); err != nil {
			n.Stop(context.Background())
			return nil, err
		}
		n.mgmt.AddListener("http/prometheus", n.addrs["prometheus"])
	}
	if cfg.ControlPort > 0 || cfg.ControlPort == -1 {
		ip := cfg.ControlIP
		if ip == "" {
			ip = "127.0.0.1"
		}
		if err := n.serve("control", ip, cfg.ControlPort, n.mgmt.Control()); err != nil {
			n.Stop(context.Background())
			return nil, err
		}
	}
	return n, nil
}

// serve listens on ip:port (-1 picks a free port, for tests).
func (n *Node) serve(name, ip string, port int, h http.Handler) error {
	if port == -1 {
		port = 0
		if ip == "" {
			ip = "127.0.0.1"
		}
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen for %s on %s: %w (set the port in warren.conf or with a flag)", name, addr, err)
	}
	// bounded in time and number, so a flood of idle connections cannot
	// take the file descriptors AMQP needs to accept clients
	cfg := n.Broker.Config()
	if cfg.HTTPMaxConnections > 0 {
		ln = netutil.LimitListener(ln, cfg.HTTPMaxConnections)
	}
	idle := cfg.HTTPIdleTimeout
	if idle <= 0 {
		idle = 120 * time.Second
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 5 * time.Minute, IdleTimeout: idle, MaxHeaderBytes: 256 << 10}
	n.servers = append(n.servers, srv)
	n.addrs[name] = ln.Addr()
	n.log.Info("started HTTP listener", "service", name, "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("HTTP server failed", "service", name, "err", err)
		}
	}()
	return nil
}

// Addr returns the bound address of "management", "prometheus" or
// "control".
func (n *Node) Addr(name string) net.Addr { return n.addrs[name] }

// Stop shuts the node down in order: HTTP, then the broker.
func (n *Node) Stop(ctx context.Context) error {
	for _, s := range n.servers {
		_ = s.Shutdown(ctx)
	}
	if n.mgmt != nil {
		n.mgmt.Close()
	}
	if n.Broker != nil {
		return n.Broker.Stop(ctx)
	}
	return nil
}
