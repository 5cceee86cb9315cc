package consensus

import (
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// MemNetwork connects hosts in one process, for tests: every host gets an
// endpoint, and links between two hosts can be cut and healed to make
// partitions.
type MemNetwork struct {
	mu     sync.Mutex
	hosts  map[uint64]*Host
	cut    map[[2]uint64]bool
	filter func(from, to uint64, e Envelope) bool
}

// SetFilter makes the network drop every envelope for which keep returns
// false, as a transport does when a queue is full; the sender is told
// (ReportUnreachable, and ReportSnapshot for a snapshot). nil keeps all.
func (n *MemNetwork) SetFilter(keep func(from, to uint64, e Envelope) bool) {
	n.mu.Lock()
	n.filter = keep
	n.mu.Unlock()
}

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{hosts: map[uint64]*Host{}, cut: map[[2]uint64]bool{}}
}

// Endpoint returns the Transport host id sends through.
func (n *MemNetwork) Endpoint(id uint64) Transport { return memEndpoint{n, id} }

// Attach makes h reachable as id (again, after a restart).
func (n *MemNetwork) Attach(id uint64, h *Host) {
	n.mu.Lock()
	n.hosts[id] = h
	n.mu.Unlock()
}

// Detach makes id unreachable (the host is down).
func (n *MemNetwork) Detach(id uint64) {
	n.mu.Lock()
	delete(n.hosts, id)
	n.mu.Unlock()
}

// Isolate cuts every link between the hosts in side and the others.
func (n *MemNetwork) Isolate(side []uint64, all []uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	in := map[uint64]bool{}
	for _, id := range side {
		in[id] = true
	}
	for _, a := range all {
		for _, b := range all {
			if in[a] != in[b] {
				n.cut[[2]uint64{a, b}] = true
			}
		}
	}
}

// Heal restores every link.
func (n *MemNetwork) Heal() {
	n.mu.Lock()
	n.cut = map[[2]uint64]bool{}
	n.mu.Unlock()
}

type memEndpoint struct {
	n    *MemNetwork
	from uint64
}

func (e memEndpoint) Send(to uint64, envs []Envelope) {
	e.n.mu.Lock()
	h := e.n.hosts[to]
	from := e.n.hosts[e.from]
	cut := e.n.cut[[2]uint64{e.from, to}]
	keep := e.n.filter
	e.n.mu.Unlock()
	// the receiver gets its own copies: entries' data must not alias
	var cp, snaps, lost []Envelope
	for _, env := range envs {
		if h == nil || cut || (keep != nil && !keep(e.from, to, env)) {
			lost = append(lost, env)
			continue
		}
		m := env.Msg
		if len(m.Entries) > 0 {
			m.Entries = append(m.Entries[:0:0], m.Entries...)
		}
		env.Msg = m
		if m.Type == pb.MsgSnap {
			snaps = append(snaps, env)
		} else {
			cp = append(cp, env)
		}
	}
	if len(cp) > 0 && !h.Deliver(cp) {
		lost = append(lost, cp...)
	}
	for _, s := range snaps {
		// a snapshot is waited for, off the sender's loop, as the TCP
		// transport's snapshot stream does
		go func() {
			ok := h.DeliverWait([]Envelope{s}, time.Second)
			if from != nil {
				if ok {
					from.ReportSnapshot(to, s.Group, true)
				} else {
					reportLost(from, to, []Envelope{s})
				}
			}
		}()
	}
	if from != nil && len(lost) > 0 {
		reportLost(from, to, lost)
	}
}

// reportLost tells the sending host which envelopes to node to were
// dropped: their groups are unreachable, their snapshots failed.
func reportLost(from *Host, to uint64, lost []Envelope) {
	seen := map[uint64]bool{}
	var groups []uint64
	for _, e := range lost {
		if e.Msg.Type == pb.MsgSnap {
			from.ReportSnapshot(to, e.Group, false)
		}
		if e.Group != 0 && !seen[e.Group] {
			seen[e.Group] = true
			groups = append(groups, e.Group)
		}
	}
	if len(groups) > 0 {
		from.ReportUnreachable(to, groups...)
	}
}
