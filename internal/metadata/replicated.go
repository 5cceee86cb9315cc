package metadata

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/warrenmq/warren/internal/consensus"
)

// ReplicatedLog is the clustered node's Log: a command commits through a
// consensus group spanning the cluster and is applied, in the same order,
// by every member's Store. Callers do not change: Store.Propose returns
// once the command is committed and applied on this node, with the error
// the command's application gave (the same on every node, since State
// is deterministic).
type ReplicatedLog struct {
	host    *consensus.Host
	group   uint64
	members []uint64
	// Timeout bounds one Append (no leader, minority side of a partition).
	Timeout time.Duration

	mu    sync.Mutex
	apply func(Command) error
}

// NewReplicatedLog returns a log over consensus group gid of h, whose
// members are the cluster's nodes. Make the Store with it, register the
// store's observers, then Start the log: from then on committed commands
// (those replayed after a restart first) are applied and observed.
func NewReplicatedLog(h *consensus.Host, gid uint64, members []uint64) *ReplicatedLog {
	return &ReplicatedLog{host: h, group: gid, members: members, Timeout: 30 * time.Second}
}

// bind is called by NewStore with the store's apply function.
func (r *ReplicatedLog) bind(apply func(Command) error) {
	r.mu.Lock()
	r.apply = apply
	r.mu.Unlock()
}

// Start joins the consensus group; commands are applied from then on.
func (r *ReplicatedLog) Start() error {
	r.mu.Lock()
	bound := r.apply != nil
	r.mu.Unlock()
	if !bound {
		return fmt.Errorf("metadata: make the Store with this log before starting it")
	}
	return r.host.AddGroup(r.group, r.members, replicatedFSM{r})
}

type replicatedFSM struct{ r *ReplicatedLog }

func (f replicatedFSM) Apply(_ uint64, data []byte) any {
	var cmd Command
	if err := json.Unmarshal(data, &cmd); err != nil {
		return fmt.Errorf("metadata: undecodable replicated command: %w", err)
	}
	f.r.mu.Lock()
	apply := f.r.apply
	f.r.mu.Unlock()
	if err := apply(cmd); err != nil {
		return err
	}
	return nil
}

// Append proposes cmd to the group and waits until it is applied here.
func (r *ReplicatedLog) Append(cmd Command, _ func(Command) error) error {
	raw, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
	defer cancel()
	res, err := r.host.Propose(ctx, r.group, raw)
	if err != nil {
		return fmt.Errorf("metadata change not committed (is a majority of the cluster reachable?): %w", err)
	}
	if e, ok := res.(error); ok {
		return e
	}
	return nil
}
