package vhost

import (
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/queue"
)

// NoLeaderYet stands for the home of a clustered replicated queue whose
// group has no leader this node knows of yet.
const NoLeaderYet = "none yet (its replicas are electing a leader; retry in a moment)"

// SetReplicatedHome makes a clustered replicated queue live on this node
// or a definition only (ADR 0010). With st non-nil this node leads the
// queue's group: the queue is rebuilt over st (this node's replica) from
// ms, the messages the group committed, in order. With st nil, home
// (another node, or NoLeaderYet) holds it. The queue object is replaced
// either way; the old one is deleted, so its consumers are cancelled
// (the broker fences the old replica first, so that nothing it does
// reaches the group). It returns false when the queue no longer exists.
func (v *VHost) SetReplicatedHome(d metadata.Queue, home string, st queue.Store, ms []queue.Recovered) bool {
	v.mu.Lock()
	old := v.queues[d.Name]
	if old == nil || v.deleted {
		v.mu.Unlock()
		return false
	}
	v.replaceLocked(d.Name, old, st, ms, home)
	v.mu.Unlock()
	v.remote.Delete(old)
	_, _ = old.Delete(false, false)
	return true
}

// ConvertToReplicated moves a live classic queue of this node into its
// replicated store, when a policy made it replicated (ADR 0010): the
// queue is sealed (later publishes to it are nacked), its messages are
// handed to copyFn, which puts them in the queue's group and returns them
// as the group holds them, and a new queue replaces it: live over st
// (restored from what copyFn returned) when st is not nil, otherwise a
// definition naming home (the group's leader runs it). The old queue is
// then deleted: its messages leave the node's message store and its
// consumers are cancelled (their unacknowledged messages are in the
// group and are delivered again). On a copyFn error the old queue stays,
// sealed (publishes nacked, deliveries go on), and the error is returned:
// restarting the node finishes the move.
func (v *VHost) ConvertToReplicated(d metadata.Queue, copyFn func([]queue.Recovered) ([]queue.Recovered, error), st queue.Store, home string) error {
	v.mu.Lock()
	old := v.queues[d.Name]
	if old == nil || v.deleted {
		v.mu.Unlock()
		return nil
	}
	if _, remote := v.remote.Load(old); remote {
		v.mu.Unlock()
		return nil // another node's queue (or already replicated)
	}
	old.Seal()
	moved, err := copyFn(old.Contents())
	if err != nil {
		v.mu.Unlock()
		return err
	}
	v.replaceLocked(d.Name, old, st, moved, home)
	v.mu.Unlock()
	_, _ = old.Delete(false, false)
	return nil
}

// replaceLocked puts a new queue in old's place, with old's declaration:
// live over st, restored from ms, when st is not nil; otherwise a
// definition naming home (another node runs it). v.mu held.
func (v *VHost) replaceLocked(name string, old *queue.Queue, st queue.Store, ms []queue.Recovered, home string) {
	cfg := old.Config()
	q := queue.New(queue.Config{VHost: v.name, Name: name, Durable: cfg.Durable, Exclusive: cfg.Exclusive, AutoDelete: cfg.AutoDelete, Owner: cfg.Owner, Args: cfg.Args, Policy: v.policyFor(name, "queues"), Store: st, Pager: v.pager, Memory: v.memory, PersistAll: st != nil})
	if st != nil {
		q.Restore(func(yield func(queue.Recovered) bool) {
			for _, m := range ms {
				if !yield(m) {
					return
				}
			}
		})
		q.OnUnused = v.autoDelete
		q.OnExpire = v.autoDelete
	} else {
		v.remote.Store(q, home)
	}
	q.OnDeadLetter = v.deadLetter
	q.Start()
	v.queues[name] = q
}
