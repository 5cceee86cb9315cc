package consensus

import "sync"

// MemNetwork connects hosts in one process, for tests: every host gets an
// endpoint, and links between two hosts can be cut and healed to make
// partitions.
type MemNetwork struct {
	mu    sync.Mutex
	hosts map[uint64]*Host
	cut   map[[2]uint64]bool
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
	cut := e.n.cut[[2]uint64{e.from, to}]
	e.n.mu.Unlock()
	if h == nil || cut {
		return
	}
	// the receiver gets its own copies: entries' data must not alias
	cp := make([]Envelope, len(envs))
	for i, env := range envs {
		m := env.Msg
		if len(m.Entries) > 0 {
			m.Entries = append(m.Entries[:0:0], m.Entries...)
		}
		cp[i] = Envelope{Group: env.Group, Msg: m}
	}
	h.Deliver(cp)
}
