package broker

// Membership changes (ADR 0008): warrenctl join_cluster, reset and
// forget_cluster_node, the guide's way.
//
// The member table (name, Raft id, inter-node address) is replicated
// state: metadata.State.Members, changed by OpPutMember / OpRemoveMember
// next to the Raft conf change of the definitions' group (group 1), one
// change at a time. A cluster formed from classic_config has an empty
// table until its first change, and uses the configuration's list until
// then. Each node also keeps the table it last applied in
// <data>/cluster-members.json, so that it knows whom to dial at start
// before it has applied anything; the file also marks a node that joined
// (its replica starts empty) and a standalone node that became the first
// node of a cluster (its definitions seed the cluster at its next start).
//
// Joining: the joining node B (application stopped) exports its own
// definitions to <data>/definitions-before-join-<time>.json, proves the
// cookie to A on A's inter-node port and asks A to add it (a request of
// a non-member, cluster.Request). A picks B's id (random below 2^16, not
// 0, not a member's), proposes B's table entry, then the conf change
// adding B, and answers with the id and the table. B writes
// <data>/node-id and the table, moves its old definitions and messages
// aside (nothing is deleted), and restarts its broker on start_app: it
// comes up as a member and learns the definitions from the leader.
//
// A standalone A asked to be joined first becomes a one-node cluster: it
// records that its definitions seed the cluster, restarts its broker
// (its clients reconnect once) and answers "retry"; the joiner retries.
//
// Leaving (reset on a member) asks another member to remove this node,
// then restarts the broker standalone with the definitions it had before
// joining. forget_cluster_node removes a stopped member from any member.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/warrenmq/warren/internal/consensus"
	"github.com/warrenmq/warren/internal/metadata"
)

const (
	nodeIDFile  = "node-id"
	membersFile = "cluster-members.json"
	// restoreFile names the definitions export a node that left its
	// cluster imports at its next start.
	restoreFile = "restore-definitions-after-reset"
	// membershipTimeout bounds one membership change.
	membershipTimeout = 30 * time.Second
)

// memberState is <data>/cluster-members.json.
type memberState struct {
	Members []metadata.Member `json:"members"`
	// Joined: this node came in with join_cluster; its replica of the
	// definitions' group starts empty and learns from the leader.
	Joined bool `json:"joined,omitempty"`
	// Seed names the standalone metadata directory whose definitions
	// become the new cluster's at the next start (a standalone node asked
	// to be joined).
	Seed string `json:"seed,omitempty"`
}

// membership is the broker's side of membership changes.
type membership struct {
	mu       sync.Mutex // serialises membership changes on this node
	join     *cluster.Link
	restart  atomic.Bool // the broker restarts on start_app
	onRestar atomic.Pointer[func()]
	fileMu   sync.Mutex
	state    memberState // the file's content (clustered nodes)
	// standalone: this node's name, and whether it is restarting as the
	// first node of a cluster
	name    string
	founder atomic.Bool
	// founderSeen: the target said it restarts as a founder (join_cluster
	// then retries while its port is closed); under mu
	founderSeen bool
	// ready: the broker finished starting; requests wait for it
	ready atomic.Bool
}

// ErrRestartRequired is returned by StartApp when a membership change
// needs the broker restarted and no restart hook is set.
var ErrRestartRequired = errors.New("the node's cluster membership changed: restart warren-server to apply it")

// SetRestart sets how the node restarts its broker after a membership
// change (warren-server re-executes itself); fn must return at once.
func (b *Broker) SetRestart(fn func()) { b.ms.onRestar.Store(&fn) }

// RestartPending reports whether start_app will restart the broker.
func (b *Broker) RestartPending() bool { return b.ms.restart.Load() }

// restartNow asks the process to restart the broker; false without a hook.
func (b *Broker) restartNow() bool {
	fn := b.ms.onRestar.Load()
	if fn == nil || *fn == nil {
		return false
	}
	(*fn)()
	return true
}

func memberFilePath(dir string) string { return filepath.Join(dir, membersFile) }

// readMemberState reads <data>/cluster-members.json (ok false when absent).
func readMemberState(dir string) (memberState, bool, error) {
	var ms memberState
	if dir == "" {
		return ms, false, nil
	}
	raw, err := os.ReadFile(memberFilePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return ms, false, nil
	}
	if err != nil {
		return ms, false, err
	}
	if err := json.Unmarshal(raw, &ms); err != nil {
		return ms, false, fmt.Errorf("%s is damaged: %w (it lists the cluster's nodes; copy it from another member's data directory, keeping this node's entry)", memberFilePath(dir), err)
	}
	return ms, true, nil
}

// writeFileSync writes a small file atomically and durably.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func writeMemberState(dir string, ms memberState) error {
	raw, err := json.MarshalIndent(ms, "", "  ")
	if err != nil {
		return err
	}
	return writeFileSync(memberFilePath(dir), append(raw, '\n'))
}

func writeNodeID(dir string, id uint64) error {
	return writeFileSync(filepath.Join(dir, nodeIDFile), []byte(strconv.FormatUint(id, 10)+"\n"))
}

func readNodeID(dir string) (uint64, bool) {
	raw, err := os.ReadFile(filepath.Join(dir, nodeIDFile))
	if err != nil {
		return 0, false
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	return id, err == nil && id != 0 && id < 1<<16
}

// freshID picks a random node id below 2^16 (the consensus host's
// limit), not 0 and not taken.
func freshID(taken map[uint64]bool) uint64 {
	for {
		id := uint64(rand.IntN(1<<16-1)) + 1
		if !taken[id] {
			return id
		}
	}
}

// clusteredByJoin reports whether the data directory holds a member table
// (a node that joined, or was joined, with warrenctl).
func clusteredByJoin(dir string) bool {
	_, ok, _ := readMemberState(dir)
	return ok
}

// membersForStart is clusterMembers for a node with a member file: the
// table it last applied (ok false: no file, use the configuration).
func (b *Broker) membersForStart() (self cluster.NodeName, out []ClusterMember, ok bool, err error) {
	ms, ok, err := readMemberState(b.cfg.DataDir)
	if err != nil || !ok {
		return self, nil, false, err
	}
	self, err = cluster.ParseNodeName(b.cfg.NodeName)
	if err != nil {
		return self, nil, false, fmt.Errorf("node name %q: %w (set --nodename or WARREN_NODENAME to warren@HOST)", b.cfg.NodeName, err)
	}
	b.ms.fileMu.Lock()
	b.ms.state = ms
	b.ms.fileMu.Unlock()
	// this node listens on every interface at its inter-node port, unless
	// classic_config gives it an address (several nodes on one host)
	var cfgSelf *ClusterMember
	if b.cfg.Clustered() {
		if _, cms, err := configMembers(b.cfg); err == nil {
			for _, m := range cms {
				if m.Self && m.addrSet {
					m := m
					cfgSelf = &m
				}
			}
		}
	}
	found := false
	for _, m := range ms.Members {
		me := m.Name == self.String()
		found = found || me
		cm := ClusterMember{Name: m.Name, ID: m.ID, Addr: m.Addr, Self: me, addrSet: !me}
		if me && cfgSelf != nil {
			cm.Addr, cm.addrSet = cfgSelf.Addr, true
		}
		out = append(out, cm)
	}
	if !found {
		return self, nil, false, fmt.Errorf("this node, %s, is not in the member table %s (it lists %d nodes; was it renamed?): start it with its old --nodename, or run warrenctl forget_cluster_node %s on a member and remove %s to make it standalone", self, memberFilePath(b.cfg.DataDir), len(out), self, memberFilePath(b.cfg.DataDir))
	}
	return self, out, true, nil
}

// joinedGroup reports whether this node's replica of group 1 must start
// empty (it joined) rather than bootstrap with the founders.
func (b *Broker) joinedGroup() bool {
	b.ms.fileMu.Lock()
	defer b.ms.fileMu.Unlock()
	return b.ms.state.Joined
}

// tableFromState is the member table the state says, or nil when the
// state has none yet (a cluster from classic_config).
func tableFromState(s *metadata.State) []metadata.Member {
	var out []metadata.Member
	for _, m := range s.Members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// memberChanged keeps the link's peers, the clusterNode's list and the
// member file in step with the replicated table (an observer of applied
// commands; also run after a snapshot replaced the state).
func (b *Broker) memberChanged(c metadata.Command) {
	if c.Op != metadata.OpPutMember && c.Op != metadata.OpRemoveMember {
		return
	}
	if cn := b.cluster; c.Op == metadata.OpRemoveMember && cn != nil && c.Name == cn.self.String() {
		b.log.Warn("this node was removed from the cluster (forget_cluster_node): run warrenctl stop_app and warrenctl reset on it to make it standalone", "node", c.Name)
	}
	b.syncMembers()
}

func (b *Broker) syncMembers() {
	cn := b.cluster
	if cn == nil || cn.link == nil {
		return
	}
	var table []metadata.Member
	b.meta.Read(func(s *metadata.State) { table = tableFromState(s) })
	if len(table) == 0 {
		return // the configuration's list stands
	}
	self := cn.self.String()
	var list []ClusterMember
	for _, m := range table {
		list = append(list, ClusterMember{Name: m.Name, ID: m.ID, Addr: m.Addr, Self: m.Name == self, addrSet: m.Name != self})
	}
	selfIn := false
	for _, m := range list {
		selfIn = selfIn || m.Self
	}
	if !selfIn {
		// replaying the log from before this node joined, or this node was
		// forgotten: it stays in its own list, and the file keeps it
		for _, m := range cn.list() {
			if m.Self {
				list = append(list, m)
			}
		}
	}
	cn.setList(list)
	cn.mu.Lock()
	linked := cn.linked
	cn.mu.Unlock()
	if linked {
		_ = b.linkPeers()
	}
	if !selfIn {
		return
	}
	b.ms.fileMu.Lock()
	defer b.ms.fileMu.Unlock()
	st := b.ms.state
	st.Members = table
	if err := writeMemberState(b.cfg.DataDir, st); err != nil {
		b.log.Error("cannot write the member table; this node may not find its peers at its next start", "file", memberFilePath(b.cfg.DataDir), "err", err)
		return
	}
	b.ms.state = st
}

// linkPeers makes the inter-node port's peers the members' (the first
// call, at start, fails on a member the port refuses). The link is
// changed with no clusterNode lock held (its watchers take the liveness
// lock, whose holders read the member list).
func (b *Broker) linkPeers() error {
	cn := b.cluster
	cn.peerMu.Lock()
	defer cn.peerMu.Unlock()
	cn.mu.Lock()
	first := !cn.linked
	cn.linked = true
	if cn.peers == nil {
		cn.peers = map[uint64]bool{}
	}
	want := map[uint64]ClusterMember{}
	for _, m := range cn.members {
		if !m.Self {
			want[m.ID] = m
		}
	}
	var drop []uint64
	var add []ClusterMember
	for id := range cn.peers {
		if _, ok := want[id]; !ok {
			drop = append(drop, id)
		}
	}
	for id, m := range want {
		if !cn.peers[id] {
			add = append(add, m)
		}
	}
	cn.mu.Unlock()
	for _, id := range drop {
		cn.link.RemovePeer(id)
		cn.mu.Lock()
		delete(cn.peers, id)
		cn.mu.Unlock()
	}
	for _, m := range add {
		n, err := cluster.ParseNodeName(m.Name)
		if err == nil {
			err = cn.link.AddPeer(cluster.Peer{ID: m.ID, Name: n, Addr: m.Addr})
		}
		if err != nil {
			if first {
				return err
			}
			b.log.Warn("cannot add a member to the inter-node port", "node", m.Name, "err", err)
			continue
		}
		cn.mu.Lock()
		cn.peers[m.ID] = true
		cn.mu.Unlock()
	}
	return nil
}

// list returns the cluster's members as this node knows them.
func (cn *clusterNode) list() []ClusterMember {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return append([]ClusterMember(nil), cn.members...)
}

func (cn *clusterNode) setList(l []ClusterMember) {
	cn.mu.Lock()
	cn.members = l
	cn.mu.Unlock()
}

// seedFromStandalone proposes the definitions of the standalone node this
// node was (its metadata directory named in the member file) into the new
// cluster's group, once, at the first start after it was asked to be
// joined. Its queues get this node as their home.
func (b *Broker) seedFromStandalone() error {
	b.ms.fileMu.Lock()
	seed := b.ms.state.Seed
	b.ms.fileMu.Unlock()
	if seed == "" {
		return nil
	}
	dir := filepath.Join(b.cfg.DataDir, seed)
	var cmds []metadata.Command
	homes := map[string]string{}
	if strings.HasSuffix(seed, ".json") {
		// forget_cluster_node --offline: this node's definitions when it
		// left its old cluster
		raw, err := os.ReadFile(dir)
		if err != nil {
			return fmt.Errorf("reading the definitions that seed this node's new cluster: %w", err)
		}
		var sd offlineSeed
		if err := json.Unmarshal(raw, &sd); err != nil {
			return fmt.Errorf("reading %s: %w", dir, err)
		}
		cmds, homes = metadata.Commands(sd.Definitions), sd.Homes
	} else {
		ml, logged, err := metadata.OpenDurable(dir, b.log)
		if err != nil {
			return fmt.Errorf("reading this node's standalone definitions from %s to seed the cluster: %w", dir, err)
		}
		_ = ml.Close()
		cmds = metadata.DurableCommands(logged)
	}
	n := 0
	for _, c := range cmds {
		if c.Queue != nil {
			q := *c.Queue
			q.Node = b.nodeName
			if h := homes[q.VHost+"\x00"+q.Name]; h != "" {
				q.Node = h
			}
			c.Queue = &q
		}
		if err := b.meta.Propose(c); err != nil {
			return fmt.Errorf("seeding the cluster with this node's definitions (%s): %w; restart the node to retry", c.Op, err)
		}
		n++
	}
	// the table's first entry: this node
	self := b.cluster.list()
	for _, m := range self {
		if m.Self {
			if err := b.meta.Propose(metadata.Command{Op: metadata.OpPutMember, Member: &metadata.Member{Name: m.Name, ID: m.ID, Addr: m.Addr}}); err != nil {
				return fmt.Errorf("recording this node in the member table: %w; restart the node to retry", err)
			}
		}
	}
	aside := filepath.Join(b.cfg.DataDir, "meta-standalone-"+stamp())
	if strings.HasSuffix(seed, ".json") {
		aside = dir + ".seeded"
	}
	if err := os.Rename(dir, aside); err != nil {
		return fmt.Errorf("moving the seeded standalone definitions %s aside: %w", dir, err)
	}
	b.ms.fileMu.Lock()
	st := b.ms.state
	st.Seed = ""
	err := writeMemberState(b.cfg.DataDir, st)
	if err == nil {
		b.ms.state = st
	}
	b.ms.fileMu.Unlock()
	if err != nil {
		return err
	}
	b.log.Info("this node's standalone definitions seed the new cluster", "definitions", n, "old_metadata", aside)
	return nil
}

func stamp() string { return time.Now().UTC().Format("20060102T150405Z") }

// openJoinPort opens the inter-node port of a standalone node so that
// other nodes can join it (best effort: a node that cannot bind the port
// runs standalone and says so).
func (b *Broker) openJoinPort() {
	if b.cfg.DataDir == "" || b.cfg.Cookie == "" {
		return
	}
	self, err := cluster.ParseNodeName(b.cfg.NodeName)
	if err != nil {
		return
	}
	id, ok := readNodeID(b.cfg.DataDir)
	if !ok {
		id = freshID(nil)
	}
	distTLS, err := b.distTLS()
	if err != nil {
		b.log.Warn("the inter-node port is not open, so other nodes cannot join this one", "err", err)
		return
	}
	l, err := cluster.Listen(cluster.Config{Name: self, ID: id, Cookie: []byte(b.cfg.Cookie), Listen: ":" + strconv.Itoa(b.cfg.DistPort), Logger: b.log, TLS: distTLS,
		OnRequest: func(from cluster.NodeName, req []byte) ([]byte, error) { return b.onRequest(from, req, id) }})
	if err != nil {
		b.log.Info("the inter-node port is not open, so other nodes cannot join this one", "port", b.cfg.DistPort, "err", err)
		return
	}
	b.ms.join = l
	b.ms.name = self.String()
}

// memberRequest is what a node that is not a member asks of one.
type memberRequest struct {
	Op   string `json:"op"` // "join", "leave"
	Name string `json:"name"`
	Addr string `json:"addr"`
}

type joinAnswer struct {
	ID          uint64            `json:"id"`
	Members     []metadata.Member `json:"members"`
	ClusterName string            `json:"cluster_name"`
}

// errRetry in an answer tells the joiner to ask again shortly.
const retryMarker = "[retry] "

// onRequest answers a join or leave request on the inter-node port.
// standaloneID is this node's id when it is standalone.
func (b *Broker) onRequest(from cluster.NodeName, raw []byte, standaloneID uint64) ([]byte, error) {
	var req memberRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("undecodable request: %w", err)
	}
	if req.Name != from.String() {
		return nil, fmt.Errorf("%s asked on behalf of %s: a node asks only for itself", from, req.Name)
	}
	if !b.ms.ready.Load() {
		return nil, errors.New(retryMarker + b.cfg.NodeName + " is starting; retry")
	}
	b.ms.mu.Lock()
	defer b.ms.mu.Unlock()
	switch req.Op {
	case "join":
		if b.cluster == nil {
			return nil, b.becomeFounder(standaloneID)
		}
		ans, err := b.addMember(req.Name, req.Addr)
		if err != nil {
			return nil, err
		}
		return json.Marshal(ans)
	case "leave":
		if b.cluster == nil {
			return nil, fmt.Errorf("%s is not clustered", b.cfg.NodeName)
		}
		known := false
		for _, m := range b.cluster.list() {
			known = known || m.Name == req.Name
		}
		if !known {
			return nil, nil // forgotten already: it may leave
		}
		return nil, b.removeMember(req.Name, false)
	}
	return nil, fmt.Errorf("unknown request %q", req.Op)
}

// becomeFounder turns this standalone node into the first node of a
// cluster: its definitions seed the cluster at its next start, which
// follows at once. The joiner is told to retry.
func (b *Broker) becomeFounder(id uint64) error {
	self := b.ms.name
	n, _ := cluster.ParseNodeName(self)
	addr := n.Addr(b.cfg.DistPort)
	if b.ms.join != nil {
		if ta, ok := b.ms.join.Addr().(*net.TCPAddr); ok {
			addr = n.Addr(ta.Port)
		}
	}
	if b.ms.founder.Load() {
		return errors.New(retryMarker + self + " is restarting as the first node of a cluster; retry")
	}
	if err := writeNodeID(b.cfg.DataDir, id); err != nil {
		return fmt.Errorf("cannot write %s: %w", filepath.Join(b.cfg.DataDir, nodeIDFile), err)
	}
	st := memberState{Members: []metadata.Member{{Name: self, ID: id, Addr: addr}}, Seed: "meta"}
	if err := writeMemberState(b.cfg.DataDir, st); err != nil {
		return fmt.Errorf("cannot write %s: %w", memberFilePath(b.cfg.DataDir), err)
	}
	b.ms.founder.Store(true)
	b.log.Warn("another node asked to join this standalone node: restarting the broker as the first node of a cluster (clients reconnect once)")
	if !b.restartNow() {
		return errors.New(self + " was standalone and is now set up as the first node of a cluster: restart warren-server on it, then run join_cluster again")
	}
	return errors.New(retryMarker + self + " was standalone and is restarting as the first node of a cluster; retry")
}

// addMember adds a node to the cluster (on any member): its table entry,
// then the Raft conf change. Asked again for a member, it answers with
// the member's entry (a joiner that lost the first answer).
func (b *Broker) addMember(name, addr string) (joinAnswer, error) {
	cn := b.cluster
	var table []metadata.Member
	b.meta.Read(func(s *metadata.State) { table = tableFromState(s) })
	if len(table) == 0 {
		// a classic_config cluster's first change: its table is the
		// configuration's until now
		var err error
		if table, err = b.writeFounders(); err != nil {
			return joinAnswer{}, err
		}
	}
	taken := map[uint64]bool{}
	var entry *metadata.Member
	for _, m := range table {
		taken[m.ID] = true
		if m.Name == name {
			m := m
			entry = &m
		}
	}
	if entry == nil {
		entry = &metadata.Member{Name: name, ID: freshID(taken), Addr: addr}
		if err := b.proposeMember(metadata.Command{Op: metadata.OpPutMember, Member: entry}); err != nil {
			return joinAnswer{}, err
		}
	}
	if err := b.confChange(true, entry.ID); err != nil {
		// leave the table as Raft's membership is: without the node
		_ = b.proposeMember(metadata.Command{Op: metadata.OpRemoveMember, Name: name})
		up, of := cn.reachable()
		return joinAnswer{}, fmt.Errorf("adding %s to the cluster failed (%d of %d nodes reachable): %w; retry once a majority is up", name, up, of, err)
	}
	b.meta.Read(func(s *metadata.State) { table = tableFromState(s) })
	b.log.Info("a node joined the cluster", "node", name, "id", entry.ID, "addr", entry.Addr)
	return joinAnswer{ID: entry.ID, Members: table, ClusterName: b.cfg.ClusterName}, nil
}

// writeFounders puts a classic_config cluster's configured nodes into the
// member table, in one command.
func (b *Broker) writeFounders() ([]metadata.Member, error) {
	var table []metadata.Member
	for _, m := range b.cluster.list() {
		table = append(table, metadata.Member{Name: m.Name, ID: m.ID, Addr: m.Addr})
	}
	if err := b.proposeMember(metadata.Command{Op: metadata.OpPutMember, Members: table}); err != nil {
		return nil, err
	}
	return table, nil
}

// confChange adds or removes a member of the definitions' group, trying
// again within membershipTimeout: a leader drops a conf change proposed
// while another is unapplied (raft turns it into an empty entry, which
// answers nobody), and one proposed during an election is dropped. Both
// changes are idempotent in Raft (adding a voter twice, removing a
// non-member change nothing).
func (b *Broker) confChange(add bool, id uint64) error {
	deadline := time.Now().Add(membershipTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var err error
		if add {
			err = b.cluster.host.AddMember(ctx, metaGroup, id)
		} else {
			err = b.cluster.host.RemoveMember(ctx, metaGroup, id)
		}
		cancel()
		if err == nil || time.Now().After(deadline) || !(errors.Is(err, consensus.ErrDropped) || errors.Is(err, context.DeadlineExceeded)) {
			return err
		}
		b.log.Info("membership change not confirmed yet; proposing it again", "add", add, "id", id, "err", err)
	}
}

func (b *Broker) proposeMember(c metadata.Command) error {
	if err := b.meta.Propose(c); err != nil {
		return fmt.Errorf("changing the member table: %w", err)
	}
	return nil
}

// removeMember takes a node out of the cluster (on any member): the Raft
// conf change, then its table entry and the queues it was home of (their
// messages were on that node only). A running node is refused unless
// it asked itself (leave).
func (b *Broker) removeMember(name string, mustBeDown bool) error {
	cn := b.cluster
	var entry *metadata.Member
	var table []metadata.Member
	b.meta.Read(func(s *metadata.State) { table = tableFromState(s) })
	if len(table) == 0 {
		var err error
		if table, err = b.writeFounders(); err != nil {
			return err
		}
	}
	for _, m := range table {
		if m.Name == name {
			m := m
			entry = &m
		}
	}
	if entry == nil {
		return fmt.Errorf("node %s is not a member of this cluster (members: %s)", name, memberNames(table))
	}
	if entry.Name == cn.self.String() {
		return fmt.Errorf("%s cannot forget itself: run forget_cluster_node on another member, or reset on this one", name)
	}
	if mustBeDown && cn.link.Connected(entry.ID) {
		return fmt.Errorf("node %s is still connected to this one: stop its warren-server process first (systemctl stop warren-server on it; stop_app alone keeps it connected), or run reset on it to make it leave", name)
	}
	if err := b.confChange(false, entry.ID); err != nil {
		up, of := cn.reachable()
		return fmt.Errorf("removing %s from the cluster failed (%d of %d nodes reachable): %w; retry once a majority is up", name, up, of, err)
	}
	if err := b.proposeMember(metadata.Command{Op: metadata.OpRemoveMember, Name: name}); err != nil {
		return err
	}
	var homed []metadata.Queue
	b.meta.Read(func(s *metadata.State) {
		for _, q := range s.Queues {
			if q.Node == name {
				homed = append(homed, q)
			}
		}
	})
	for _, q := range homed {
		if err := b.meta.Propose(metadata.Command{Op: metadata.OpDeleteQueue, VHost: q.VHost, Name: q.Name}); err != nil {
			b.log.Warn("could not delete a queue of a removed node; delete it by hand", "node", name, "vhost", q.VHost, "queue", q.Name, "err", err)
		}
	}
	b.log.Info("a node left the cluster", "node", name, "id", entry.ID, "queues_deleted", len(homed))
	return nil
}

func memberNames(t []metadata.Member) string {
	var ns []string
	for _, m := range t {
		ns = append(ns, m.Name)
	}
	return strings.Join(ns, ", ")
}

// JoinResult is what join_cluster reports.
type JoinResult struct {
	Cluster string `json:"cluster"`
	Export  string `json:"definitions_export"`
	ID      uint64 `json:"id"`
}

// JoinCluster makes this node (its application stopped) a member of the
// cluster of node target (warrenctl join_cluster). addr is target's
// inter-node address ("": its host on this node's inter-node port). The
// broker restarts as a member on start_app.
func (b *Broker) JoinCluster(target, addr string) (JoinResult, error) {
	b.ms.mu.Lock()
	defer b.ms.mu.Unlock()
	var res JoinResult
	if b.Running() {
		return res, errors.New("the application is running on this node: run warrenctl stop_app first")
	}
	if b.ms.restart.Load() {
		return res, errors.New("a membership change is waiting for start_app on this node: run warrenctl start_app first")
	}
	if b.cluster != nil || b.cfg.Clustered() {
		return res, fmt.Errorf("%s is already a member of a cluster: run warrenctl reset first to leave it", b.cfg.NodeName)
	}
	if b.cfg.DataDir == "" || b.cfg.Cookie == "" {
		return res, errors.New("joining a cluster needs a data directory and the node cookie")
	}
	self, err := cluster.ParseNodeName(b.cfg.NodeName)
	if err != nil {
		return res, fmt.Errorf("node name %q: %w (set --nodename or WARREN_NODENAME to warren@HOST)", b.cfg.NodeName, err)
	}
	tn, err := cluster.ParseNodeName(target)
	if err != nil {
		return res, fmt.Errorf("%q is not a node name (warren@HOST): %w", target, err)
	}
	if tn == self {
		return res, fmt.Errorf("%s cannot join itself", self)
	}
	if addr == "" {
		addr = tn.Addr(b.cfg.DistPort)
	}
	myAddr := self.Addr(b.cfg.DistPort)
	if b.ms.join != nil {
		if ta, ok := b.ms.join.Addr().(*net.TCPAddr); ok {
			myAddr = self.Addr(ta.Port)
		}
	}
	// the node's own definitions are kept aside, restored by reset
	export := filepath.Join(b.cfg.DataDir, "definitions-before-join-"+stamp()+".json")
	raw, err := json.MarshalIndent(b.meta.Export(), "", "  ")
	if err != nil {
		return res, err
	}
	if err := writeFileSync(export, raw); err != nil {
		return res, fmt.Errorf("cannot export this node's definitions to %s: %w", export, err)
	}
	req, _ := json.Marshal(memberRequest{Op: "join", Name: self.String(), Addr: myAddr})
	b.ms.founderSeen = false
	var ans joinAnswer
	deadline := time.Now().Add(cluster.RequestTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), cluster.RequestTimeout)
		out, err := cluster.Request(ctx, cluster.RequestConfig{Name: self, Cookie: []byte(b.cfg.Cookie), TLS: distTLSOrNil(b), Target: tn, Addr: addr}, req)
		timedOut := ctx.Err() != nil
		cancel()
		var re *cluster.RemoteError
		isRemote := errors.As(err, &re)
		retry := isRemote && strings.HasPrefix(re.Text, retryMarker)
		// a founder restarting answers nothing for a moment: retry while
		// it restarts (a wrong address fails after the deadline too)
		retry = retry || (err != nil && !isRemote && !errors.Is(err, cluster.ErrRefused) && !timedOut && b.ms.founderSeen)
		if isRemote && retry {
			b.ms.founderSeen = true
		}
		if err == nil {
			if err := json.Unmarshal(out, &ans); err != nil {
				return res, fmt.Errorf("undecodable answer from %s: %w", tn, err)
			}
			break
		}
		if !retry || time.Now().After(deadline) {
			_ = os.Remove(export)
			if re != nil {
				return res, fmt.Errorf("%s refused the join: %s", tn, strings.TrimPrefix(re.Text, retryMarker))
			}
			return res, err
		}
		b.log.Info("join: retrying", "target", tn.String(), "reason", err)
		time.Sleep(500 * time.Millisecond)
	}
	// from here on this node is a member: set up its next start
	if err := writeNodeID(b.cfg.DataDir, ans.ID); err != nil {
		return res, err
	}
	ts := stamp()
	for _, d := range []string{"meta", "msgs", "raft"} {
		p := filepath.Join(b.cfg.DataDir, d)
		if _, err := os.Stat(p); err == nil {
			if err := os.Rename(p, p+"-before-join-"+ts); err != nil {
				return res, fmt.Errorf("moving %s aside: %w", p, err)
			}
		}
	}
	if err := writeMemberState(b.cfg.DataDir, memberState{Members: ans.Members, Joined: true}); err != nil {
		return res, err
	}
	b.ms.restart.Store(true)
	res = JoinResult{Cluster: ans.ClusterName, Export: export, ID: ans.ID}
	b.log.Info("joined a cluster; the broker restarts as a member on start_app", "target", tn.String(), "id", ans.ID, "definitions_export", export)
	return res, nil
}

// Reset is warrenctl reset (application stopped): a member leaves its
// cluster and comes back standalone with the definitions it had before
// joining; a standalone node is wiped, as rabbitmqctl reset does. The
// broker restarts on start_app. It returns what was restored ("" none).
func (b *Broker) Reset() (string, error) {
	b.ms.mu.Lock()
	defer b.ms.mu.Unlock()
	if b.Running() {
		return "", errors.New("the application is running on this node: run warrenctl stop_app first")
	}
	if b.cfg.DataDir == "" {
		return "", errors.New("this node has no data directory to reset")
	}
	if b.cfg.Clustered() {
		return "", errors.New("this node's cluster comes from cluster_formation.classic_config in its configuration: remove it from that list on every node first, then forget it with forget_cluster_node")
	}
	ts := stamp()
	restored := ""
	if b.cluster != nil {
		cn := b.cluster
		var others []ClusterMember
		for _, m := range cn.list() {
			if !m.Self {
				others = append(others, m)
			}
		}
		if len(others) > 0 {
			req, _ := json.Marshal(memberRequest{Op: "leave", Name: cn.self.String()})
			var lastErr error
			done := false
			for _, m := range others {
				if !cn.link.Connected(m.ID) {
					continue
				}
				n, _ := cluster.ParseNodeName(m.Name)
				ctx, cancel := context.WithTimeout(context.Background(), cluster.RequestTimeout)
				_, err := cluster.Request(ctx, cluster.RequestConfig{Name: cn.self, Cookie: []byte(b.cfg.Cookie), TLS: distTLSOrNil(b), Target: n, Addr: m.Addr}, req)
				cancel()
				if err == nil {
					done = true
					break
				}
				lastErr = err
			}
			if !done {
				if lastErr == nil {
					lastErr = errors.New("no other member is reachable")
				}
				return "", fmt.Errorf("could not leave the cluster: %w; start the other members, or run forget_cluster_node %s on one of them", lastErr, cn.self)
			}
		}
		for _, d := range []string{"raft", "msgs"} {
			p := filepath.Join(b.cfg.DataDir, d)
			if _, err := os.Stat(p); err == nil {
				if err := os.Rename(p, p+"-left-cluster-"+ts); err != nil {
					return "", fmt.Errorf("moving %s aside: %w", p, err)
				}
			}
		}
		if exp := latestExport(b.cfg.DataDir); exp != "" {
			if err := writeFileSync(filepath.Join(b.cfg.DataDir, restoreFile), []byte(exp+"\n")); err != nil {
				return "", err
			}
			restored = exp
		}
		if err := os.Remove(memberFilePath(b.cfg.DataDir)); err != nil {
			return "", err
		}
		_ = os.Remove(filepath.Join(b.cfg.DataDir, nodeIDFile))
	} else {
		// rabbitmqctl reset on a standalone node: every definition and
		// message goes
		for _, d := range []string{"meta", "msgs", "pager"} {
			if err := os.RemoveAll(filepath.Join(b.cfg.DataDir, d)); err != nil {
				return "", fmt.Errorf("wiping %s: %w", d, err)
			}
		}
	}
	b.ms.restart.Store(true)
	return restored, nil
}

// latestExport is the newest definitions-before-join export ("" none).
func latestExport(dir string) string {
	m, _ := filepath.Glob(filepath.Join(dir, "definitions-before-join-*.json"))
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// restoreAfterReset imports the definitions a node had before it joined,
// at the first standalone start after it left (reset).
func (b *Broker) restoreAfterReset() error {
	marker := filepath.Join(b.cfg.DataDir, restoreFile)
	raw, err := os.ReadFile(marker)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	path := strings.TrimSpace(string(raw))
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("restoring the definitions this node had before it joined a cluster: %w (remove %s to start without them)", err, marker)
	}
	var d metadata.Definitions
	if err := json.Unmarshal(data, &d); err != nil {
		return fmt.Errorf("restoring %s: %w (remove %s to start without them)", path, err, marker)
	}
	if err := b.meta.Import(d); err != nil {
		return fmt.Errorf("restoring %s: %w", path, err)
	}
	b.log.Info("restored the definitions this node had before it joined a cluster", "file", path)
	return os.Remove(marker)
}

// ForgetClusterNode removes a stopped member (warrenctl
// forget_cluster_node, run on any other member).
func (b *Broker) ForgetClusterNode(name string) error {
	b.ms.mu.Lock()
	defer b.ms.mu.Unlock()
	if b.cluster == nil {
		return fmt.Errorf("%s is not clustered, so it has no node %s to forget", b.cfg.NodeName, name)
	}
	return b.removeMember(name, true)
}

// offlineSeed is the file forget_cluster_node --offline seeds the new
// cluster with: the definitions and each queue's home.
type offlineSeed struct {
	Definitions metadata.Definitions `json:"definitions"`
	Homes       map[string]string    `json:"homes"` // vhost NUL name → node
}

// ForgetClusterNodeOffline is forget_cluster_node --offline, the last
// resort of a cluster that lost its majority for good (the named node
// will never return): this node (its application stopped) leaves the
// old cluster's consensus group, whose log cannot commit any more, and
// restarts as the only member of a new cluster made of the definitions
// it has. Queues whose home was the forgotten node are dropped. Every
// other surviving member must then run reset and join_cluster this node.
// It returns the names of those members.
func (b *Broker) ForgetClusterNodeOffline(name string) ([]string, error) {
	b.ms.mu.Lock()
	defer b.ms.mu.Unlock()
	if b.Running() {
		return nil, errors.New("the application is running on this node: run warrenctl stop_app first (--offline acts on a stopped node)")
	}
	if b.cluster == nil || b.cfg.Clustered() {
		return nil, errors.New("--offline applies to a node that joined its cluster with join_cluster (a classic_config cluster's membership is its configuration)")
	}
	cn := b.cluster
	var others []string
	found := false
	for _, m := range cn.list() {
		switch {
		case m.Name == name && m.Self:
			return nil, fmt.Errorf("%s cannot forget itself", name)
		case m.Name == name:
			found = true
		case !m.Self:
			others = append(others, m.Name)
		}
	}
	if !found {
		return nil, fmt.Errorf("node %s is not a member of this cluster", name)
	}
	seed := offlineSeed{Homes: map[string]string{}}
	seed.Definitions = b.meta.Export()
	b.meta.Read(func(s *metadata.State) {
		for _, q := range s.Queues {
			seed.Homes[q.VHost+"\x00"+q.Name] = q.Node
		}
	})
	var keep []metadata.Queue
	for _, q := range seed.Definitions.Queues {
		if seed.Homes[q.VHost+"\x00"+q.Name] != name {
			keep = append(keep, q)
		}
	}
	seed.Definitions.Queues = keep
	raw, err := json.MarshalIndent(seed, "", "  ")
	if err != nil {
		return nil, err
	}
	ts := stamp()
	seedName := "offline-seed-" + ts + ".json"
	if err := writeFileSync(filepath.Join(b.cfg.DataDir, seedName), raw); err != nil {
		return nil, err
	}
	self := cn.self.String()
	var me metadata.Member
	for _, m := range cn.list() {
		if m.Self {
			me = metadata.Member{Name: self, ID: m.ID, Addr: m.Addr}
		}
	}
	raftDir := filepath.Join(b.cfg.DataDir, "raft")
	if err := os.Rename(raftDir, raftDir+"-before-offline-forget-"+ts); err != nil {
		return nil, fmt.Errorf("moving %s aside: %w", raftDir, err)
	}
	if err := writeMemberState(b.cfg.DataDir, memberState{Members: []metadata.Member{me}, Seed: seedName}); err != nil {
		return nil, err
	}
	b.ms.restart.Store(true)
	b.log.Warn("forget_cluster_node --offline: this node restarts on start_app as the only member of a new cluster", "forgotten", name, "must_rejoin", others)
	return others, nil
}

// distTLSOrNil is distTLS for requests, whose start already checked it.
func distTLSOrNil(b *Broker) *tls.Config {
	c, _ := b.distTLS()
	return c
}
