package broker

// A clustered node (ADR 0005, first step): when warren.conf lists nodes
// under cluster_formation.classic_config, the node opens the inter-node
// port (internal/cluster, authenticated by the node cookie), runs a
// consensus host over it with its log under <data>/raft, and keeps its
// definitions in consensus group 1 (metadata.ReplicatedLog) instead of the
// local metadata log. Every node applies every committed definition, so
// users, vhosts, permissions, exchanges, bindings, policies and queues
// declared on any node exist on all of them.
//
// A queue's definition records its home (the node that declared it); the
// other nodes reach it through internal/forward over the inter-node link
// (publish, consume, get, ack, purge, counts). Messages are never split
// between nodes.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenmq/warren/internal/cluster"
	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/consensus"
	"github.com/warrenmq/warren/internal/forward"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/store"
	"github.com/warrenmq/warren/internal/vhost"
)

// metaGroup is the consensus group holding the definitions.
const metaGroup = 1

// snapshotEvery overrides the consensus host's snapshot interval (tests).
var snapshotEvery uint64

// DefaultQuorumTimeout bounds a definition change on a node that cannot
// reach a majority (then it fails with "no quorum: ...").
const DefaultQuorumTimeout = 10 * time.Second

// ClusterMember is one configured node of the cluster.
type ClusterMember struct {
	Name    string
	ID      uint64
	Addr    string // its inter-node address
	Running bool   // this node, or connected to this node
	Self    bool

	addrSet bool // Addr came from classic_config.addresses
}

type clusterNode struct {
	fwd     *forward.Forwarder
	self    cluster.NodeName
	id      uint64
	members []ClusterMember
	link    *cluster.Link
	rt      *cluster.RaftTransport
	host    *consensus.Host
	rlog    *metadata.ReplicatedLog
	closed  atomic.Bool
	mu      sync.Mutex      // members, peers (changed by membership.go)
	peers   map[uint64]bool // the link's peers
	linked  bool            // peers are added (after the log's replay began)
	peerMu  sync.Mutex      // serialises linkPeers
}

// FounderID is the Raft id of a node listed in
// cluster_formation.classic_config, so that the founders know each
// other's ids before they talk (ADR 0005): the FNV-64a hash of its name,
// folded to 16 bits because the consensus host keeps node ids below 2^16
// (the top 16 bits of its proposal ids). Two founders with the same id,
// or id 0, are refused at start.
func FounderID(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	s := h.Sum64()
	return (s ^ s>>16 ^ s>>32 ^ s>>48) & 0xffff
}

// clusterMembers checks the configured nodes and gives each its id.
func clusterMembers(cfg config.Config) (cluster.NodeName, []ClusterMember, bool, error) {
	self, out, err := configMembers(cfg)
	if err != nil && !cfg.Clustered() {
		err = nil // a node clustered by join_cluster (membership.go)
	}
	return self, out, false, err
}

func configMembers(cfg config.Config) (cluster.NodeName, []ClusterMember, error) {
	self, err := cluster.ParseNodeName(cfg.NodeName)
	if err != nil {
		return self, nil, fmt.Errorf("node name %q: %w (set --nodename or WARREN_NODENAME to warren@HOST)", cfg.NodeName, err)
	}
	var out []ClusterMember
	ids := map[uint64]string{}
	found := false
	for _, m := range cfg.Members() {
		n, err := cluster.ParseNodeName(m.Name)
		if err != nil {
			return self, nil, fmt.Errorf("cluster_formation.classic_config.nodes: %q: %w", m.Name, err)
		}
		id := FounderID(n.String())
		if other, dup := ids[id]; dup || id == 0 {
			return self, nil, fmt.Errorf("cluster_formation.classic_config.nodes: %s and %s hash to the same node id %d; rename one of them", other, n, id)
		}
		ids[id] = n.String()
		addr := m.Addr
		if addr == "" {
			addr = n.Addr(cfg.DistPort)
		}
		me := n == self
		found = found || me
		out = append(out, ClusterMember{Name: n.String(), ID: id, Addr: addr, Self: me, addrSet: m.Addr != ""})
	}
	if !found {
		return self, nil, fmt.Errorf("this node, %s, is not listed in cluster_formation.classic_config.nodes (%d nodes listed): list it there, or set --nodename to the name it has in that list", self, len(out))
	}
	return self, out, nil
}

// recoverClustered is recover for a node of a cluster: the definitions
// come from the consensus group once a majority of the configured nodes
// is reachable; messages of this node's durable queues from the local
// message store.
func (b *Broker) recoverClustered() error {
	if b.cfg.DataDir == "" {
		return errors.New("a clustered node needs a data directory (its consensus log lives there)")
	}
	if b.cfg.Cookie == "" {
		return errors.New("a clustered node needs the node cookie (the cookie file under the data directory)")
	}
	self, members, joined, err := clusterMembers(b.cfg)
	if err != nil {
		return err
	}
	if s, ms, ok, err := b.membersForStart(); err != nil { // membership.go
		return err
	} else if ok {
		self, members, joined = s, ms, b.joinedGroup()
	}
	cn := &clusterNode{self: self, members: members}
	var listen string
	var ids []uint64
	for _, m := range members {
		ids = append(ids, m.ID)
		if m.Self {
			cn.id = m.ID
			listen = m.Addr
			if !m.addrSet {
				listen = ":" + strconv.Itoa(b.cfg.DistPort) // every interface
			}
		}
	}
	b.cluster = cn
	b.nodeName = self.String()

	queued, err := b.openMessageStores()
	if err != nil {
		return err
	}

	distTLS, err := b.distTLS()
	if err != nil {
		return err
	}
	cn.link, err = cluster.Listen(cluster.Config{Name: self, ID: cn.id, Cookie: []byte(b.cfg.Cookie), Listen: listen, Logger: b.log, TLS: distTLS,
		OnRequest: func(from cluster.NodeName, req []byte) ([]byte, error) { return b.onRequest(from, req, 0) }})
	if err != nil {
		return fmt.Errorf("opening the inter-node port %s: %w (set distribution.listener.port_range.min, --dist-port or WARREN_DIST_PORT)", listen, err)
	}
	b.startForwarding(cn)
	var host atomic.Pointer[consensus.Host]
	cn.rt = cluster.NewRaftTransport(cn.link, cluster.RaftConfig{
		Deliver: func(envs []consensus.Envelope, large bool) bool {
			h := host.Load()
			if h == nil {
				return false
			}
			if large {
				return h.DeliverWait(envs, 5*time.Second)
			}
			return h.Deliver(envs)
		},
		Unreachable: func(to uint64, groups []uint64) {
			if h := host.Load(); h != nil {
				h.ReportUnreachable(to, groups...)
			}
		},
		SnapshotStatus: func(to, group uint64, ok bool) {
			if h := host.Load(); h != nil {
				h.ReportSnapshot(to, group, ok)
			}
		},
		Logger: b.log,
	})
	h, err := consensus.Open(consensus.Options{ID: cn.id, Dir: filepath.Join(b.cfg.DataDir, "raft"), Transport: cn.rt, Logger: b.log, SnapshotEvery: snapshotEvery,
		OnFail: func(err error) {
			b.log.Error("the consensus log failed; this node no longer takes part in the cluster: stop it, fix the disk and start it again", "err", err)
			b.StopApp()
		}})
	if err != nil {
		return fmt.Errorf("opening the consensus log under %s: %w", filepath.Join(b.cfg.DataDir, "raft"), err)
	}
	host.Store(h)
	cn.host = h
	if joined {
		ids = nil // its replica starts empty and learns from the leader
	}
	cn.rlog = metadata.NewReplicatedLog(h, metaGroup, ids)
	cn.rlog.Timeout = DefaultQuorumTimeout
	cn.rlog.Reachable = cn.reachable
	b.meta = metadata.NewStore(cn.rlog)
	// where replicated queues are placed until the cluster has a member
	// table (then the table: metadata.State.placementNodes): the
	// configured founders, the same list on every node
	var names []string
	for _, m := range b.cfg.Members() {
		if n, err := cluster.ParseNodeName(m.Name); err == nil {
			names = append(names, n.String())
		}
	}
	if len(names) == 0 && len(members) == 1 {
		names = []string{members[0].Name} // a standalone node made a one-node cluster by a join
	}
	b.meta.SetNodes(names)
	b.meta.Observe(b.recordDrops)
	b.meta.Observe(b.apply)
	b.meta.Observe(b.replicateObserved)
	b.meta.OnRestore(b.rebuildRuntime)
	b.meta.Observe(b.memberChanged)
	b.meta.OnRestore(b.syncMembers)
	if err := cn.rlog.Start(); err != nil {
		return fmt.Errorf("starting the definitions' consensus group: %w", err)
	}
	// the peers: the configured nodes, or the member table as replayed
	// so far (membership.go keeps them in step from now on)
	if err := b.linkPeers(); err != nil {
		return err
	}
	if err := b.waitForMajority(); err != nil {
		return err
	}
	if err := b.seedFromStandalone(); err != nil { // membership.go
		return err
	}
	// this node's transient and exclusive queues died with its previous
	// run (as on a standalone node, and as RabbitMQ deletes a restarted
	// node's transient queues): remove them from the shared definitions
	var stale []metadata.Queue
	b.meta.Read(func(s *metadata.State) {
		for _, q := range s.Queues {
			if q.Node == self.String() && (!q.Durable || q.Exclusive) {
				stale = append(stale, q)
			}
		}
	})
	for _, q := range stale {
		if err := b.meta.Propose(metadata.Command{Op: metadata.OpDeleteQueue, VHost: q.VHost, Name: q.Name}); err != nil {
			b.log.Warn("could not delete a transient queue of this node's previous run; delete it by hand", "vhost", q.VHost, "queue", q.Name, "err", err)
		}
	}

	// the definitions are now at least as new as any change committed
	// before this node started: queues the store holds messages for that
	// the cluster deleted meanwhile are gone
	// durable queues this node defined when it ran alone, with messages,
	// become the cluster's, at home here (their messages are not the
	// cluster's to delete)
	if err := b.adoptStandaloneQueues(queued, self.String()); err != nil {
		return err
	}
	var live, gone []string
	b.meta.Read(func(s *metadata.State) {
		for _, key := range queued.Queues() {
			vh, name, _ := strings.Cut(key, "\x00")
			if q, ok := s.Queues[[2]string{vh, name}]; ok && q.Durable && !q.Exclusive && (q.Node == "" || q.Node == self.String()) {
				live = append(live, key)
			} else {
				// deleted by the cluster while this node was down (or
				// declared again elsewhere: a new queue of that name)
				gone = append(gone, key)
			}
		}
	})
	dropped, err := b.dropQueued(queued, gone, true)
	if err != nil {
		return err
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
	b.goTracked(b.replicaLoop)
	b.startLiveness()
	b.log.Info("clustered node started", "node", self.String(), "nodes", len(members), "dist_addr", cn.link.Addr().String(), "messages", restored, "messages_of_deleted_queues_dropped", dropped)
	return nil
}

// waitForMajority commits a barrier through the definitions' group, so
// that every change committed before this node started is applied here,
// retrying until ClusterWait is over (RabbitMQ waits for its peers'
// tables the same way at boot).
func (b *Broker) waitForMajority() error {
	wait := b.cfg.ClusterWait
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	deadline := time.Now().Add(wait)
	full := b.cluster.rlog.Timeout
	defer func() { b.cluster.rlog.Timeout = full }() // nothing else proposes yet
	for {
		b.cluster.rlog.Timeout = min(3*time.Second, max(time.Until(deadline), 100*time.Millisecond))
		err := b.meta.Propose(metadata.Command{Op: metadata.OpBarrier})
		if err == nil {
			return nil
		}
		up, of := b.cluster.reachable()
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up waiting %s for a majority of the cluster (%d of %d nodes reachable): start more of the nodes listed in cluster_formation.classic_config.nodes, check that they share this node's cookie and can reach each other's inter-node ports: %w", wait, up, of, err)
		}
		b.log.Info("waiting for a majority of the cluster", "reachable", up, "nodes", of, "err", err)
		select {
		case <-b.stopAlarms:
			return errors.New("stopped while waiting for a majority of the cluster")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reachable counts the configured nodes this node is connected to,
// itself included.
func (cn *clusterNode) reachable() (up, of int) {
	ms := cn.list()
	for _, m := range ms {
		if m.Self || cn.link.Connected(m.ID) {
			up++
		}
	}
	return up, len(ms)
}

func (cn *clusterNode) close() {
	if !cn.closed.CompareAndSwap(false, true) {
		return
	}
	if cn.host != nil {
		_ = cn.host.Close()
	}
	if cn.rt != nil {
		_ = cn.rt.Close()
	}
	if cn.link != nil {
		_ = cn.link.Close()
	}
}

// ClusterStatus lists the configured nodes and which are running (seen
// from this node: itself, and the nodes its inter-node port is connected
// to). It returns nil on a standalone node.
func (b *Broker) ClusterStatus() []ClusterMember {
	cn := b.cluster
	if cn == nil {
		return nil
	}
	ms := cn.list()
	out := make([]ClusterMember, len(ms))
	for i, m := range ms {
		m.Running = m.Self || cn.link.Connected(m.ID)
		out[i] = m
	}
	return out
}

// NodeName is this node's name in its cluster ("" on a standalone node).
func (b *Broker) NodeName() string { return b.nodeName }

// DistAddr is the bound address of the inter-node port (nil standalone).
func (b *Broker) DistAddr() net.Addr {
	if b.cluster == nil {
		return nil
	}
	return b.cluster.link.Addr()
}

// ClusterLeader names the node leading the definitions' group ("" when
// there is none, or standalone).
func (b *Broker) ClusterLeader() string {
	cn := b.cluster
	if cn == nil {
		return ""
	}
	lead := cn.host.Leader(metaGroup)
	for _, m := range cn.list() {
		if m.ID == lead {
			return m.Name
		}
	}
	if lead != 0 {
		return strconv.FormatUint(lead, 10)
	}
	return ""
}

// rebuildRuntime brings the runtime objects in line with definitions
// replaced whole by a snapshot (a node far behind, or restarting from its
// own snapshot): vhosts, exchanges, queues, bindings and policies the
// state has are created; vhosts, exchanges and queues it lacks are
// deleted, as are bindings it lacks.
func (b *Broker) rebuildRuntime() {
	var st struct {
		vhosts    []string
		exchanges []metadata.Exchange
		queues    []metadata.Queue
		bindings  []metadata.Binding
		policies  []metadata.Policy
		xset      map[[2]string]bool
		qset      map[[2]string]bool
	}
	st.xset, st.qset = map[[2]string]bool{}, map[[2]string]bool{}
	b.meta.Read(func(s *metadata.State) {
		for n := range s.VHosts {
			st.vhosts = append(st.vhosts, n)
		}
		for k, x := range s.Exchanges {
			st.exchanges = append(st.exchanges, x)
			st.xset[k] = true
		}
		for k, q := range s.Queues {
			st.queues = append(st.queues, q)
			st.qset[k] = true
		}
		for _, bd := range s.Bindings {
			st.bindings = append(st.bindings, bd)
		}
		for _, p := range s.Policies {
			st.policies = append(st.policies, p)
		}
	})
	want := map[string]bool{}
	for _, n := range st.vhosts {
		want[n] = true
		b.apply(metadata.Command{Op: metadata.OpAddVHost, VHost: n})
	}
	for _, n := range b.VHostNames() {
		if !want[n] {
			b.apply(metadata.Command{Op: metadata.OpDeleteVHost, VHost: n})
		}
	}
	for _, x := range st.exchanges {
		b.apply(metadata.Command{Op: metadata.OpDeclareExchange, Exchange: &x})
	}
	for _, q := range st.queues {
		b.apply(metadata.Command{Op: metadata.OpDeclareQueue, Queue: &q})
	}
	for _, n := range st.vhosts {
		v := b.VHost(n)
		if v == nil {
			continue
		}
		for _, x := range v.Exchanges() {
			if !st.xset[[2]string{n, x.Def.Name}] && x.Def.Name != "" && !strings.HasPrefix(x.Def.Name, "amq.") {
				v.Apply(metadata.Command{Op: metadata.OpDeleteExchange, VHost: n, Name: x.Def.Name})
			}
		}
		for _, q := range v.Queues() {
			if name := q.Config().Name; !st.qset[[2]string{n, name}] {
				b.apply(metadata.Command{Op: metadata.OpDeleteQueue, VHost: n, Name: name})
			}
		}
	}
	bset := map[string]bool{}
	for _, bd := range st.bindings {
		bset[metadata.BindingKey(bd)] = true
		b.apply(metadata.Command{Op: metadata.OpBind, Binding: &bd})
	}
	// a binding the runtime routes by and the state lacks was removed in
	// the entries the snapshot stands for: it must not route any more
	for _, n := range st.vhosts {
		v := b.VHost(n)
		if v == nil {
			continue
		}
		for _, bd := range v.Bindings() {
			if !bset[metadata.BindingKey(bd)] {
				v.Apply(metadata.Command{Op: metadata.OpUnbind, Binding: &bd})
			}
		}
	}
	for _, p := range st.policies {
		b.apply(metadata.Command{Op: metadata.OpSetPolicy, Policy: &p})
	}
}

// startForwarding lets clients of this node use queues of other nodes
// (internal/forward) over the inter-node link.
func (b *Broker) startForwarding(cn *clusterNode) {
	cfg := forward.Config{
		Transport: cn.link,
		Node:      cn.nodeID,
		Local: func(vh, name string) *queue.Queue {
			if v := b.VHost(vh); v != nil {
				return v.LocalQueue(name)
			}
			return nil
		},
		LocalQueues: func(vh string) []*queue.Queue {
			if v := b.VHost(vh); v != nil {
				return v.LocalQueues()
			}
			return nil
		},
		ReplyTo: func(vh, key string, m *queue.Message) bool {
			v := b.VHost(vh)
			return v != nil && v.DeliverReplyTo(key, m)
		},
		Logger: b.log,
	}
	if b.msgs != nil {
		cfg.Durability = b.msgs
	}
	cn.fwd = forward.New(cfg)
}

// nodeID returns the id of the member named name.
func (cn *clusterNode) nodeID(name string) (uint64, bool) {
	for _, m := range cn.list() {
		if m.Name == name {
			return m.ID, true
		}
	}
	return 0, false
}

// place picks a running node for a new queue (queue-master-locator):
// "min-masters" the one that is home to the fewest queues (ties: the
// first in the configured order), "random" any; "" (this node) for a
// locator it does not know.
func (b *Broker) place(locator string) string {
	cn := b.cluster
	var running []string
	for _, m := range cn.list() {
		if m.Self || cn.link.Connected(m.ID) {
			running = append(running, m.Name)
		}
	}
	if len(running) == 0 {
		return ""
	}
	switch locator {
	case "random":
		return running[rand.IntN(len(running))]
	case "min-masters":
		count := map[string]int{}
		b.meta.Read(func(s *metadata.State) {
			for _, q := range s.Queues {
				count[q.Node]++
			}
		})
		best := running[0]
		for _, n := range running[1:] {
			if count[n] < count[best] {
				best = n
			}
		}
		return best
	}
	return ""
}

// RemoteFigures returns the figures of the queues of vhost whose home is
// node home (for the management API: a queue's numbers live on its home).
func (b *Broker) RemoteFigures(home, vh string) (map[string]queue.Figures, error) {
	if b.cluster == nil || b.cluster.fwd == nil {
		return nil, errors.New("not clustered")
	}
	return b.cluster.fwd.Figures(home, vh)
}

// replyToTag is the node part of direct reply-to names: this node's name
// in a cluster (replies published through other nodes come back here),
// RabbitMQ's usual text on a standalone node.
func (b *Broker) replyToTag() string {
	if b.cluster == nil {
		return ""
	}
	return vhost.ReplyToTag(b.nodeName)
}

// StandaloneQueuesError refuses to start a clustered node whose message
// store holds messages of durable queues it defined while it ran alone
// that it cannot bring into the cluster: the cluster has a queue of that
// name elsewhere (or with other arguments). Deleting their messages to
// start would lose them.
type StandaloneQueuesError struct {
	DataDir string
	Queues  map[string]string // store key (vhost NUL name) → why
	Counts  map[string]int
}

func (e *StandaloneQueuesError) Error() string {
	list, total := describeQueued(e.Counts, e.Queues)
	return fmt.Sprintf("refusing to start as a cluster member: this node holds %d persisted messages of %d durable queues it defined when it ran alone, which it cannot bring into the cluster: %s. "+
		"Nothing was deleted. Start it once without cluster_formation (its standalone definitions under %s are intact) and drain or rename those queues, then start it in the cluster again",
		total, len(e.Queues), list, filepath.Join(e.DataDir, "meta"))
}

// adoptStandaloneQueues declares in the cluster, at home on this node, the
// durable queues of this node's standalone definitions (<data>/meta) that
// hold messages here and that the cluster does not define (with their
// vhost when the cluster lacks it). A queue the cluster defines on
// another node, or with other arguments, is refused
// (StandaloneQueuesError): nothing is deleted.
func (b *Broker) adoptStandaloneQueues(queued *store.Recovery, self string) error {
	dir := filepath.Join(b.cfg.DataDir, "meta")
	if _, err := os.Stat(dir); err != nil || len(queued.Queues()) == 0 {
		return nil // never ran alone, or nothing to keep
	}
	ml, cmds, err := metadata.OpenDurable(dir, b.log)
	if err != nil {
		return fmt.Errorf("reading this node's standalone definitions under %s (to keep the messages of its own queues): %w", dir, err)
	}
	_ = ml.Close()
	alone := metadata.NewState()
	for _, c := range metadata.DurableCommands(cmds) {
		_ = alone.Apply(c)
	}
	e := &StandaloneQueuesError{DataDir: b.cfg.DataDir, Queues: map[string]string{}, Counts: map[string]int{}}
	adopted := 0
	for _, key := range queued.Queues() {
		vh, name, _ := strings.Cut(key, "\x00")
		q, ok := alone.Queues[[2]string{vh, name}]
		n := queued.Count(key)
		if !ok || !q.Durable || q.Exclusive || n == 0 {
			continue
		}
		var have metadata.Queue
		var defined, vhostOK bool
		b.meta.Read(func(s *metadata.State) {
			have, defined = s.Queues[[2]string{vh, name}]
			_, vhostOK = s.VHosts[vh]
		})
		if defined {
			if have.Node != "" && have.Node != self {
				e.Queues[key], e.Counts[key] = "the cluster has a queue of that name on "+have.Node, n
			}
			continue // already the cluster's, here (an earlier start adopted it)
		}
		if !vhostOK {
			if err := b.meta.Propose(metadata.Command{Op: metadata.OpAddVHost, VHost: vh}); err != nil {
				return fmt.Errorf("adding vhost %q (of this node's standalone queue %q) to the cluster: %w", vh, name, err)
			}
		}
		q.Node, q.Owner = self, 0
		if err := b.meta.Propose(metadata.Command{Op: metadata.OpDeclareQueue, Queue: &q, Conditional: true}); err != nil {
			if errors.Is(err, metadata.ErrInequivalent) || errors.Is(err, metadata.ErrLocked) {
				e.Queues[key], e.Counts[key] = err.Error(), n
				continue
			}
			return fmt.Errorf("declaring this node's standalone queue %q in vhost %q in the cluster: %w", name, vh, err)
		}
		adopted++
		b.log.Warn("a durable queue this node defined when it ran alone now belongs to the cluster, at home on this node, with its messages; its bindings and the exchanges, users and permissions of the standalone run were not brought in", "vhost", vh, "queue", name, "messages", n)
	}
	if len(e.Queues) > 0 {
		return e
	}
	if adopted > 0 {
		// adopted once: a later start must not bring back a queue the
		// cluster deleted since (the directory is kept, renamed)
		aside := filepath.Join(b.cfg.DataDir, "meta-adopted-by-the-cluster-"+time.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(dir, aside); err != nil {
			return fmt.Errorf("moving this node's adopted standalone definitions aside (%s to %s): %w; move it by hand and start again", dir, aside, err)
		}
		b.log.Warn("this node's standalone definitions were brought into the cluster and kept aside", "queues", adopted, "dir", aside)
	}
	return nil
}

// distTLS is the inter-node port's TLS configuration from warren.conf's
// distribution.ssl_options.* (nil: plain TCP, the cookie alone).
func (b *Broker) distTLS() (*tls.Config, error) {
	f := b.cfg.DistTLS
	if !f.Set() {
		return nil, nil
	}
	var missing []string
	for k, v := range map[string]string{"certfile": f.CertFile, "keyfile": f.KeyFile, "cacertfile": f.CACertFile} {
		if v == "" {
			missing = append(missing, "distribution.ssl_options."+k)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("inter-node TLS needs certfile, keyfile and cacertfile (or none of them): set %s in warren.conf", strings.Join(missing, " and "))
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("inter-node TLS: loading %s and %s: %w", f.CertFile, f.KeyFile, err)
	}
	pem, err := os.ReadFile(f.CACertFile)
	if err != nil {
		return nil, fmt.Errorf("inter-node TLS: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("inter-node TLS: no PEM certificate in %s (distribution.ssl_options.cacertfile)", f.CACertFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
