package metadata

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func sampleCommands() []Command {
	return []Command{
		{Op: OpAddVHost, VHost: "/"},
		{Op: OpAddVHost, VHost: "edu"},
		{Op: OpPutUser, User: &User{Name: "prim", PasswordHash: "h", HashingAlgorithm: "rabbit_password_hashing_sha256", Tags: []string{"administrator"}}},
		{Op: OpSetPermissions, Permission: &Permission{User: "prim", VHost: "/", Configure: ".*", Write: ".*", Read: ".*"}},
		{Op: OpDeclareExchange, Exchange: &Exchange{Name: "x", VHost: "/", Type: "topic", Durable: true}},
		{Op: OpDeclareExchange, Exchange: &Exchange{Name: "tmp", VHost: "/", Type: "fanout"}},
		{Op: OpDeclareQueue, Queue: &Queue{Name: "q", VHost: "/", Durable: true, Arguments: map[string]any{"x-max-length": float64(10)}}},
		{Op: OpDeclareQueue, Queue: &Queue{Name: "t", VHost: "/"}},
		{Op: OpBind, Binding: &Binding{Source: "x", VHost: "/", Destination: "q", DestinationType: "queue", RoutingKey: "a.#"}},
		{Op: OpBind, Binding: &Binding{Source: "x", VHost: "/", Destination: "t", DestinationType: "queue", RoutingKey: "b"}},
		{Op: OpSetPolicy, Policy: &Policy{Name: "ha-all", VHost: "/", Pattern: "^", ApplyTo: "all", Definition: map[string]any{"ha-mode": "all"}}},
	}
}

func TestApplyIsDeterministic(t *testing.T) {
	a, b := NewState(), NewState()
	for _, c := range sampleCommands() {
		if err := a.Apply(c); err != nil {
			t.Fatal(err)
		}
		// through JSON, as a replicated log would carry it
		raw, _ := json.Marshal(c)
		var c2 Command
		if err := json.Unmarshal(raw, &c2); err != nil {
			t.Fatal(err)
		}
		if err := b.Apply(c2); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("states differ after the same commands")
	}
}

func TestDeleteCascades(t *testing.T) {
	s := NewState()
	for _, c := range sampleCommands() {
		s.Apply(c)
	}
	s.Apply(Command{Op: OpDeleteQueue, VHost: "/", Name: "q"})
	if len(s.Bindings) != 1 {
		t.Fatalf("bindings after queue delete: %d", len(s.Bindings))
	}
	s.Apply(Command{Op: OpDeleteUser, Name: "prim"})
	if len(s.Permissions) != 0 {
		t.Fatal("permissions survived user delete")
	}
	if err := s.Apply(Command{Op: OpDeleteUser, Name: "prim"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.Apply(Command{Op: OpSetPermissions, Permission: &Permission{User: "ghost", VHost: "/"}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("permissions for a missing user: %v", err)
	}
	s.Apply(Command{Op: OpDeleteVHost, VHost: "/"})
	if len(s.Exchanges)+len(s.Queues)+len(s.Bindings)+len(s.Policies) != 0 {
		t.Fatal("vhost delete left definitions behind")
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	s := NewStore(NewLocalLog())
	var seen []Op
	s.Observe(func(c Command) { seen = append(seen, c.Op) })
	for _, c := range sampleCommands() {
		if err := s.Propose(c); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != len(sampleCommands()) {
		t.Fatalf("observer saw %d commands", len(seen))
	}
	d := s.Export()
	if len(d.Queues) != 1 || d.Queues[0].Name != "q" {
		t.Fatalf("export keeps only durable queues: %+v", d.Queues)
	}
	if len(d.Exchanges) != 1 || len(d.Bindings) != 1 {
		t.Fatalf("export exchanges=%d bindings=%d", len(d.Exchanges), len(d.Bindings))
	}
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var d2 Definitions
	if err := json.Unmarshal(raw, &d2); err != nil {
		t.Fatal(err)
	}
	s2 := NewStore(NewLocalLog())
	if err := s2.Import(d2); err != nil {
		t.Fatal(err)
	}
	raw2, _ := json.Marshal(s2.Export())
	if string(raw) != string(raw2) {
		t.Fatalf("round trip differs:\n%s\n%s", raw, raw2)
	}
}

// TestAutoDeleteExchangeCascade: an auto-delete exchange goes when it loses
// its last binding as a source, the deletion cascades through the
// exchange-to-exchange bindings it was the destination of, and observers
// learn which exchanges went (every node applies the same).
func TestAutoDeleteExchangeCascade(t *testing.T) {
	s := NewStore(NewLocalLog())
	var seen [][]string
	s.Observe(func(c Command) { seen = append(seen, c.AutoDeleted) })
	must := func(c Command) {
		t.Helper()
		if err := s.Propose(c); err != nil {
			t.Fatal(err)
		}
	}
	x := func(name string, ad bool) Command {
		return Command{Op: OpDeclareExchange, Exchange: &Exchange{Name: name, VHost: "/", Type: "direct", AutoDelete: ad}}
	}
	bind := func(src, dst, typ string) *Binding {
		return &Binding{Source: src, VHost: "/", Destination: dst, DestinationType: typ, RoutingKey: "k"}
	}
	must(Command{Op: OpAddVHost, VHost: "/"})
	must(x("a", true))     // a -> b -> q, a -> plain
	must(x("b", true))     // b's only source binding goes with q
	must(x("never", true)) // never bound: stays
	must(x("plain", false))
	must(Command{Op: OpDeclareQueue, Queue: &Queue{Name: "q", VHost: "/"}})
	must(Command{Op: OpBind, Binding: bind("a", "b", "exchange")})
	must(Command{Op: OpBind, Binding: bind("a", "plain", "exchange")})
	must(Command{Op: OpBind, Binding: bind("b", "q", "queue")})

	must(Command{Op: OpDeleteQueue, VHost: "/", Name: "q"})
	if got := seen[len(seen)-1]; !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("deleting q auto-deleted %v, want [b] (a still has a binding to plain)", got)
	}
	must(Command{Op: OpUnbind, Binding: bind("a", "plain", "exchange")})
	if got := seen[len(seen)-1]; !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("unbinding a's last binding auto-deleted %v, want [a]", got)
	}
	s.Read(func(st *State) {
		for _, n := range []string{"a", "b"} {
			if _, ok := st.Exchanges[[2]string{"/", n}]; ok {
				t.Errorf("exchange %s still defined", n)
			}
		}
		for _, n := range []string{"never", "plain"} {
			if _, ok := st.Exchanges[[2]string{"/", n}]; !ok {
				t.Errorf("exchange %s was deleted", n)
			}
		}
		if len(st.Bindings) != 0 {
			t.Errorf("bindings left: %v", st.Bindings)
		}
	})

	// cascade in one command: c -> d -> e(queue dest gone): deleting the
	// destination exchange of c's only binding takes c with it
	must(x("c", true))
	must(x("d", true))
	must(x("e", false))
	must(Command{Op: OpBind, Binding: bind("c", "d", "exchange")})
	must(Command{Op: OpBind, Binding: bind("d", "e", "exchange")})
	must(Command{Op: OpDeleteExchange, VHost: "/", Name: "e"})
	if got := seen[len(seen)-1]; !reflect.DeepEqual(got, []string{"c", "d"}) {
		t.Fatalf("deleting e auto-deleted %v, want [c d]", got)
	}
}

func TestConditionalQueueDeclare(t *testing.T) {
	s := NewState()
	a := Queue{Name: "q", VHost: "/", Durable: true, Node: "warren@a", Arguments: map[string]any{"x-max-length": int64(10)}}
	if err := s.Apply(Command{Op: OpDeclareQueue, Queue: &a, Conditional: true}); err != nil {
		t.Fatal(err)
	}
	// equivalent, from another node: the first declaration (and home) stays
	b := a
	b.Node = "warren@b"
	b.Arguments = map[string]any{"x-max-length": int64(10), "x-queue-type": "classic"}
	if err := s.Apply(Command{Op: OpDeclareQueue, Queue: &b, Conditional: true}); err != nil {
		t.Fatalf("equivalent declare: %v", err)
	}
	if s.Queues[[2]string{"/", "q"}].Node != "warren@a" {
		t.Fatalf("home moved to %s", s.Queues[[2]string{"/", "q"}].Node)
	}
	for _, tc := range []struct {
		mod  func(*Queue)
		want error
		text string
	}{
		{func(q *Queue) { q.Durable = false }, ErrInequivalent, "inequivalent arg 'durable' for queue 'q' in vhost '/': received 'false' but current is 'true'"},
		{func(q *Queue) { q.Arguments = map[string]any{"x-max-length": int64(11)} }, ErrInequivalent, "inequivalent arg 'x-max-length'"},
		{func(q *Queue) { q.Arguments = nil }, ErrInequivalent, "received 'none' but current is '10'"},
		{func(q *Queue) { q.Exclusive = true }, ErrLocked, "cannot obtain exclusive access to locked queue 'q'"},
	} {
		c := a
		tc.mod(&c)
		err := s.Apply(Command{Op: OpDeclareQueue, Queue: &c, Conditional: true})
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("got %v, want %v containing %q", err, tc.want, tc.text)
		}
	}
	// unconditional (standalone) declares replace as before
	c := a
	c.Durable = false
	if err := s.Apply(Command{Op: OpDeclareQueue, Queue: &c}); err != nil || s.Queues[[2]string{"/", "q"}].Durable {
		t.Fatalf("unconditional declare: %v", err)
	}
}

// TestMemberTable: the member table changes by put and remove, refuses
// an id taken by another name, and survives a snapshot.
func TestMemberTable(t *testing.T) {
	s := NewStore(NewLocalLog())
	put := func(name string, id uint64) error {
		return s.Propose(Command{Op: OpPutMember, Member: &Member{Name: name, ID: id, Addr: name + ":25672"}})
	}
	if err := put("warren@a", 11); err != nil {
		t.Fatal(err)
	}
	if err := put("warren@b", 22); err != nil {
		t.Fatal(err)
	}
	if err := put("warren@c", 22); !errors.Is(err, ErrExists) {
		t.Fatalf("an id taken by another node: %v", err)
	}
	if err := put("warren@d", 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("id 0: %v", err)
	}
	if err := s.Propose(Command{Op: OpRemoveMember, Name: "warren@a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Propose(Command{Op: OpRemoveMember, Name: "warren@a"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing a non-member: %v", err)
	}
	snap, err := s.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := NewStore(NewLocalLog())
	if err := r.restore(snap); err != nil {
		t.Fatal(err)
	}
	r.Read(func(st *State) {
		if len(st.Members) != 1 || st.Members["warren@b"] != (Member{Name: "warren@b", ID: 22, Addr: "warren@b:25672"}) {
			t.Fatalf("restored table: %+v", st.Members)
		}
	})
}

// TestReplicatedPlacement: Apply decides which queues are replicated and
// over which nodes, from the queue type, x-quorum-initial-group-size and
// the ha-mode policy, the declaring node first.
func TestReplicatedPlacement(t *testing.T) {
	st := NewState()
	st.nodes = []string{"a@h", "b@h", "c@h"}
	declare := func(name string, args map[string]any) Queue {
		t.Helper()
		q := Queue{Name: name, VHost: "/", Durable: true, Arguments: args, Node: "b@h", Group: 1 << 40}
		if err := st.Apply(Command{Op: OpDeclareQueue, Queue: &q}); err != nil {
			t.Fatal(err)
		}
		return st.Queues[[2]string{"/", name}]
	}
	policy := func(def map[string]any) {
		if err := st.Apply(Command{Op: OpSetPolicy, Policy: &Policy{Name: "p", VHost: "/", Pattern: "^m", ApplyTo: "queues", Definition: def}}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name   string
		args   map[string]any
		policy map[string]any
		want   int // members; 0: not replicated
	}{
		{"classic", nil, nil, 0},
		{"q-all", map[string]any{"x-queue-type": "quorum"}, nil, 3},
		{"q-two", map[string]any{"x-queue-type": "quorum", "x-quorum-initial-group-size": int64(2)}, nil, 2},
		{"m-all", nil, map[string]any{"ha-mode": "all"}, 3},
		{"m-exactly", nil, map[string]any{"ha-mode": "exactly", "ha-params": 2.0}, 2},
		{"m-exactly-many", nil, map[string]any{"ha-mode": "exactly", "ha-params": 9.0}, 3},
		{"m-nodes", nil, map[string]any{"ha-mode": "nodes", "ha-params": []any{"c@h", "nosuch@h"}}, 1},
		{"m-none-known", nil, map[string]any{"ha-mode": "nodes", "ha-params": []any{"nosuch@h"}}, 1},
		{"m-plain", nil, map[string]any{"max-length": 3.0}, 0},
	}
	for _, c := range cases {
		if c.policy != nil {
			policy(c.policy)
		}
		q := declare(c.name, c.args)
		if c.want == 0 {
			if q.Group != 0 || q.Members != nil {
				t.Errorf("%s: replicated (group %d, members %v), want a plain queue", c.name, q.Group, q.Members)
			}
			continue
		}
		if q.Group == 0 || len(q.Members) != c.want {
			t.Errorf("%s: group %d members %v, want %d members", c.name, q.Group, q.Members, c.want)
			continue
		}
		switch c.name {
		case "m-nodes":
			if q.Members[0] != "c@h" {
				t.Errorf("%s: members %v, want only the listed known node", c.name, q.Members)
			}
		case "m-none-known":
			if q.Members[0] != "b@h" {
				t.Errorf("%s: members %v, want the home alone", c.name, q.Members)
			}
		default:
			if q.Members[0] != "b@h" {
				t.Errorf("%s: members %v, want the declaring node first", c.name, q.Members)
			}
		}
	}
}

// TestPolicyReplicatesExistingQueues: an ha-mode policy set after durable
// classic queues exist makes them replicated, each with a group derived
// from the command's nonce and placed members; others are untouched.
func TestPolicyReplicatesExistingQueues(t *testing.T) {
	st := NewState()
	st.nodes = []string{"a@h", "b@h"}
	for _, q := range []Queue{
		{Name: "m.1", VHost: "/", Durable: true, Node: "a@h"},
		{Name: "m.transient", VHost: "/", Node: "a@h"},
		{Name: "other", VHost: "/", Durable: true, Node: "a@h"},
	} {
		if err := st.Apply(Command{Op: OpDeclareQueue, Queue: &q}); err != nil {
			t.Fatal(err)
		}
	}
	pol := Command{Op: OpSetPolicy, Nonce: 12345, Policy: &Policy{Name: "p", VHost: "/", Pattern: "^m\\.", ApplyTo: "all", Definition: map[string]any{"ha-mode": "all"}}}
	st2 := NewState()
	st2.nodes = st.nodes
	for k, q := range st.Queues {
		st2.Queues[k] = q
	}
	for _, s := range []*State{st, st2} {
		s.replicated = nil
		if err := s.Apply(pol); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s.replicated, []string{"m.1"}) {
			t.Fatalf("replicated %v, want [m.1]", s.replicated)
		}
	}
	a, b := st.Queues[[2]string{"/", "m.1"}], st2.Queues[[2]string{"/", "m.1"}]
	if a.Group == 0 || a.Group != b.Group || !a.Moved || !reflect.DeepEqual(a.Members, []string{"a@h", "b@h"}) {
		t.Fatalf("m.1: group %d (other node %d), members %v", a.Group, b.Group, a.Members)
	}
	if st.Queues[[2]string{"/", "other"}].Group != 0 || st.Queues[[2]string{"/", "m.transient"}].Group != 0 {
		t.Fatal("a queue the policy does not replicate got a group")
	}
}

// TestBootOnlyOnEmptyDefinitions: the defaults come in one command that
// changes nothing once any vhost or user exists (the nodes of a new
// cluster may all propose it), and observers see the three commands only
// when it created them.
func TestBootOnlyOnEmptyDefinitions(t *testing.T) {
	s := NewStore(NewLocalLog())
	var seen []Op
	s.Observe(func(c Command) { seen = append(seen, c.Op) })
	boot := func(user string) Command {
		return Command{Op: OpBoot, VHost: "/", User: &User{Name: user}, Permission: &Permission{User: user, VHost: "/", Configure: ".*", Write: ".*", Read: ".*"}}
	}
	if err := s.Propose(boot("guest")); err != nil {
		t.Fatal(err)
	}
	if err := s.Propose(boot("other")); err != nil {
		t.Fatal(err)
	}
	s.Read(func(st *State) {
		if len(st.Users) != 1 || st.Users["guest"].Name != "guest" || len(st.VHosts) != 1 || len(st.Permissions) != 1 {
			t.Fatalf("after two boots: users %v vhosts %v permissions %v", st.Users, st.VHosts, st.Permissions)
		}
	})
	if len(seen) != 3 || seen[0] != OpAddVHost || seen[1] != OpPutUser || seen[2] != OpSetPermissions {
		t.Fatalf("observers saw %v", seen)
	}
}

// TestPlacementFollowsTheMemberTable: once the cluster has a member table
// (after a join), replicated queues are placed over it, whatever list a
// node was configured with, so nodes configured differently (a node that
// joined by command has no classic_config) agree.
func TestPlacementFollowsTheMemberTable(t *testing.T) {
	place := func(configured []string) []string {
		s := NewStore(NewLocalLog())
		s.SetNodes(configured)
		for i, n := range []string{"a@h", "b@h", "c@h", "d@h"} {
			if err := s.Propose(Command{Op: OpPutMember, Member: &Member{Name: n, ID: uint64(i + 1)}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Propose(Command{Op: OpDeclareQueue, Queue: &Queue{VHost: "/", Name: "q", Durable: true, Node: "a@h", Arguments: map[string]any{"x-queue-type": "quorum"}}}); err != nil {
			t.Fatal(err)
		}
		var m []string
		s.Read(func(st *State) { m = st.Queues[[2]string{"/", "q"}].Members })
		return m
	}
	a, b := place([]string{"a@h", "b@h", "c@h"}), place(nil)
	if len(a) != 4 || !reflect.DeepEqual(a, b) {
		t.Fatalf("members with the founders configured %v, without %v: want the same four", a, b)
	}
}

// TestBootAfterAnAdoptedVHost: a cluster that got the default vhost from a
// node's adopted standalone queue, but no user yet, still gets the
// default user and permissions from the boot.
func TestBootAfterAnAdoptedVHost(t *testing.T) {
	s := NewStore(NewLocalLog())
	if err := s.Propose(Command{Op: OpAddVHost, VHost: "/"}); err != nil {
		t.Fatal(err)
	}
	boot := Command{Op: OpBoot, VHost: "/", User: &User{Name: "guest"}, Permission: &Permission{User: "guest", VHost: "/", Configure: ".*", Write: ".*", Read: ".*"}}
	if err := s.Propose(boot); err != nil {
		t.Fatal(err)
	}
	s.Read(func(st *State) {
		if _, ok := st.Users["guest"]; !ok || len(st.Permissions) != 1 {
			t.Fatalf("users %v permissions %v", st.Users, st.Permissions)
		}
	})
}
