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
// Queues are not forwarded yet: a queue's definition records its home (the
// node that declared it), and the other nodes refuse to publish to it,
// consume from it, get from it or purge it, with an error naming the home.
// Messages are never split between nodes.

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/warrenmq/warren/internal/cluster"
	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/consensus"
	"github.com/warrenmq/warren/internal/metadata"
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
	self    cluster.NodeName
	id      uint64
	members []ClusterMember
	link    *cluster.Link
	rt      *cluster.RaftTransport
	host    *consensus.Host
	rlog    *metadata.ReplicatedLog
	closed  atomic.Bool
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
func clusterMembers(cfg config.Config) (cluster.NodeName, []ClusterMember, error) {
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
	self, members, err := clusterMembers(b.cfg)
	if err != nil {
		return err
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

	cn.link, err = cluster.Listen(cluster.Config{Name: self, ID: cn.id, Cookie: []byte(b.cfg.Cookie), Listen: listen, Logger: b.log})
	if err != nil {
		return fmt.Errorf("opening the inter-node port %s: %w (set distribution.listener.port_range.min, --dist-port or WARREN_DIST_PORT)", listen, err)
	}
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
	cn.rlog = metadata.NewReplicatedLog(h, metaGroup, ids)
	cn.rlog.Timeout = DefaultQuorumTimeout
	cn.rlog.Reachable = cn.reachable
	b.meta = metadata.NewStore(cn.rlog)
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.Name
	}
	b.meta.SetNodes(names) // where replicated queues are placed
	b.meta.Observe(b.recordDrops)
	b.meta.Observe(b.apply)
	b.meta.Observe(b.replicateObserved)
	b.meta.OnRestore(b.rebuildRuntime)
	if err := cn.rlog.Start(); err != nil {
		return fmt.Errorf("starting the definitions' consensus group: %w", err)
	}
	for _, m := range members {
		if !m.Self {
			n, _ := cluster.ParseNodeName(m.Name)
			if err := cn.link.AddPeer(cluster.Peer{ID: m.ID, Name: n, Addr: m.Addr}); err != nil {
				return err
			}
		}
	}
	if err := b.waitForMajority(); err != nil {
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
	var live, gone []string
	b.meta.Read(func(s *metadata.State) {
		for _, key := range queued.Queues() {
			vh, name, _ := strings.Cut(key, "\x00")
			if q, ok := s.Queues[[2]string{vh, name}]; ok && q.Durable && !q.Exclusive {
				live = append(live, key)
			} else {
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
	for _, m := range cn.members {
		if m.Self || cn.link.Connected(m.ID) {
			up++
		}
	}
	return up, len(cn.members)
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
	out := make([]ClusterMember, len(cn.members))
	for i, m := range cn.members {
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
	for _, m := range cn.members {
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
// deleted. A binding the runtime has and the state lacks stays until the
// next change to it (not reconciled yet).
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
	for _, bd := range st.bindings {
		b.apply(metadata.Command{Op: metadata.OpBind, Binding: &bd})
	}
	for _, p := range st.policies {
		b.apply(metadata.Command{Op: metadata.OpSetPolicy, Policy: &p})
	}
}
