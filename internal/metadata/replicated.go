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
//
// Commands apply on the group's applier goroutine, not on the consensus
// loop: the Store's observers may take queue locks (deleting a queue)
// whose holders wait for the loop (a mirrored queue's store), see
// docs/lock-order.md.
type ReplicatedLog struct {
	host    *consensus.Host
	group   uint64
	members []uint64
	// Timeout bounds one Append (no leader, minority side of a partition).
	Timeout time.Duration
	// Reachable, when set, counts the members this node can reach (itself
	// included), for the error of a change that could not commit.
	Reachable func() (up, of int)

	mu    sync.Mutex
	store *Store
}

// NewReplicatedLog returns a log over consensus group gid of h, whose
// members are the cluster's nodes. Make the Store with it, register the
// store's observers, then Start the log: from then on committed commands
// (those replayed after a restart first) are applied and observed.
func NewReplicatedLog(h *consensus.Host, gid uint64, members []uint64) *ReplicatedLog {
	return &ReplicatedLog{host: h, group: gid, members: members, Timeout: 30 * time.Second}
}

// bind is called by NewStore.
func (r *ReplicatedLog) bind(s *Store) {
	r.mu.Lock()
	r.store = s
	r.mu.Unlock()
}

func (r *ReplicatedLog) bound() *Store {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.store
}

// Start joins the consensus group; commands are applied from then on.
// A log made without members is a node that joined an existing cluster
// (warrenctl join_cluster): it starts its replica empty, or resumes it,
// and learns the log and the membership from the group's leader.
func (r *ReplicatedLog) Start() error {
	if r.bound() == nil {
		return fmt.Errorf("metadata: make the Store with this log before starting it")
	}
	if len(r.members) == 0 {
		return r.host.JoinGroup(r.group, replicatedFSM{r})
	}
	return r.host.AddGroup(r.group, r.members, replicatedFSM{r})
}

type replicatedFSM struct{ r *ReplicatedLog }

// wireCommand is a Command in the JSON of earlier versions: with the
// queue fields the definitions format leaves out. Still decoded.
type wireCommand struct {
	Command
	Queue *wireQueue `json:"queue,omitempty"`
}

// encodeCommand is the byte-exact encoding (codec.go): a command travels
// and is stored in the consensus log unchanged.
func encodeCommand(c Command) ([]byte, error) { return EncodeCommand(c) }

func decodeCommand(b []byte) (Command, error) {
	if len(b) == 0 || b[0] != '{' {
		return DecodeCommand(b)
	}
	var w wireCommand
	if err := json.Unmarshal(b, &w); err != nil {
		return Command{}, err
	}
	c := w.Command
	if w.Queue != nil {
		q := w.Queue.queue()
		c.Queue = &q
	}
	return c, nil
}

func (f replicatedFSM) Apply(_ uint64, data []byte) any {
	cmd, err := decodeCommand(data)
	if err != nil {
		return fmt.Errorf("metadata: undecodable replicated command: %w", err)
	}
	if err := f.r.bound().apply(cmd); err != nil {
		return err
	}
	return nil
}

// Snapshot and Restore let the consensus host compact the group's log.
func (f replicatedFSM) Snapshot() ([]byte, error) { return f.r.bound().snapshot() }

// Restore replaces the definitions with a snapshot's.
func (f replicatedFSM) Restore(b []byte) error { return f.r.bound().restore(b) }

// Append proposes cmd to the group and waits until it is applied here.
func (r *ReplicatedLog) Append(cmd Command, _ func(Command) error) error {
	raw, err := encodeCommand(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
	defer cancel()
	res, err := r.host.Propose(ctx, r.group, raw)
	if err != nil {
		if r.Reachable != nil {
			up, of := r.Reachable()
			if up*2 <= of {
				return fmt.Errorf("no quorum: %d of %d nodes reachable, so the definition change was not committed within %s; retry once a majority of the cluster is up (%w)", up, of, r.Timeout, err)
			}
			// a majority is reachable but the change was not applied
			// here in time (an election, a slow disk): the consensus host
			// keeps proposing it until its deadline, so it may still
			// commit; the outcome is unknown
			return fmt.Errorf("the definition change was not confirmed within %s although %d of %d nodes are reachable (the cluster may have been electing a new leader); it may or may not have been applied: check, then retry (%w)", r.Timeout, up, of, err)
		}
		return fmt.Errorf("metadata change not committed (is a majority of the cluster reachable?): %w", err)
	}
	if e, ok := res.(error); ok {
		return e
	}
	return nil
}
