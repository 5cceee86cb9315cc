// Package broker is the composition root of a Warren node: it wires the
// metadata store, the vhosts, authentication and the AMQP listeners, starts
// every goroutine through a tracked helper, and shuts them down in order.
//
//	b, err := broker.New(config.Default(), logger)
//	err = b.Start()   // listens on cfg.AMQPListeners
//	defer b.Stop()
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/conn"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/store"
	"github.com/warrenmq/warren/internal/vhost"
	"github.com/warrenmq/warren/internal/wal"
)

// Version is the node's version string.
const Version = "0.1.0"

// Broker is one node.
type Broker struct {
	cfg     config.Config
	log     *slog.Logger
	meta    *metadata.Store
	metaLog *metadata.DurableLog
	msgs    *store.MsgStore
	pager   *store.MsgStore // transient messages paged out (nil without a data directory)
	memory  *queue.Memory
	storeFS wal.FS // nil: the real file system

	cluster  *clusterNode // nil: a standalone node
	nodeName string       // in the cluster ("" standalone)
	ms       membership   // join_cluster, reset, forget_cluster_node (membership.go)
	repl     replicas     // replicated queues' replicas (replicated.go)
	live     liveness     // the other nodes, seen from here (liveness.go)

	mu         sync.RWMutex
	vhosts     map[string]*vhost.VHost
	matchers   map[[2]string]*auth.Matcher
	permGen    atomic.Uint64 // moves on every permission, user or vhost change
	listeners  []net.Listener
	conns      map[*conn.Conn]struct{}
	stopping   bool
	appStopped bool
	draining   bool     // maintenance mode (maintenance.go)
	bound      []string // listener addresses as first bound (port 0 resolved)

	alarmMu    sync.Mutex
	checkMu    sync.Mutex // serialises checkAlarms
	alarms     map[string]bool
	blocked    atomic.Bool
	alarmEvery time.Duration
	stopAlarms chan struct{}
	alarmOnce  sync.Once
	started    time.Time
	churn      churnCounters

	wg sync.WaitGroup
}

// New builds a node from cfg. Nothing listens until Start.
func New(cfg config.Config, log *slog.Logger) (*Broker, error) {
	return newBroker(cfg, log, nil)
}

// newBroker is New with the file system the message store uses (nil: the
// real one); tests inject storage faults through it.
func newBroker(cfg config.Config, log *slog.Logger, fs wal.FS) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		cfg:      cfg,
		log:      log,
		vhosts:   map[string]*vhost.VHost{},
		matchers: map[[2]string]*auth.Matcher{},
		conns:    map[*conn.Conn]struct{}{},
		started:  time.Now(),

		alarms:     map[string]bool{},
		alarmEvery: time.Second,
		memory:     &queue.Memory{},
		storeFS:    fs,
		stopAlarms: make(chan struct{}),
	}
	if err := b.recover(); err != nil {
		b.closeStores()
		return nil, err
	}
	if err := b.boot(); err != nil {
		b.closeStores()
		return nil, err
	}
	if b.cluster == nil && b.cfg.DataDir != "" {
		if err := b.restoreAfterReset(); err != nil {
			b.closeStores()
			return nil, err
		}
		b.openJoinPort()
	}
	b.ms.ready.Store(true) // membership requests are answered from now on
	return b, nil
}

// recover opens the metadata log and the message store under the data
// directory and rebuilds definitions and durable queues' messages.
func (b *Broker) recover() error {
	var recovered []metadata.Command
	if b.cfg.Clustered() || clusteredByJoin(b.cfg.DataDir) {
		return b.recoverClustered()
	}
	if b.cfg.DataDir == "" {
		b.meta = metadata.NewStore(metadata.NewLocalLog())
		b.meta.Observe(b.apply)
		return nil
	}
	start := time.Now()
	ml, cmds, err := metadata.OpenDurable(filepath.Join(b.cfg.DataDir, "meta"), b.log)
	if err != nil {
		return fmt.Errorf("recovering definitions from %s: %w", b.cfg.DataDir, err)
	}
	b.metaLog, recovered = ml, cmds
	queued, err := b.openMessageStores()
	if err != nil {
		return err
	}
	b.meta = metadata.NewStore(ml)
	b.meta.Observe(b.recordDrops) // before apply deletes the runtime queue
	b.meta.Observe(b.apply)
	b.meta.Observe(b.replicateObserved)
	durable := metadata.DurableCommands(recovered)
	if err := b.meta.Bootstrap(durable); err != nil {
		return err
	}
	live, gone, missing := classifyQueued(recovered, b.meta, queued)
	if len(missing) > 0 {
		e := &MissingQueuesError{DataDir: b.cfg.DataDir, Queues: map[string]int{}}
		for _, key := range missing {
			e.Queues[key] = queued.Count(key)
		}
		return e
	}
	// deleted (or exclusive, or transient) queues: their messages are
	// dead; the removal is synced before compaction forgets the queue
	dropped, err := b.dropQueued(queued, gone, false)
	if err != nil {
		return err
	}
	if err := ml.Compact(durable); err != nil {
		return fmt.Errorf("compacting the metadata log: %w", err)
	}
	restored, err := b.restoreQueued(queued, live)
	if err != nil {
		return err
	}
	if err := b.restoreReplicated(); err != nil {
		return err
	}
	if err := b.finishMoves(queued, live); err != nil {
		return err
	}
	queued = nil // the index is in the queues now
	if restored > 100_000 {
		debug.FreeOSMemory() // give the recovery's scratch memory back now
	}
	if len(recovered) > 0 || restored > 0 {
		b.log.Info("node recovered", "definitions", len(durable), "messages", restored, "messages_of_deleted_queues_dropped", dropped, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// openMessageStores opens the message store (recovering what it holds:
// the returned index) and the paging store under the data directory.
func (b *Broker) openMessageStores() (*store.Recovery, error) {
	msgs, queued, err := store.Open(filepath.Join(b.cfg.DataDir, "msgs"), b.log, store.Options{FS: b.storeFS})
	if err != nil {
		return nil, fmt.Errorf("recovering messages from %s: %w", b.cfg.DataDir, err)
	}
	b.msgs = msgs
	b.memory.SetBudget(b.bodyBudget())
	if b.pager, err = store.OpenPager(filepath.Join(b.cfg.DataDir, "paging"), b.log); err != nil {
		return nil, fmt.Errorf("opening the paging store under %s: %w", b.cfg.DataDir, err)
	}
	return queued, nil
}

// dropQueued removes the recovered messages of queues that are gone (the
// definitions saw them deleted) and syncs the removal; warn logs each
// queue. It returns how many messages it removed.
func (b *Broker) dropQueued(queued *store.Recovery, gone []string, warn bool) (int, error) {
	dropped := 0
	for _, key := range gone {
		refs := make([]uint64, 0, queued.Count(key))
		for m := range queued.Messages(key) {
			refs = append(refs, m.Ref)
		}
		b.msgs.Remove(key, refs)
		dropped += len(refs)
		if warn {
			vh, name, _ := strings.Cut(key, "\x00")
			b.log.Warn("dropping the messages of a queue the cluster deleted while this node was down", "vhost", vh, "queue", name, "messages", len(refs))
		}
	}
	if dropped > 0 {
		if err := b.msgs.Sync(); err != nil {
			return dropped, fmt.Errorf("recording the removal of %d messages of deleted queues: %w", dropped, err)
		}
	}
	return dropped, nil
}

// restoreQueued hands the recovered messages of live durable queues to
// their runtime queues and returns how many it restored.
func (b *Broker) restoreQueued(queued *store.Recovery, live []string) (int, error) {
	restored := 0
	for _, key := range live {
		vh, name, _ := strings.Cut(key, "\x00")
		var q *queue.Queue
		if v := b.VHost(vh); v != nil {
			q = v.LookupQueue(name)
		}
		if q == nil {
			return restored, fmt.Errorf("recovery: durable queue %q in vhost %q is defined but was not created (a bug; the messages are kept, nothing was deleted)", name, vh)
		}
		var group uint64
		b.meta.Read(func(st *metadata.State) { group = st.Queues[[2]string{vh, name}].Group })
		if group != 0 {
			continue // replicated since: finishMoves moves them into its group
		}
		q.Restore(queued.Messages(key))
		restored += queued.Count(key)
	}
	return restored, nil
}

func (b *Broker) closeStores() {
	b.repl.close()
	if b.cluster != nil {
		b.cluster.close()
	}
	if b.ms.join != nil {
		_ = b.ms.join.Close()
	}
	if b.pager != nil {
		_ = b.pager.Close()
	}
	if b.msgs != nil {
		if err := b.msgs.Close(); err != nil {
			b.log.Error("closing the message store", "err", err)
		}
	}
	if b.metaLog != nil {
		if err := b.metaLog.Close(); err != nil {
			b.log.Error("closing the metadata log", "err", err)
		}
	}
}

// Metadata returns the definitions store.
func (b *Broker) Metadata() *metadata.Store { return b.meta }

// Config returns the node's configuration.
func (b *Broker) Config() config.Config {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.cfg
}

// boot creates the default vhost and user on an empty node, as RabbitMQ does.
func (b *Broker) boot() error {
	empty := true
	// no users: a new node or cluster (a cluster may already hold the
	// vhost of a queue a node adopted from its standalone run)
	b.meta.Read(func(st *metadata.State) { empty = len(st.Users) == 0 })
	if !empty {
		return nil
	}
	c := b.cfg
	// one command, so that the nodes of a new cluster, which may all find
	// the definitions empty, never serve clients with half the defaults
	boot := metadata.Command{Op: metadata.OpBoot, VHost: c.DefaultVHost,
		User:       &metadata.User{Name: c.DefaultUser, PasswordHash: auth.HashPassword(c.DefaultPass), HashingAlgorithm: "rabbit_password_hashing_sha256", Tags: c.DefaultUserTags},
		Permission: &metadata.Permission{User: c.DefaultUser, VHost: c.DefaultVHost, Configure: c.DefaultPermissions[0], Write: c.DefaultPermissions[2], Read: c.DefaultPermissions[1]}}
	if err := b.meta.Propose(boot); err != nil {
		return fmt.Errorf("creating the default definitions: %w", err)
	}
	return nil
}

// storage returns where queues keep messages (nil interfaces, not nil
// pointers, when the node has no data directory).
func (b *Broker) storage() (st, pager queue.Store, mem *queue.Memory) {
	if b.msgs != nil {
		st = b.msgs
	}
	if b.pager != nil {
		pager = b.pager
	}
	return st, pager, b.memory
}

// bodyBudget is how many bytes of message bodies that are also on disk
// queues keep in memory: a quarter of the memory watermark, at most 256 MiB.
func (b *Broker) bodyBudget() int64 {
	return min(b.memoryLimit()/4, 256<<20)
}

// apply keeps the runtime in step with committed metadata commands.
func (b *Broker) apply(c metadata.Command) {
	switch c.Op {
	case metadata.OpAddVHost:
		b.mu.Lock()
		_, exists := b.vhosts[c.VHost]
		var v *vhost.VHost
		if !exists {
			v = vhost.New(c.VHost, b.meta, b.log)
			v.SetNode(b.nodeName)
			if b.cluster != nil && b.cluster.fwd != nil {
				v.SetForwarder(b.cluster.fwd)
				v.SetPlacer(b.place)
			}
			v.SetStore(b.storage())
			v.SetReplicated(b.replicatedStore)
			v.SetCounters(&b.churn.queues)
			b.vhosts[c.VHost] = v
		}
		b.mu.Unlock()
		if v != nil {
			for _, x := range vhost.DefaultExchanges {
				x := x
				x.VHost = c.VHost
				v.Apply(metadata.Command{Op: metadata.OpDeclareExchange, Exchange: &x})
			}
		}
		return
	case metadata.OpDeleteVHost:
		b.mu.Lock()
		v := b.vhosts[c.VHost]
		delete(b.vhosts, c.VHost)
		b.permGen.Add(1)
		clear(b.matchers)
		b.mu.Unlock()
		if v != nil {
			v.Apply(c)
		}
		b.closeConnections(func(i conn.Info) bool { return i.VHost == c.VHost }, fmt.Sprintf("vhost '%s' is deleted", c.VHost))
		return
	case metadata.OpSetPermissions, metadata.OpClearPermissions, metadata.OpDeleteUser, metadata.OpPutUser:
		// Sessions ask for their user's permissions on every operation and
		// drop their caches when the generation moves: a change reaches
		// open connections at once.
		b.mu.Lock()
		b.permGen.Add(1)
		clear(b.matchers)
		b.mu.Unlock()
		if c.Op == metadata.OpDeleteUser {
			// RabbitMQ (rabbit_connection_tracking) closes the user's
			// connections with 320 CONNECTION_FORCED
			b.closeConnections(func(i conn.Info) bool { return i.User == c.Name }, fmt.Sprintf("user '%s' is deleted", c.Name))
		}
		return
	}
	vh := c.VHost
	switch {
	case c.Exchange != nil:
		vh = c.Exchange.VHost
	case c.Queue != nil:
		vh = c.Queue.VHost
	case c.Binding != nil:
		vh = c.Binding.VHost
	case c.Policy != nil:
		vh = c.Policy.VHost
	}
	if v := b.VHost(vh); v != nil {
		v.Apply(c)
	}
}

// VHost returns the named vhost or nil.
func (b *Broker) VHost(name string) *vhost.VHost {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.vhosts[name]
}

// Authenticate implements conn.Server.
func (b *Broker) Authenticate(mechanism string, response []byte, remote net.Addr) (string, error) {
	var cred auth.Credentials
	var err error
	switch mechanism {
	case "PLAIN":
		cred, err = auth.ParsePlain(response)
	case "AMQPLAIN":
		cred, err = auth.ParseAMQPlain(response)
	default:
		return "", amqp.NewError(amqp.CommandInvalid, 10, 11, "unknown authentication mechanism '%s'", mechanism)
	}
	if err != nil {
		b.log.Warn("malformed SASL response", "mechanism", mechanism, "remote", remote.String(), "err", err)
		return "", conn.ErrAuthFailed
	}
	var user metadata.User
	var ok bool
	b.meta.Read(func(st *metadata.State) { user, ok = st.Users[cred.Username] })
	if !ok || user.PasswordHash == "" || !auth.CheckPasswordWith(user.HashingAlgorithm, user.PasswordHash, cred.Password) {
		b.log.Warn("login refused: invalid credentials", "user", cred.Username, "remote", remote.String(), "mechanism", mechanism)
		return "", amqp.NewError(amqp.AccessRefused, 10, 11, "Login was refused using authentication mechanism %s. For details see the broker logfile.", mechanism)
	}
	for _, lu := range b.cfg.LoopbackUsers {
		if lu == cred.Username && !auth.IsLoopback(remote) {
			b.log.Warn("login refused: user can only connect via localhost", "user", cred.Username, "remote", remote.String())
			return "", amqp.NewError(amqp.AccessRefused, 10, 11, "Login was refused using authentication mechanism %s. For details see the broker logfile.", mechanism)
		}
	}
	return cred.Username, nil
}

// OpenVHost implements conn.Server.
func (b *Broker) OpenVHost(user, name string) (conn.VHost, error) {
	v := b.VHost(name)
	if v == nil {
		return nil, amqp.NewError(amqp.NotAllowed, 10, 40, "vhost %s not found", name)
	}
	m, err := b.Matcher(user, name)
	if err != nil || m == nil {
		return nil, amqp.NewError(amqp.NotAllowed, 10, 40, "access to vhost '%s' refused for user '%s'", name, user)
	}
	return v.SessionWith(user, vhost.PermissionSource{
		Generation: b.permGen.Load,
		Permissions: func() *auth.Matcher {
			if b.VHost(name) != v {
				return nil // the vhost was deleted (and maybe re-created)
			}
			m, _ := b.Matcher(user, name)
			return m
		},
	}), nil
}

// closeConnections closes, with 320 CONNECTION_FORCED and reason, every
// connection whose info matches. It does not wait for them.
func (b *Broker) closeConnections(match func(conn.Info) bool, reason string) {
	for _, c := range b.Connections() {
		if i := c.Info(); i.User != "" && match(i) {
			b.log.Info("closing connection", "conn", i.Name, "reason", reason)
			go c.Close(amqp.ConnectionForced, reason)
		}
	}
}

// CanImpersonate implements conn.Server: users tagged impersonator may
// publish with another user's user_id property (RabbitMQ's rule).
func (b *Broker) CanImpersonate(user string) bool {
	var ok bool
	b.meta.Read(func(st *metadata.State) {
		for _, t := range st.Users[user].Tags {
			if t == "impersonator" {
				ok = true
			}
		}
	})
	return ok
}

// Matcher returns the compiled permissions of user in vhost (nil if none).
func (b *Broker) Matcher(user, vh string) (*auth.Matcher, error) {
	key := [2]string{user, vh}
	gen := b.permGen.Load()
	b.mu.RLock()
	m := b.matchers[key]
	b.mu.RUnlock()
	if m != nil {
		return m, nil
	}
	var p metadata.Permission
	var ok bool
	b.meta.Read(func(st *metadata.State) { p, ok = st.Permissions[key] })
	if !ok {
		return nil, nil
	}
	m, err := auth.CompilePermission(auth.Permission{Configure: p.Configure, Write: p.Write, Read: p.Read})
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.permGen.Load() == gen {
		// not if permissions changed meanwhile: m may be stale
		b.matchers[key] = m
	}
	b.mu.Unlock()
	return m, nil
}

// Start opens the AMQP listeners and serves connections (a node paused
// in a minority opens them when a majority is reachable again).
func (b *Broker) Start() error {
	b.alarmOnce.Do(func() { b.goTracked(func() { b.alarmLoop(b.stopAlarms) }) })
	if paused, _ := b.Paused(); paused || b.UnderMaintenance() {
		return nil
	}
	b.mu.RLock()
	addrs := b.bound
	b.mu.RUnlock()
	first := len(addrs) == 0
	if first {
		addrs = b.cfg.AMQPListeners
	}
	for _, addr := range addrs {
		addr = normaliseListen(addr)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			b.closeListeners()
			return fmt.Errorf("cannot listen for AMQP on %s: %w (is another broker running? set listeners.tcp.default or --port)", addr, err)
		}
		b.mu.Lock()
		b.listeners = append(b.listeners, ln)
		if first {
			b.bound = append(b.bound, ln.Addr().String())
		}
		b.mu.Unlock()
		b.log.Info("started TCP listener", "addr", ln.Addr().String())
		b.goTracked(func() { b.accept(ln) })
	}
	return nil
}

// normaliseListen turns rabbitmq.conf's "5672" into ":5672".
func normaliseListen(addr string) string {
	if !strings.Contains(addr, ":") {
		return ":" + addr
	}
	return addr
}

// Addrs returns the bound AMQP listener addresses.
func (b *Broker) Addrs() []net.Addr {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]net.Addr, 0, len(b.listeners))
	for _, l := range b.listeners {
		out = append(out, l.Addr())
	}
	return out
}

func (b *Broker) goTracked(fn func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
}

func (b *Broker) accept(ln net.Listener) {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failures (EMFILE...): back off and retry.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			b.log.Error("accept failed; retrying", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		var dur conn.Durability
		if b.msgs != nil {
			dur = b.msgs
		}
		c := conn.New(nc, b, conn.Config{
			Durability:     dur,
			ChannelMax:     b.cfg.ChannelMax,
			FrameMax:       b.cfg.FrameMax,
			Heartbeat:      b.cfg.Heartbeat,
			MaxMessageSize: b.cfg.MaxMessageSize,
			Product:        "Warren",
			Version:        Version,
			ClusterName:    b.cfg.ClusterName,
			ReplyToTag:     b.replyToTag(),
			Logger:         b.log,
		})
		b.mu.Lock()
		if b.stopping {
			b.mu.Unlock()
			_ = nc.Close()
			continue
		}
		b.conns[c] = struct{}{}
		b.churn.connCreated.Add(1)
		b.mu.Unlock()
		b.goTracked(func() {
			c.Serve()
			opened := c.Info().ChannelsOpened
			b.mu.Lock()
			delete(b.conns, c)
			b.churn.chansOfClosed.Add(opened)
			b.churn.connClosed.Add(1)
			b.mu.Unlock()
		})
	}
}

// Connections returns the open connections.
func (b *Broker) Connections() []*conn.Conn {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]*conn.Conn, 0, len(b.conns))
	for c := range b.conns {
		out = append(out, c)
	}
	return out
}

func (b *Broker) closeListeners() {
	b.mu.Lock()
	lns := b.listeners
	b.listeners = nil
	b.mu.Unlock()
	for _, l := range lns {
		_ = l.Close()
	}
}

// Stop closes listeners, closes every connection with 320
// CONNECTION_FORCED and waits (bounded by ctx) for all goroutines.
func (b *Broker) Stop(ctx context.Context) error {
	b.mu.Lock()
	b.stopping = true
	b.mu.Unlock()
	select {
	case <-b.stopAlarms:
	default:
		close(b.stopAlarms)
	}
	b.closeListeners()
	for _, c := range b.Connections() {
		c.Close(amqp.ConnectionForced, "broker forced connection closure with reason 'shutdown'")
	}
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		b.closeStores()
		b.log.Info("node stopped")
		return nil
	case <-ctx.Done():
		b.closeStores()
		return fmt.Errorf("shutdown: %w", ctx.Err())
	}
}

// Hostname returns the short host name used in node names.
func Hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		h = h[:i]
	}
	return h
}

// VHostNames lists the vhosts, sorted.
func (b *Broker) VHostNames() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]string, 0, len(b.vhosts))
	for n := range b.vhosts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Started returns when the node started.
func (b *Broker) Started() time.Time { return b.started }

// StopApp stops the AMQP side (rabbitmqctl stop_app): listeners close and
// every connection is closed with 320; the process and its management
// endpoint stay up.
func (b *Broker) StopApp() {
	b.closeListeners()
	for _, c := range b.Connections() {
		c.Close(amqp.ConnectionForced, "broker forced connection closure with reason 'shutdown'")
	}
	b.mu.Lock()
	b.appStopped = true
	b.mu.Unlock()
}

// StartApp reopens the AMQP listeners after StopApp.
func (b *Broker) StartApp() error {
	if b.ms.restart.Load() {
		// a membership change: the broker restarts from its data directory
		if !b.restartNow() {
			return ErrRestartRequired
		}
		return nil
	}
	b.mu.Lock()
	stopped := b.appStopped
	b.appStopped = false
	b.mu.Unlock()
	if !stopped {
		return nil
	}
	return b.Start()
}

// Running reports whether the AMQP side is up.
func (b *Broker) Running() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return !b.appStopped && !b.stopping
}

// SetMemoryHighWatermark changes vm_memory_high_watermark.relative at run
// time (rabbitmqctl set_vm_memory_high_watermark).
func (b *Broker) SetMemoryHighWatermark(f float64) {
	b.mu.Lock()
	b.cfg.VMMemoryHighWatermark = f
	b.cfg.VMMemoryHighWatermarkAbsolute = 0
	b.mu.Unlock()
	b.checkAlarms()
}

// QueueBodyBytes returns the bytes of message bodies queues hold in memory
// (bodies paged out to disk do not count).
func (b *Broker) QueueBodyBytes() int64 { return b.memory.Used() }
