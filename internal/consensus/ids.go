package consensus

import (
	"fmt"

	"encoding/binary"
	"go.etcd.io/raft/v3"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// Proposal ids name a local proposer inside a log entry, so that the
// proposer gets the state machine's result when the entry is applied. An
// entry proposed by an earlier run of this node can commit after a
// restart (it was in the log, not yet committed): its id must not be one
// the new run hands out, or it would complete an unrelated proposal (for
// a mirrored queue, a confirm for a message never replicated).
//
// As etcd's idutil: the top 16 bits are the node id, the low 48 bits a
// counter that each run starts from the wall clock in microseconds, and
// never below the highest id of this node found in its own log. A later
// run starts above every id an earlier run issued unless that run
// averaged more than a million proposals a second since it started (far
// above what a Raft group commits) or the clock went back by more than
// the earlier run's lifetime. The counter wraps after 2^48 (8.9 years of
// microseconds), far beyond any entry's time in flight.
const idNodeShift = 48

func firstID(node uint64, now time.Time, maxSeen uint64) uint64 {
	const mask = 1<<idNodeShift - 1
	start := uint64(now.UnixMicro()) & mask
	if maxSeen>>idNodeShift == node && maxSeen&mask >= start {
		start = maxSeen&mask + 1
	}
	return node<<idNodeShift | start&mask
}

// proposalID returns the proposal id an entry carries.
func proposalID(e pb.Entry) (uint64, bool) {
	switch e.Type {
	case pb.EntryNormal:
		if len(e.Data) >= 8 {
			return binary.BigEndian.Uint64(e.Data), true
		}
	case pb.EntryConfChange:
		var cc pb.ConfChange
		if err := cc.Unmarshal(e.Data); err == nil && len(cc.Context) == 8 {
			return binary.BigEndian.Uint64(cc.Context), true
		}
	}
	return 0, false
}

var errCompacted = raft.ErrCompacted

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }
