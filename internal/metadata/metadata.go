// Package metadata keeps a node's definitions (users, vhosts, permissions,
// exchanges, queues, bindings, policies) as a deterministic state machine of
// commands. Every change is a Command proposed through a Log; the Log decides
// when it is committed (at once on a standalone node, after consensus in a
// cluster) and then Apply runs it on the State and notifies observers, on
// every node in the same order. Callers only ever call Store.Propose, so
// swapping the log changes no caller.
//
//	s := metadata.NewStore(metadata.NewLocalLog())
//	s.Observe(func(c metadata.Command) { ... update runtime ... })
//	err := s.Propose(metadata.Command{Op: metadata.OpAddVHost, VHost: "/"})
//
// The definitions' JSON shape is RabbitMQ's definitions export format, so a
// file exported from RabbitMQ imports here and the reverse.
package metadata

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/warrenmq/warren/internal/amqp"
	"hash/fnv"
	"regexp"
	"slices"
	"sort"
	"sync"
)

// Op names a command.
type Op string

// The commands.
const (
	OpAddVHost         Op = "add_vhost"
	OpDeleteVHost      Op = "delete_vhost"
	OpPutUser          Op = "put_user"
	OpDeleteUser       Op = "delete_user"
	OpSetPermissions   Op = "set_permissions"
	OpClearPermissions Op = "clear_permissions"
	OpDeclareExchange  Op = "declare_exchange"
	OpDeleteExchange   Op = "delete_exchange"
	OpDeclareQueue     Op = "declare_queue"
	OpDeleteQueue      Op = "delete_queue"
	OpBind             Op = "bind"
	OpUnbind           Op = "unbind"
	OpSetPolicy        Op = "set_policy"
	OpClearPolicy      Op = "clear_policy"
	// OpBarrier changes nothing: a clustered node commits one at start so
	// that every command committed before it is applied here too.
	OpBarrier Op = "barrier"
	// OpBoot creates the default vhost (VHost, unless it exists), user
	// (User) and its permissions (Permission) in one step, only when there
	// are no users yet: every node of a new cluster may propose it, the
	// first to commit wins and the others change nothing, and no node
	// ever sees the defaults half made.
	OpBoot Op = "boot"
	// OpPutMember and OpRemoveMember change the cluster's member table
	// (name, Raft id, inter-node address; ADR 0008). The Raft membership
	// of the definitions' group changes by conf changes next to them.
	OpPutMember    Op = "put_member"
	OpRemoveMember Op = "remove_member"
)

// Member is one node of the cluster's member table (ADR 0008).
type Member struct {
	Name string `json:"name"` // warren@host
	ID   uint64 `json:"id"`   // its Raft id in the definitions' group
	Addr string `json:"addr"` // its inter-node address, host:port
}

// User is a RabbitMQ-style user definition.
type User struct {
	Name             string   `json:"name"`
	PasswordHash     string   `json:"password_hash"`
	HashingAlgorithm string   `json:"hashing_algorithm"`
	Tags             []string `json:"tags"`
}

// VHost is a virtual host definition.
type VHost struct {
	Name string `json:"name"`
}

// Permission grants a user configure/write/read patterns on a vhost.
type Permission struct {
	User      string `json:"user"`
	VHost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

// Exchange is an exchange definition.
type Exchange struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost"`
	Type       string         `json:"type"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Internal   bool           `json:"internal"`
	Arguments  map[string]any `json:"arguments"`
}

// Queue is a queue definition. Owner is the exclusive owner's connection
// id (not exported in definitions).
type Queue struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Exclusive  bool           `json:"-"`
	Owner      uint64         `json:"-"`
	Arguments  map[string]any `json:"arguments"`
	// Node is the queue's home in a cluster (the node that declared it,
	// warren@host): only that node holds its messages. Empty on a
	// standalone node. Not exported in definitions.
	Node string `json:"-"`
	// Group is the consensus group of a replicated queue (x-queue-type
	// quorum, or classic under an ha-mode policy); 0 for a queue whose
	// messages live on one node. Chosen at random by the proposer (Store.
	// Propose), so a queue deleted and declared again never reuses its
	// predecessor's group. Not exported in definitions.
	Group uint64 `json:"-" codec:"omitzero"`
	// Members are the nodes holding a replica of a replicated queue, in
	// placement order (the first is the preferred leader). Empty on a
	// standalone node. Not exported in definitions.
	Members []string `json:"-" codec:"omitzero"`
	// Moved: the queue became replicated after it was declared (a
	// policy): its home node moves its messages into the group, and no
	// member serves it before the group says the move is complete.
	Moved bool `json:"-" codec:"omitzero"`
}

// Binding binds a destination queue or exchange to a source exchange.
type Binding struct {
	Source          string         `json:"source"`
	VHost           string         `json:"vhost"`
	Destination     string         `json:"destination"`
	DestinationType string         `json:"destination_type"` // "queue" or "exchange"
	RoutingKey      string         `json:"routing_key"`
	Arguments       map[string]any `json:"arguments"`
}

// Policy is a named pattern applying a definition to queues or exchanges.
type Policy struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost"`
	Pattern    string         `json:"pattern"`
	ApplyTo    string         `json:"apply-to"`
	Definition map[string]any `json:"definition"`
	Priority   int            `json:"priority"`
}

// Command is one change to the definitions.
type Command struct {
	Op         Op          `json:"op"`
	VHost      string      `json:"vhost,omitempty"`
	Name       string      `json:"name,omitempty"`
	User       *User       `json:"user,omitempty"`
	Permission *Permission `json:"permission,omitempty"`
	Exchange   *Exchange   `json:"exchange,omitempty"`
	Queue      *Queue      `json:"queue,omitempty"`
	Binding    *Binding    `json:"binding,omitempty"`
	Policy     *Policy     `json:"policy,omitempty"`
	Member     *Member     `json:"member,omitempty"`
	// Members (with OpPutMember) puts several at once: a classic_config
	// cluster's founders, written into the table by its first change, in
	// one command so that no node ever applies a partial table.
	Members []Member `json:"members,omitempty"`

	// Conditional makes a queue declare fail with ErrInequivalent (or
	// ErrLocked) when the queue already exists with other properties, and
	// keep the existing queue (and its home) when it is equivalent: two
	// nodes declaring one queue at the same moment get one definition,
	// never the last writer's (ADR 0005).
	Conditional bool `json:"-"`

	// AutoDeleted lists the auto-delete exchanges (of VHost or the
	// binding's vhost) that applying this command deleted because they
	// lost their last binding as a source. Apply fills it on every node
	// alike; it is not part of the proposed command.
	AutoDeleted []string `json:"-"`

	// Nonce is chosen at random by the proposer of a policy change
	// (Store.Propose): the groups of the classic queues the change makes
	// replicated derive from it, so every node picks the same ones and a
	// later change never reuses one (ADR 0010).
	Nonce uint64 `json:"-" codec:"omitzero"`
	// Replicated lists the queues (of the policy's vhost) that applying
	// this policy change made replicated. Apply fills it on every node
	// alike; it is not part of the proposed command.
	Replicated []string `json:"-" codec:"omitzero"`
}

// Errors from Apply.
var (
	// ErrInequivalent: a conditional declare met a queue with other
	// properties (AMQP 406); ErrLocked: an exclusive queue of another
	// connection (AMQP 405). The error's text is RabbitMQ's.
	ErrInequivalent = errors.New("inequivalent")
	ErrLocked       = errors.New("locked")
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrInvalid      = errors.New("invalid command")
)

// State is the whole set of definitions. It is a value that only Apply
// changes, deterministically.
type State struct {
	VHosts      map[string]VHost
	Users       map[string]User
	Permissions map[[2]string]Permission // user, vhost
	Exchanges   map[[2]string]Exchange   // vhost, name
	Queues      map[[2]string]Queue
	Bindings    map[string]Binding // key: bindingKey
	Policies    map[[2]string]Policy
	// Members is the cluster's member table by node name; empty for a
	// standalone node and for a cluster formed from classic_config that
	// never changed its membership (its table is the configuration's).
	Members map[string]Member

	// nodes are the cluster's nodes, where replicated queues are placed
	// (SetNodes; nil on a standalone node). Configuration, not state:
	// every node of a cluster has the same list.
	nodes []string
	// replicated collects the queues the command being applied made
	// replicated (Store.apply hands them to observers).
	replicated []string
}

// NewState returns empty definitions.
func NewState() *State {
	return &State{
		VHosts:      map[string]VHost{},
		Users:       map[string]User{},
		Permissions: map[[2]string]Permission{},
		Exchanges:   map[[2]string]Exchange{},
		Queues:      map[[2]string]Queue{},
		Bindings:    map[string]Binding{},
		Policies:    map[[2]string]Policy{},
		Members:     map[string]Member{},
	}
}

// BindingKey identifies a binding uniquely.
func BindingKey(b Binding) string {
	args, _ := json.Marshal(b.Arguments) // map keys are sorted by encoding/json
	return fmt.Sprintf("%q %q %q %q %q %s", b.VHost, b.Source, b.DestinationType, b.Destination, b.RoutingKey, args)
}

// Apply runs one command. It is deterministic: the same commands in the
// same order give the same State on every node.
func (s *State) Apply(c Command) error {
	_, err := s.apply(c)
	return err
}

// apply runs c and returns the auto-delete exchanges it deleted.
func (s *State) apply(c Command) ([]string, error) {
	var sources []string // sources of bindings c removed (vhost: vh)
	var vh string
	removeBinding := func(k string, b Binding) {
		delete(s.Bindings, k)
		vh = b.VHost
		sources = append(sources, b.Source)
	}
	switch c.Op {
	case OpDeleteExchange:
		vh = c.VHost
		delete(s.Exchanges, [2]string{c.VHost, c.Name})
		for k, b := range s.Bindings {
			if b.VHost == c.VHost && (b.Source == c.Name || (b.DestinationType == "exchange" && b.Destination == c.Name)) {
				removeBinding(k, b)
			}
		}
	case OpDeleteQueue:
		delete(s.Queues, [2]string{c.VHost, c.Name})
		for k, b := range s.Bindings {
			if b.VHost == c.VHost && b.DestinationType == "queue" && b.Destination == c.Name {
				removeBinding(k, b)
			}
		}
	case OpUnbind:
		if c.Binding == nil {
			return nil, ErrInvalid
		}
		k := BindingKey(*c.Binding)
		if b, ok := s.Bindings[k]; ok {
			removeBinding(k, b)
		}
	default:
		return nil, s.applyOther(c)
	}
	return s.autoDelete(vh, sources), nil
}

// autoDelete deletes the auto-delete exchanges among sources that have no
// binding left as a source, and cascades: deleting one removes the
// bindings it is the destination of, whose sources are checked in turn.
// These are RabbitMQ's rules (rabbit_binding:maybe_auto_delete and
// rabbit_exchange:conditional_delete): only losing a binding as the source
// counts, and an exchange that never had one stays.
func (s *State) autoDelete(vh string, sources []string) []string {
	var deleted []string
	for len(sources) > 0 {
		name := sources[len(sources)-1]
		sources = sources[:len(sources)-1]
		x, ok := s.Exchanges[[2]string{vh, name}]
		if !ok || !x.AutoDelete || s.hasSourceBinding(vh, name) {
			continue
		}
		delete(s.Exchanges, [2]string{vh, name})
		deleted = append(deleted, name)
		for k, b := range s.Bindings {
			if b.VHost == vh && b.DestinationType == "exchange" && b.Destination == name {
				delete(s.Bindings, k)
				sources = append(sources, b.Source)
			}
		}
	}
	sort.Strings(deleted)
	return deleted
}

func (s *State) hasSourceBinding(vh, name string) bool {
	for _, b := range s.Bindings {
		if b.VHost == vh && b.Source == name {
			return true
		}
	}
	return false
}

func (s *State) applyOther(c Command) error {
	switch c.Op {
	case OpAddVHost:
		s.VHosts[c.VHost] = VHost{Name: c.VHost}
	case OpDeleteVHost:
		if _, ok := s.VHosts[c.VHost]; !ok {
			return fmt.Errorf("vhost %q: %w", c.VHost, ErrNotFound)
		}
		delete(s.VHosts, c.VHost)
		for k := range s.Permissions {
			if k[1] == c.VHost {
				delete(s.Permissions, k)
			}
		}
		for k := range s.Exchanges {
			if k[0] == c.VHost {
				delete(s.Exchanges, k)
			}
		}
		for k := range s.Queues {
			if k[0] == c.VHost {
				delete(s.Queues, k)
			}
		}
		for k, b := range s.Bindings {
			if b.VHost == c.VHost {
				delete(s.Bindings, k)
			}
		}
		for k := range s.Policies {
			if k[0] == c.VHost {
				delete(s.Policies, k)
			}
		}
	case OpPutUser:
		if c.User == nil {
			return ErrInvalid
		}
		s.Users[c.User.Name] = *c.User
	case OpDeleteUser:
		if _, ok := s.Users[c.Name]; !ok {
			return fmt.Errorf("user %q: %w", c.Name, ErrNotFound)
		}
		delete(s.Users, c.Name)
		for k := range s.Permissions {
			if k[0] == c.Name {
				delete(s.Permissions, k)
			}
		}
	case OpSetPermissions:
		p := c.Permission
		if p == nil {
			return ErrInvalid
		}
		if _, ok := s.Users[p.User]; !ok {
			return fmt.Errorf("user %q: %w", p.User, ErrNotFound)
		}
		if _, ok := s.VHosts[p.VHost]; !ok {
			return fmt.Errorf("vhost %q: %w", p.VHost, ErrNotFound)
		}
		s.Permissions[[2]string{p.User, p.VHost}] = *p
	case OpClearPermissions:
		delete(s.Permissions, [2]string{c.Name, c.VHost})
	case OpDeclareExchange:
		if c.Exchange == nil {
			return ErrInvalid
		}
		s.Exchanges[[2]string{c.Exchange.VHost, c.Exchange.Name}] = *c.Exchange
	case OpDeclareQueue:
		if c.Queue == nil {
			return ErrInvalid
		}
		k := [2]string{c.Queue.VHost, c.Queue.Name}
		if cur, ok := s.Queues[k]; ok && c.Conditional {
			return equivalentQueue(cur, *c.Queue)
		}
		s.Queues[k] = s.place(*c.Queue)
	case OpBind:
		if c.Binding == nil {
			return ErrInvalid
		}
		s.Bindings[BindingKey(*c.Binding)] = *c.Binding
	case OpSetPolicy:
		if c.Policy == nil {
			return ErrInvalid
		}
		s.Policies[[2]string{c.Policy.VHost, c.Policy.Name}] = *c.Policy
		s.replicate(c.Policy.VHost, c.Nonce)
	case OpPutMember:
		put := c.Members
		if c.Member != nil {
			put = append(put, *c.Member)
		}
		if len(put) == 0 {
			return fmt.Errorf("put_member needs a member: %w", ErrInvalid)
		}
		next := map[string]Member{}
		for k, m := range s.Members {
			next[k] = m
		}
		for _, p := range put {
			if p.Name == "" || p.ID == 0 {
				return fmt.Errorf("put_member needs a name and a non-zero id: %w", ErrInvalid)
			}
			for _, m := range next {
				if m.ID == p.ID && m.Name != p.Name {
					return fmt.Errorf("node id %d is taken by %s: %w", m.ID, m.Name, ErrExists)
				}
			}
			next[p.Name] = p
		}
		s.Members = next
	case OpRemoveMember:
		if _, ok := s.Members[c.Name]; !ok {
			return fmt.Errorf("node %s is not a member: %w", c.Name, ErrNotFound)
		}
		delete(s.Members, c.Name)
	case OpBarrier:
	case OpBoot:
		if len(s.Users) > 0 {
			return nil // someone else's boot, or definitions, came first
		}
		if c.User == nil || c.Permission == nil || c.VHost == "" {
			return ErrInvalid
		}
		for _, sub := range bootCommands(c) {
			if _, exists := s.VHosts[sub.VHost]; sub.Op == OpAddVHost && exists {
				continue
			}
			if _, err := s.apply(sub); err != nil {
				return err
			}
		}
	case OpClearPolicy:
		if _, ok := s.Policies[[2]string{c.VHost, c.Name}]; !ok {
			return fmt.Errorf("policy %q in vhost %q: %w", c.Name, c.VHost, ErrNotFound)
		}
		delete(s.Policies, [2]string{c.VHost, c.Name})
	default:
		return fmt.Errorf("%w: unknown op %q", ErrInvalid, c.Op)
	}
	return nil
}

// Log orders commands. Append returns once cmd is committed and apply has
// run for it (apply is called in commit order, exactly once per command).
type Log interface {
	Append(cmd Command, apply func(Command) error) error
}

// LocalLog is the standalone node's log: a command commits at once. The
// durability work backs it with the WAL; clustering replaces it with a
// consensus group.
type LocalLog struct{ mu sync.Mutex }

// NewLocalLog returns a log that commits immediately.
func NewLocalLog() *LocalLog { return &LocalLog{} }

// Append applies cmd at once, serialised with other appends.
func (l *LocalLog) Append(cmd Command, apply func(Command) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return apply(cmd)
}

// Store couples a State with a Log and the observers of applied commands.
type Store struct {
	log       Log
	mu        sync.RWMutex
	state     *State
	observers []func(Command)
	restored  []func()
}

// OnRestore registers fn to run after the whole state was replaced by a
// snapshot (a replicated log's), with no Store lock held: observers are
// not told of the commands the snapshot stands for, so whoever keeps
// runtime objects rebuilds them from the state here.
func (s *Store) OnRestore(fn func()) { s.restored = append(s.restored, fn) }

// NewStore returns a store with empty definitions. A log that applies
// commands committed elsewhere (a ReplicatedLog) is bound to the store's
// apply function here.
func NewStore(log Log) *Store {
	s := &Store{log: log, state: NewState()}
	if b, ok := log.(interface{ bind(*Store) }); ok {
		b.bind(s)
	}
	return s
}

// Observe registers fn to run after every applied command (in order, with
// no Store lock held).
func (s *Store) Observe(fn func(Command)) { s.observers = append(s.observers, fn) }

// Propose submits cmd and waits until it is applied.
func (s *Store) Propose(cmd Command) error {
	if cmd.Op == OpSetPolicy && cmd.Nonce == 0 {
		cmd.Nonce = NewGroupID()
	}
	if cmd.Op == OpDeclareQueue && cmd.Queue != nil && cmd.Queue.Group == 0 {
		// a group for the queue in case Apply makes it a replicated one
		// (a quorum queue, or a classic queue an ha-mode policy matches);
		// Apply clears it otherwise
		q := *cmd.Queue
		q.Group = NewGroupID()
		cmd.Queue = &q
	}
	return s.log.Append(cmd, s.apply)
}

// IsQuorumQueue reports whether queue arguments declare a quorum queue.
func IsQuorumQueue(args map[string]any) bool {
	t, _ := args["x-queue-type"].(string)
	return t == "quorum"
}

// NewGroupID returns a fresh consensus group id for a replicated queue:
// random, at least 2^32 (below are fixed groups such as the
// definitions' group 1).
func NewGroupID() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return binary.BigEndian.Uint64(b[:])>>1 | 1<<32
}

func (s *Store) apply(cmd Command) error {
	if cmd.Op == OpBoot {
		return s.applyBoot(cmd)
	}
	s.mu.Lock()
	s.state.replicated = nil
	deleted, err := s.state.apply(cmd)
	cmd.Replicated, s.state.replicated = s.state.replicated, nil
	if err == nil && cmd.Op == OpDeclareQueue && cmd.Queue != nil {
		// observers see the queue as Apply placed it (its group and
		// members decided there), not as proposed
		q := s.state.Queues[[2]string{cmd.Queue.VHost, cmd.Queue.Name}]
		cmd.Queue = &q
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	cmd.AutoDeleted = deleted
	for _, fn := range s.observers {
		fn(cmd)
	}
	return nil
}

// snapshotState is the whole State as JSON-friendly lists.
type snapshotState struct {
	VHosts      []VHost      `json:"vhosts"`
	Users       []User       `json:"users"`
	Permissions []Permission `json:"permissions"`
	Exchanges   []Exchange   `json:"exchanges"`
	Queues      []wireQueue  `json:"queues"`
	Bindings    []Binding    `json:"bindings"`
	Policies    []Policy     `json:"policies"`
}

// wireQueue carries the fields RabbitMQ's definitions format leaves out
// (exclusivity and its owner) when a queue travels between nodes.
type wireQueue struct {
	Queue
	Exclusive bool   `json:"exclusive,omitempty"`
	Owner     uint64 `json:"owner,omitempty"`
}

func toWire(q Queue) wireQueue { return wireQueue{Queue: q, Exclusive: q.Exclusive, Owner: q.Owner} }

func (w wireQueue) queue() Queue {
	q := w.Queue
	q.Exclusive, q.Owner = w.Exclusive, w.Owner
	return q
}

// sortedState lists every definition of st, in a deterministic order.
func sortedState(st *State) snapshotState {
	var ss snapshotState
	for _, v := range st.VHosts {
		ss.VHosts = append(ss.VHosts, v)
	}
	for _, u := range st.Users {
		ss.Users = append(ss.Users, u)
	}
	for _, p := range st.Permissions {
		ss.Permissions = append(ss.Permissions, p)
	}
	for _, x := range st.Exchanges {
		ss.Exchanges = append(ss.Exchanges, x)
	}
	for _, q := range st.Queues {
		ss.Queues = append(ss.Queues, toWire(q))
	}
	for _, b := range st.Bindings {
		ss.Bindings = append(ss.Bindings, b)
	}
	for _, p := range st.Policies {
		ss.Policies = append(ss.Policies, p)
	}
	key := func(a, b string) string { return a + "\x00" + b }
	sort.Slice(ss.VHosts, func(i, j int) bool { return ss.VHosts[i].Name < ss.VHosts[j].Name })
	sort.Slice(ss.Users, func(i, j int) bool { return ss.Users[i].Name < ss.Users[j].Name })
	sort.Slice(ss.Permissions, func(i, j int) bool {
		return key(ss.Permissions[i].User, ss.Permissions[i].VHost) < key(ss.Permissions[j].User, ss.Permissions[j].VHost)
	})
	sort.Slice(ss.Exchanges, func(i, j int) bool {
		return key(ss.Exchanges[i].VHost, ss.Exchanges[i].Name) < key(ss.Exchanges[j].VHost, ss.Exchanges[j].Name)
	})
	sort.Slice(ss.Queues, func(i, j int) bool {
		return key(ss.Queues[i].VHost, ss.Queues[i].Name) < key(ss.Queues[j].VHost, ss.Queues[j].Name)
	})
	sort.Slice(ss.Bindings, func(i, j int) bool { return BindingKey(ss.Bindings[i]) < BindingKey(ss.Bindings[j]) })
	sort.Slice(ss.Policies, func(i, j int) bool {
		return key(ss.Policies[i].VHost, ss.Policies[i].Name) < key(ss.Policies[j].VHost, ss.Policies[j].Name)
	})
	return ss
}

// binState is the whole State in the byte-exact encoding (codec.go).
type binState struct {
	VHosts      []VHost
	Users       []User
	Permissions []Permission
	Exchanges   []Exchange
	Queues      []Queue
	Bindings    []Binding
	Policies    []Policy
	Members     []Member
}

// snapshot encodes every definition, transient ones included (Export
// keeps only what RabbitMQ exports), in a deterministic order, byte-exact.
func (s *Store) snapshot() ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ss := sortedState(s.state)
	bs := binState{VHosts: ss.VHosts, Users: ss.Users, Permissions: ss.Permissions, Exchanges: ss.Exchanges, Bindings: ss.Bindings, Policies: ss.Policies, Members: sortedMembers(s.state)}
	for _, w := range ss.Queues {
		bs.Queues = append(bs.Queues, w.queue())
	}
	return marshalBinary(&bs)
}

// restore replaces the whole state with a snapshot's (byte-exact, or the
// JSON of earlier versions). Observers are not told: whoever keeps
// runtime objects must rebuild them from the state.
func (s *Store) restore(b []byte) error {
	var ss snapshotState
	var members []Member
	switch {
	case len(b) == 0:
	case b[0] == '{':
		if err := json.Unmarshal(b, &ss); err != nil {
			return fmt.Errorf("metadata snapshot unreadable: %w", err)
		}
	default:
		var bs binState
		if err := unmarshalBinary(b, &bs); err != nil {
			return fmt.Errorf("metadata snapshot unreadable: %w", err)
		}
		ss = snapshotState{VHosts: bs.VHosts, Users: bs.Users, Permissions: bs.Permissions, Exchanges: bs.Exchanges, Bindings: bs.Bindings, Policies: bs.Policies}
		members = bs.Members
		for _, q := range bs.Queues {
			ss.Queues = append(ss.Queues, toWire(q))
		}
	}
	st := NewState()
	for _, v := range ss.VHosts {
		st.VHosts[v.Name] = v
	}
	for _, u := range ss.Users {
		st.Users[u.Name] = u
	}
	for _, p := range ss.Permissions {
		st.Permissions[[2]string{p.User, p.VHost}] = p
	}
	for _, x := range ss.Exchanges {
		st.Exchanges[[2]string{x.VHost, x.Name}] = x
	}
	for _, w := range ss.Queues {
		q := w.queue()
		st.Queues[[2]string{q.VHost, q.Name}] = q
	}
	for _, bd := range ss.Bindings {
		st.Bindings[BindingKey(bd)] = bd
	}
	for _, p := range ss.Policies {
		st.Policies[[2]string{p.VHost, p.Name}] = p
	}
	for _, m := range members {
		st.Members[m.Name] = m
	}
	s.mu.Lock()
	st.nodes = s.state.nodes
	s.state = st
	s.mu.Unlock()
	for _, fn := range s.restored {
		fn()
	}
	return nil
}

// sortedMembers lists the member table by name.
func sortedMembers(st *State) []Member {
	var out []Member
	for _, m := range st.Members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SetNodes sets the cluster's nodes (names, as in classic_config), over
// which replicated queues are placed. Every node of a cluster must set the
// same list before the first command is applied.
func (s *Store) SetNodes(names []string) {
	s.mu.Lock()
	s.state.nodes = slices.Clone(names)
	s.mu.Unlock()
}

// Read runs fn with the state read-locked.
func (s *Store) Read(fn func(st *State)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(s.state)
}

// Definitions is RabbitMQ's definitions export format.
type Definitions struct {
	RabbitVersion string       `json:"rabbit_version,omitempty"`
	RabbitMQVer   string       `json:"rabbitmq_version,omitempty"`
	ProductName   string       `json:"product_name,omitempty"`
	ProductVer    string       `json:"product_version,omitempty"`
	Users         []User       `json:"users"`
	VHosts        []VHost      `json:"vhosts"`
	Permissions   []Permission `json:"permissions"`
	TopicPerms    []any        `json:"topic_permissions"`
	Parameters    []any        `json:"parameters"`
	GlobalParams  []any        `json:"global_parameters"`
	Policies      []Policy     `json:"policies"`
	Queues        []Queue      `json:"queues"`
	Exchanges     []Exchange   `json:"exchanges"`
	Bindings      []Binding    `json:"bindings"`
}

// Export returns the durable definitions in a deterministic order.
func (s *Store) Export() Definitions {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return exportState(s.state)
}

func exportState(st *State) Definitions {
	all := sortedState(st)
	d := Definitions{TopicPerms: []any{}, Parameters: []any{}, GlobalParams: []any{},
		Users: []User{}, VHosts: append([]VHost{}, all.VHosts...), Permissions: append([]Permission{}, all.Permissions...),
		Policies: append([]Policy{}, all.Policies...), Queues: []Queue{}, Exchanges: []Exchange{}, Bindings: []Binding{}}
	for _, u := range all.Users {
		if u.Tags == nil {
			u.Tags = []string{}
		}
		d.Users = append(d.Users, u)
	}
	// RabbitMQ exports durable objects only, and no built-in exchanges
	durableQ := map[[2]string]bool{}
	for _, w := range all.Queues {
		q := w.queue()
		if q.Durable && !q.Exclusive {
			durableQ[[2]string{q.VHost, q.Name}] = true
			if q.Arguments == nil {
				q.Arguments = map[string]any{}
			}
			d.Queues = append(d.Queues, q)
		}
	}
	durableX := map[[2]string]bool{}
	for _, x := range all.Exchanges {
		if x.Durable && x.Name != "" && !isBuiltin(x.Name) {
			durableX[[2]string{x.VHost, x.Name}] = true
			if x.Arguments == nil {
				x.Arguments = map[string]any{}
			}
			d.Exchanges = append(d.Exchanges, x)
		}
	}
	for _, b := range all.Bindings {
		srcOK := durableX[[2]string{b.VHost, b.Source}] || isBuiltin(b.Source)
		dst := [2]string{b.VHost, b.Destination}
		dstOK := (b.DestinationType == "queue" && durableQ[dst]) || (b.DestinationType == "exchange" && (durableX[dst] || isBuiltin(b.Destination)))
		if srcOK && dstOK && b.Source != "" {
			if b.Arguments == nil {
				b.Arguments = map[string]any{}
			}
			d.Bindings = append(d.Bindings, b)
		}
	}
	return d
}

func isBuiltin(name string) bool {
	switch name {
	case "", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match", "amq.rabbitmq.trace":
		return true
	}
	return false
}

// Import proposes the commands that create everything in d, in dependency
// order: vhosts, users, permissions, policies, exchanges, queues, bindings.
func (s *Store) Import(d Definitions) error {
	for _, c := range Commands(d) {
		if err := s.Propose(c); err != nil {
			return fmt.Errorf("import %s: %w", c.Op, err)
		}
	}
	return nil
}

// QueueEquivalenceArgs are the arguments compared when a queue is declared
// again (RabbitMQ's rabbit_amqqueue:declare_args/0 and consume args).
var QueueEquivalenceArgs = []string{"x-expires", "x-message-ttl", "x-dead-letter-exchange",
	"x-dead-letter-routing-key", "x-max-length", "x-max-length-bytes", "x-max-priority", "x-overflow",
	"x-queue-mode", "x-single-active-consumer", "x-queue-type", "x-queue-master-locator"}

// conditionError carries RabbitMQ's text for a failed conditional command.
type conditionError struct {
	kind error
	text string
}

func (e *conditionError) Error() string { return e.text }
func (e *conditionError) Unwrap() error { return e.kind }

// equivalentQueue is nil when declaring q again leaves cur as it is.
func equivalentQueue(cur, q Queue) error {
	ineq := func(arg string, got, was any) error {
		return &conditionError{ErrInequivalent, fmt.Sprintf("inequivalent arg '%s' for queue '%s' in vhost '%s': received '%v' but current is '%v'", arg, q.Name, q.VHost, got, was)}
	}
	switch {
	case cur.Exclusive != q.Exclusive || (cur.Exclusive && (cur.Owner != q.Owner || cur.Node != q.Node)):
		return &conditionError{ErrLocked, fmt.Sprintf("cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.", q.Name, q.VHost)}
	case cur.Durable != q.Durable:
		return ineq("durable", q.Durable, cur.Durable)
	case cur.AutoDelete != q.AutoDelete:
		return ineq("auto_delete", q.AutoDelete, cur.AutoDelete)
	}
	for _, k := range QueueEquivalenceArgs {
		a, aok := q.Arguments[k]
		b, bok := cur.Arguments[k]
		if k == "x-queue-type" {
			// classic is the default
			aok = aok && fmt.Sprint(a) != "classic"
			bok = bok && fmt.Sprint(b) != "classic"
		}
		if aok != bok || (aok && fmt.Sprint(a) != fmt.Sprint(b)) {
			if !aok {
				a = "none"
			}
			if !bok {
				b = "none"
			}
			return ineq(k, a, b)
		}
	}
	return nil
}

// place decides whether queue q is replicated and over which nodes
// (ADR 0010), deterministically, so every node applying the declare
// agrees: a quorum queue is; a classic queue is when the policy that
// applies to it has ha-mode. A replicated queue keeps the group its
// proposer chose; any other queue gets none.
func (s *State) place(q Queue) Queue {
	def := s.policyFor(q.VHost, q.Name)
	replicated := IsQuorumQueue(q.Arguments) || (def["ha-mode"] != nil && !q.Exclusive && q.Durable)
	if !replicated || q.Group == 0 {
		q.Group, q.Members = 0, nil
		return q
	}
	q.Members = s.members(q, def)
	return q
}

// placementNodes are the nodes replicated queues are placed over: the
// member table once the cluster has one (after its first membership
// change: state, so every node agrees at every log position), else the
// configured classic_config nodes (SetNodes).
func (s *State) placementNodes() []string {
	if len(s.Members) > 0 {
		out := make([]string, 0, len(s.Members))
		for n := range s.Members {
			out = append(out, n)
		}
		return out
	}
	return slices.Clone(s.nodes)
}

// members chooses a replicated queue's nodes: its home (the declaring
// node) first, then the other nodes in an order that starts at a place
// derived from the queue's name (so that members spread over the nodes),
// as many as the queue asks for:
//   - quorum: x-quorum-initial-group-size, default every node;
//   - ha-mode all: every node; exactly N: N nodes (every node if fewer);
//   - ha-mode nodes: the listed nodes the cluster has (unknown names are
//     ignored, as RabbitMQ does), the home first when listed; the home
//     alone when none is known.
func (s *State) members(q Queue, def map[string]any) []string {
	nodes := s.placementNodes()
	if len(nodes) == 0 {
		return nil // a standalone node: itself
	}
	slices.Sort(nodes)
	home := q.Node
	if !slices.Contains(nodes, home) {
		home = ""
	}
	h := fnv.New32a()
	h.Write([]byte(q.VHost + "\x00" + q.Name))
	start := int(h.Sum32() % uint32(len(nodes)))
	order := []string{}
	if home != "" {
		order = append(order, home)
	}
	for i := range nodes {
		if n := nodes[(start+i)%len(nodes)]; n != home {
			order = append(order, n)
		}
	}
	want := len(order)
	if IsQuorumQueue(q.Arguments) {
		if n, ok := amqp.IntValue(q.Arguments["x-quorum-initial-group-size"]); ok && n > 0 && int(n) < want {
			want = int(n)
		}
		return order[:want]
	}
	switch def["ha-mode"] {
	case "exactly":
		if n, ok := amqp.IntValue(def["ha-params"]); ok && n > 0 && int(n) < want {
			want = int(n)
		}
	case "nodes":
		listed, _ := def["ha-params"].([]any)
		var out []string
		for _, n := range order {
			if slices.Contains(listed, any(n)) {
				out = append(out, n)
			}
		}
		if len(out) == 0 {
			return order[:1]
		}
		return out
	}
	return order[:want]
}

// policyFor returns the definition of the policy that applies to queue
// name in vhost vh (the highest priority, then the first name), as the
// vhost computes it for the runtime.
func (s *State) policyFor(vh, name string) map[string]any {
	var best *Policy
	for k, p := range s.Policies {
		if k[0] != vh || (p.ApplyTo != "" && p.ApplyTo != "all" && p.ApplyTo != "queues") {
			continue
		}
		if best != nil && (p.Priority < best.Priority || (p.Priority == best.Priority && p.Name > best.Name)) {
			continue
		}
		re, err := regexp.Compile(p.Pattern)
		if err != nil || !re.MatchString(name) {
			continue
		}
		p := p
		best = &p
	}
	if best == nil {
		return nil
	}
	return best.Definition
}

// replicate makes replicated every durable, non-exclusive classic queue
// of vhost vh that an ha-mode policy now applies to and that is not
// replicated yet (a policy set after the queue was declared): its group
// derives from the command's nonce, its members are placed as at
// declare. A command without a nonce (written before policies could
// convert queues) changes nothing. Queues already replicated keep their
// group and members (member changes are not built, ADR 0010).
func (s *State) replicate(vh string, nonce uint64) {
	if nonce == 0 {
		return
	}
	for k, q := range s.Queues {
		if k[0] != vh || q.Group != 0 || IsQuorumQueue(q.Arguments) || !q.Durable || q.Exclusive {
			continue
		}
		def := s.policyFor(vh, q.Name)
		if def["ha-mode"] == nil {
			continue
		}
		h := fnv.New64a()
		var nb [8]byte
		binary.BigEndian.PutUint64(nb[:], nonce)
		h.Write(nb[:])
		h.Write([]byte(vh + "\x00" + q.Name))
		q.Group = h.Sum64()>>1 | 1<<32
		q.Members = s.members(q, def)
		q.Moved = true
		s.Queues[k] = q
		s.replicated = append(s.replicated, q.Name)
	}
	slices.Sort(s.replicated)
}

// bootCommands are the commands an OpBoot stands for.
func bootCommands(c Command) []Command {
	return []Command{{Op: OpAddVHost, VHost: c.VHost}, {Op: OpPutUser, User: c.User}, {Op: OpSetPermissions, Permission: c.Permission}}
}

// applyBoot applies an OpBoot; observers see the commands it stands for
// when it created the defaults, nothing when it did not.
func (s *Store) applyBoot(cmd Command) error {
	s.mu.Lock()
	empty := len(s.state.Users) == 0
	_, err := s.state.apply(cmd)
	s.mu.Unlock()
	if err != nil || !empty {
		return err
	}
	for _, sub := range bootCommands(cmd) {
		for _, fn := range s.observers {
			fn(sub)
		}
	}
	return nil
}
