package broker

// Replicated queues (issue 15, ADR 0010): a quorum queue is a consensus
// group of its own (internal/mirror over the node's consensus host). On a
// standalone node the group has one member, this node, and the node runs
// a consensus host of its own under <data>/raft, opened when the first
// replicated queue is declared (or at start when the directory exists);
// a node without a data directory keeps that log in memory.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenmq/warren/internal/consensus"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/mirror"
	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/store"
	"github.com/warrenmq/warren/internal/vfs"
	"github.com/warrenmq/warren/internal/vhost"
)

// replicas keeps this node's replicas of replicated queues.
type replicas struct {
	mu     sync.Mutex
	host   *consensus.Host
	id     uint64
	own    bool                     // the host is this standalone node's (closed with it)
	stores map[uint64]*mirror.Store // by group
	// clustered: this node's view of each group it is a member of
	groups map[uint64]*replicaState
}

// replicaState is a clustered node's view of one replicated queue.
type replicaState struct {
	vhost, name string
	store       *mirror.Store
	live        *syncStore // this node leads the group and runs the queue over it
	home        string     // the home the vhost was last told
	openErr     error
}

// noTransport is a standalone node's: its groups have one member, so
// nothing is ever sent.
type noTransport struct{}

func (noTransport) Send(uint64, []consensus.Envelope) {}

// replicaHost returns the consensus host replicated queues use and this
// node's id in it, opening a standalone node's own host on first use.
func (b *Broker) replicaHost() (*consensus.Host, uint64, error) {
	r := &b.repl
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.host != nil {
		return r.host, r.id, nil
	}
	if b.cluster != nil {
		r.host, r.id = b.cluster.host, b.cluster.id
		return r.host, r.id, nil
	}
	o := consensus.Options{Transport: noTransport{}, Logger: b.log,
		// a one-member group elects itself at once: short ticks make the
		// first election (at start and after a restart) quick
		Tick: 10 * time.Millisecond,
		OnFail: func(err error) {
			b.log.Error("the replicated queues' log failed; the node stops serving: stop it, fix the disk and start it again", "err", err)
			b.StopApp()
		}}
	if b.cfg.DataDir == "" {
		o.Dir, o.FS, o.ID = "raft", vfs.NewMem(), 1
	} else {
		id, err := standaloneID(b.cfg.DataDir)
		if err != nil {
			return nil, 0, err
		}
		o.Dir, o.ID = filepath.Join(b.cfg.DataDir, "raft"), id
	}
	h, err := consensus.Open(o)
	if err != nil {
		return nil, 0, fmt.Errorf("opening the replicated queues' log under %s: %w", o.Dir, err)
	}
	r.host, r.id, r.own = h, o.ID, true
	return h, o.ID, nil
}

// standaloneID is a standalone node's id in its consensus groups: chosen
// at random on first use and kept in <data>/node-id (ADR 0005), so that
// the groups it founded know it after a restart.
func standaloneID(dir string) (uint64, error) {
	p := filepath.Join(dir, nodeIDFile)
	if _, err := os.Stat(p); err == nil {
		id, ok := readNodeID(dir)
		if !ok {
			b, _ := os.ReadFile(p)
			return 0, fmt.Errorf("%s holds %q, not a node id (1 to 65535): restore it from a backup; a new id would orphan this node's replicated queues", p, b)
		}
		return id, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("reading the node id: %w", err)
	}
	id := freshID(nil)
	if err := writeNodeID(dir, id); err != nil {
		return 0, fmt.Errorf("recording the node id in %s: %w", p, err)
	}
	return id, nil
}

// replicatedStore is the store of replicated queue d on this node: its
// replica in d's consensus group (vhost.SetReplicated).
func (b *Broker) replicatedStore(d metadata.Queue) (queue.Store, error) {
	if b.cluster != nil {
		return nil, errors.New("a clustered node's replicated queues are run by the replica loop, not at declare (a bug)")
	}
	h, id, err := b.replicaHost()
	if err != nil {
		return nil, err
	}
	r := &b.repl
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.stores[d.Group]; s != nil {
		return &syncStore{s: s}, nil
	}
	s, err := mirror.Open(h, id, d.Group, []uint64{id})
	if err != nil {
		return nil, fmt.Errorf("starting the replica of queue '%s' in vhost '%s' (group %d): %w", d.Name, d.VHost, d.Group, err)
	}
	if r.stores == nil {
		r.stores = map[uint64]*mirror.Store{}
	}
	r.stores[d.Group] = s
	return &syncStore{s: s}, nil
}

// restoreReplicated puts back the messages the replicas of this node's
// replicated queues hold (after a restart): each group first applies
// everything it committed (Barrier), then its queue is rebuilt in order.
func (b *Broker) restoreReplicated() error {
	if b.cluster != nil {
		return nil // the replica loop does it on the group's leader
	}
	var qs []metadata.Queue
	b.meta.Read(func(st *metadata.State) {
		for _, q := range st.Queues {
			if q.Group != 0 && (b.nodeName == "" || q.Node == b.nodeName) {
				qs = append(qs, q)
			}
		}
	})
	slices.SortFunc(qs, func(a, c metadata.Queue) int { return strings.Compare(a.VHost+"\x00"+a.Name, c.VHost+"\x00"+c.Name) })
	restored := 0
	for _, d := range qs {
		v := b.VHost(d.VHost)
		var q *queue.Queue
		if v != nil {
			q = v.LookupQueue(d.Name)
		}
		b.repl.mu.Lock()
		s := b.repl.stores[d.Group]
		b.repl.mu.Unlock()
		if q == nil || s == nil {
			return fmt.Errorf("recovery: replicated queue %q in vhost %q has no replica on this node (a bug; its log is kept, nothing was deleted)", d.Name, d.VHost)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := s.Barrier(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("recovering replicated queue %q in vhost %q: its group did not commit a barrier: %w", d.Name, d.VHost, err)
		}
		ms := s.Recovered()
		q.Restore(slices.Values(ms))
		restored += len(ms)
	}
	if restored > 0 {
		b.log.Info("replicated queues recovered", "queues", len(qs), "messages", restored)
	}
	return nil
}

// ReplicaStats describe this node's replica of a replicated queue for the
// management API.
type ReplicaStats struct {
	Leader  string   // node leading the queue's group ("" when none)
	Members []string // nodes holding a replica
	Online  []string // members this node sees running
}

// Replica describes replicated queue d as this node sees it; ok is false
// for a queue that is not replicated.
func (b *Broker) Replica(d metadata.Queue) (ReplicaStats, bool) {
	if d.Group == 0 {
		return ReplicaStats{}, false
	}
	self := b.nodeName
	if self == "" {
		self = b.cfg.NodeName
	}
	members := d.Members
	if len(members) == 0 {
		members = []string{self}
	}
	st := ReplicaStats{Members: members}
	b.repl.mu.Lock()
	h, id := b.repl.host, b.repl.id
	b.repl.mu.Unlock()
	if b.cluster != nil {
		h, id = b.cluster.host, b.cluster.id
		if !slices.Contains(members, self) {
			h = nil // not a member: no view of the group
		}
	}
	if h != nil {
		if lead := h.Leader(d.Group); lead != 0 {
			st.Leader = b.nodeByID(lead, id, self)
		}
	}
	for _, m := range members {
		if m == self || b.nodeRunning(m) {
			st.Online = append(st.Online, m)
		}
	}
	return st, true
}

// nodeByID names the node with consensus id n.
func (b *Broker) nodeByID(n, self uint64, selfName string) string {
	if n == self {
		return selfName
	}
	if b.cluster != nil {
		for _, m := range b.cluster.members {
			if m.ID == n {
				return m.Name
			}
		}
	}
	return strconv.FormatUint(n, 10)
}

// nodeRunning reports whether this node is connected to node name.
func (b *Broker) nodeRunning(name string) bool {
	for _, m := range b.ClusterStatus() {
		if m.Name == name {
			return m.Running
		}
	}
	return false
}

func (r *replicas) close() {
	r.mu.Lock()
	h, own := r.host, r.own
	r.host = nil
	r.mu.Unlock()
	if h != nil && own {
		_ = h.Close()
	}
}

// syncStore is a replica as a queue's store: Enqueue returns once a
// majority of the group holds the message (so a publisher confirm, which
// waits for one store position of the node's message store, needs none:
// queue.SyncStore). Publishes to one replicated queue are therefore not
// pipelined; per-store confirm waits will lift that.
// A fenced syncStore belongs to a queue this node no longer leads: it
// refuses messages and forgets removals, so the deposed queue (being
// deleted, its consumers cancelled) changes nothing in the group.
type syncStore struct {
	s      *mirror.Store
	fenced atomic.Bool
}

func (*syncStore) EnqueueIsDurable() {}

func (s *syncStore) fence() { s.fenced.Store(true) }

func (s *syncStore) Enqueue(q string, m *queue.Message, expiresAt int64) (uint64, error) {
	if s.fenced.Load() {
		return 0, errNotLeader
	}
	ref, err := s.s.Enqueue(q, m, expiresAt)
	if err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	s.s.OnDurable(ref, func(err error) { done <- err })
	if err := <-done; err != nil {
		// the queue refuses the message (the publisher gets a nack); it
		// may still commit later and then come back after a failover: a
		// duplicate, never a loss. The replica refuses new messages until
		// a barrier commits: try one now.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.s.Barrier(ctx)
		cancel()
		return 0, err
	}
	return ref, nil
}

func (s *syncStore) Remove(q string, refs []uint64) {
	if !s.fenced.Load() {
		s.s.Remove(q, refs)
	}
}

func (s *syncStore) Delivered(q string, refs []uint64) {
	if !s.fenced.Load() {
		s.s.Delivered(q, refs)
	}
}

func (s *syncStore) Load(refs []uint64, fn func(i int, m *queue.Message)) error {
	return s.s.Load(refs, fn)
}

var errNotLeader = errors.New("this node no longer leads the queue's group")

// replicaLoop runs on a clustered node: it joins the group of every
// replicated queue this node is a member of, and follows each group's
// leadership: the node leading a group runs the queue (its home), after
// applying everything the group committed (Barrier) and rebuilding the
// queue from its replica; the others keep a definition naming the
// leader. Leadership is polled (every 20 ms): consensus has no
// leadership callback yet.
func (b *Broker) replicaLoop() {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stopAlarms:
			return
		case <-t.C:
			b.reconcileReplicas()
		}
	}
}

func (b *Broker) reconcileReplicas() {
	cn := b.cluster
	self := cn.self.String()
	var defs []metadata.Queue
	b.meta.Read(func(st *metadata.State) {
		for _, q := range st.Queues {
			if q.Group != 0 {
				defs = append(defs, q)
			}
		}
	})
	r := &b.repl
	r.mu.Lock()
	if r.groups == nil {
		r.groups = map[uint64]*replicaState{}
	}
	r.mu.Unlock()
	seen := map[uint64]bool{}
	for _, d := range defs {
		seen[d.Group] = true
		v := b.VHost(d.VHost)
		if v == nil {
			continue
		}
		r.mu.Lock()
		rs := r.groups[d.Group]
		if rs == nil {
			rs = &replicaState{vhost: d.VHost, name: d.Name}
			r.groups[d.Group] = rs
		}
		r.mu.Unlock()
		if !slices.Contains(d.Members, self) {
			// not a member: the first member is the best guess of its
			// home (this node cannot see the group's leader)
			if home := firstOr(d.Members, vhost.NoLeaderYet); rs.home != home && v.SetReplicatedHome(d, home, nil, nil) {
				rs.home = home
			}
			continue
		}
		if _, err := b.replicaOf(d); err != nil {
			continue
		}
		if _, remote := v.RemoteHome(d.Name); !remote {
			if q := v.LookupQueue(d.Name); q != nil && !q.Config().PersistAll {
				continue // still the classic queue a policy is moving into the group
			}
		}
		lead := cn.host.Leader(d.Group)
		if lead == cn.id {
			if rs.live != nil {
				continue
			}
			if d.Moved && !rs.store.Ready() {
				continue // its home node is still moving its messages in
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := rs.store.Barrier(ctx)
			cancel()
			if err != nil {
				continue // not leading after all, or no quorum: next round
			}
			st := &syncStore{s: rs.store}
			ms := rs.store.Recovered()
			if v.SetReplicatedHome(d, self, st, ms) {
				rs.live, rs.home = st, self
				b.log.Info("this node now leads a replicated queue", "vhost", d.VHost, "queue", d.Name, "messages", len(ms))
			}
			continue
		}
		home := vhost.NoLeaderYet
		if lead != 0 {
			home = cn.nameOf(lead)
		}
		if rs.live != nil {
			rs.live.fence()
			rs.live = nil
			rs.home = ""
			b.log.Info("this node no longer leads a replicated queue", "vhost", d.VHost, "queue", d.Name, "leader", home)
		}
		if rs.home != home && v.SetReplicatedHome(d, home, nil, nil) {
			rs.home = home
		}
	}
	r.mu.Lock()
	for g, rs := range r.groups {
		if !seen[g] {
			if rs.live != nil {
				rs.live.fence()
			}
			delete(r.groups, g) // deleted; its group stays idle in the host (no group removal yet)
		}
	}
	r.mu.Unlock()
}

// replicaOf returns this clustered node's replica of d's group, joining
// the group on first use.
func (b *Broker) replicaOf(d metadata.Queue) (*mirror.Store, error) {
	cn := b.cluster
	r := &b.repl
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.groups == nil {
		r.groups = map[uint64]*replicaState{}
	}
	rs := r.groups[d.Group]
	if rs == nil {
		rs = &replicaState{vhost: d.VHost, name: d.Name}
		r.groups[d.Group] = rs
	}
	if rs.store != nil || rs.openErr != nil {
		return rs.store, rs.openErr
	}
	var ids []uint64
	for _, m := range d.Members {
		if id := cn.idOf(m); id != 0 {
			ids = append(ids, id)
		}
	}
	s, err := mirror.Open(cn.host, cn.id, d.Group, ids)
	if err != nil {
		rs.openErr = err
		b.log.Error("could not join a replicated queue's group; this node holds no replica of it", "vhost", d.VHost, "queue", d.Name, "err", err)
		return nil, err
	}
	rs.store = s
	return s, nil
}

// markReady commits that a moved queue's group is complete, retrying
// while the group has no leader.
func markReady(s *mirror.Store) error {
	var err error
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = s.MarkReady(ctx)
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

// idOf is the consensus id of the configured node name (0: unknown).
func (cn *clusterNode) idOf(name string) uint64 {
	for _, m := range cn.members {
		if m.Name == name {
			return m.ID
		}
	}
	return 0
}

// nameOf is the name of the node with consensus id id.
func (cn *clusterNode) nameOf(id uint64) string {
	for _, m := range cn.members {
		if m.ID == id {
			return m.Name
		}
	}
	return strconv.FormatUint(id, 10)
}

// QueueHome returns the node where queue name of vhost vh lives, for
// forwarding: a replicated queue's home is the leader of its group as
// this node sees it (vhost.NoLeaderYet while there is none, or while
// this node leads but has not rebuilt the queue yet; on a node
// that is not one of its members, its first member), any other queue's
// is its declaring node. ok is false when there is no such queue. On a
// standalone node the home is "" (this node).
func (b *Broker) QueueHome(vh, name string) (home string, ok bool) {
	var d metadata.Queue
	b.meta.Read(func(st *metadata.State) { d, ok = st.Queues[[2]string{vh, name}] })
	if !ok || b.cluster == nil {
		return "", ok
	}
	cn := b.cluster
	if d.Group == 0 {
		return d.Node, true
	}
	if !slices.Contains(d.Members, cn.self.String()) {
		return firstOr(d.Members, vhost.NoLeaderYet), true
	}
	lead := cn.host.Leader(d.Group)
	if lead == cn.id {
		// this node leads: it is the home once it runs the queue
		b.repl.mu.Lock()
		rs := b.repl.groups[d.Group]
		live := rs != nil && rs.live != nil
		b.repl.mu.Unlock()
		if live {
			return cn.self.String(), true
		}
		return vhost.NoLeaderYet, true
	}
	if lead != 0 {
		return cn.nameOf(lead), true
	}
	return vhost.NoLeaderYet, true
}

// replicateObserved runs after a committed policy change: the classic
// queues it made replicated (a standalone node's; metadata.State
// replicate) move into their groups, each on its own goroutine (the
// observer must not wait for consensus).
func (b *Broker) replicateObserved(c metadata.Command) {
	if c.Op != metadata.OpSetPolicy || len(c.Replicated) == 0 || c.Policy == nil {
		return
	}
	for _, name := range c.Replicated {
		var d metadata.Queue
		var ok bool
		b.meta.Read(func(st *metadata.State) { d, ok = st.Queues[[2]string{c.Policy.VHost, name}] })
		if !ok || d.Group == 0 || (b.cluster != nil && d.Node != b.nodeName) {
			continue // the home node moves it
		}
		b.goTracked(func() {
			if err := b.moveIntoGroup(d); err != nil {
				b.log.Error("a queue an ha-mode policy made replicated could not move into its group: it stays on the message store and refuses publishes; restart the node to finish the move", "vhost", d.VHost, "queue", d.Name, "err", err)
			}
		})
	}
}

// moveIntoGroup moves a live classic queue's messages into its group and
// makes it a replicated queue (vhost.ConvertToReplicated).
func (b *Broker) moveIntoGroup(d metadata.Queue) error {
	v := b.VHost(d.VHost)
	if v == nil {
		return nil
	}
	if b.cluster != nil {
		// the group's leader will run it, once the move is complete
		s, err := b.replicaOf(d)
		if err != nil {
			return err
		}
		if err := v.ConvertToReplicated(d, func(ms []queue.Recovered) ([]queue.Recovered, error) { return copyInto(s, d, ms) }, nil, vhost.NoLeaderYet); err != nil {
			return err
		}
		return markReady(s)
	}
	st, err := b.replicatedStore(d)
	if err != nil {
		return err
	}
	ss := st.(*syncStore)
	return v.ConvertToReplicated(d, func(ms []queue.Recovered) ([]queue.Recovered, error) { return copyInto(ss.s, d, ms) }, st, "")
}

// copyInto enqueues messages into a group, pipelined, and returns them
// with their references there once the group committed them all.
func copyInto(s *mirror.Store, d metadata.Queue, ms []queue.Recovered) ([]queue.Recovered, error) {
	out := make([]queue.Recovered, 0, len(ms))
	var redelivered []uint64
	var last uint64
	for _, m := range ms {
		ref, err := s.Enqueue(d.Name, m.Msg, m.ExpiresAt)
		if err != nil {
			return nil, err
		}
		last = ref
		m.Ref = ref
		if m.Redelivered {
			redelivered = append(redelivered, ref)
		}
		out = append(out, m)
	}
	if last == 0 {
		return out, nil
	}
	done := make(chan error, 1)
	s.OnDurable(last, func(err error) { done <- err })
	if err := <-done; err != nil {
		return nil, err
	}
	s.Delivered(d.Name, redelivered)
	return out, nil
}

// finishMoves, at start, moves into their groups the messages the message
// store still holds for queues that are replicated now (the node stopped
// while a policy was moving them; some may already be in the group too:
// they are then there twice, never lost), and removes them from the
// message store once the group has them.
func (b *Broker) finishMoves(queued *store.Recovery, live []string) error {
	for _, key := range live {
		vh, name, _ := strings.Cut(key, "\x00")
		v := b.VHost(vh)
		if v == nil {
			continue
		}
		q := v.LookupQueue(name)
		var d metadata.Queue
		b.meta.Read(func(st *metadata.State) { d = st.Queues[[2]string{vh, name}] })
		if q == nil || d.Group == 0 {
			continue
		}
		var ms0 *mirror.Store
		if b.cluster != nil {
			s, err := b.replicaOf(d)
			if err != nil {
				return err
			}
			ms0 = s
		} else {
			st, err := b.replicatedStore(d)
			if err != nil {
				return err
			}
			ms0 = st.(*syncStore).s
		}
		var refs []uint64
		var ms []queue.Recovered
		for m := range queued.Messages(key) {
			refs = append(refs, m.Ref)
			if m.Msg == nil {
				r := m
				if err := b.msgs.Load([]uint64{m.Ref}, func(_ int, msg *queue.Message) { r.Msg = msg }); err != nil {
					return fmt.Errorf("moving queue %q in vhost %q into its group: reading message %d: %w (nothing was deleted)", name, vh, m.Ref, err)
				}
				m = r
			}
			ms = append(ms, m)
		}
		moved, err := copyInto(ms0, d, ms)
		if err != nil {
			return fmt.Errorf("moving queue %q in vhost %q into its group: %w (nothing was deleted)", name, vh, err)
		}
		if b.cluster != nil {
			if err := markReady(ms0); err != nil {
				return fmt.Errorf("moving queue %q in vhost %q into its group: %w (nothing was deleted)", name, vh, err)
			}
		} else {
			q.Restore(slices.Values(moved))
		}
		b.msgs.Remove(key, refs)
		if err := b.msgs.Sync(); err != nil {
			return fmt.Errorf("moving queue %q in vhost %q into its group: %w", name, vh, err)
		}
		b.log.Warn("finished moving a queue into its group (the node had stopped while a policy was moving it); messages already moved may be there twice", "vhost", vh, "queue", name, "messages", len(moved))
	}
	return nil
}
