package consensus

import (
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// Quiescence (CockroachDB's, docs/adr/0007-idle-groups-go-quiet.md).
//
// A group with nothing to do costs nothing: its leader stops ticking it
// (no heartbeats) and its followers stop ticking it (no elections). What
// remains per pair of hosts is one node heartbeat every HeartbeatTicks,
// whatever the number of groups.
//
// Safety: ticks only drive timeouts (heartbeats, elections, check-quorum);
// Raft's safety (election restriction, log matching, commit rule) holds
// for any timing of ticks, so skipping them cannot commit or lose an
// entry. The quiesce message is an ordinary MsgHeartbeat from the leader
// with Commit = the commit index, which every follower's log already
// holds (the leader quiesces only when each follower's Match equals it),
// as raft's own heartbeats send min(Match, commit).
//
// Liveness: a quiet group wakes (ticks again) on any message but the
// leader's quiesce heartbeat and the responses to it, and on any
// proposal. A quiet follower also wakes when the leader's host has not
// been heard from (node heartbeats or any message) for ElectionTicks: it
// then times out and elects as usual. A lost quiesce message leaves a
// follower ticking: it campaigns (pre-vote), which wakes the others; the
// leader answers with heartbeats and quiesces the group again.

// quiesceAfter is how many ticks a leader sees its group quiescable
// before it goes quiet (a group that just committed stays awake briefly).
const quiesceAfter = 2

type nodeState struct {
	heard time.Time
	dead  bool
}

// learnNodes adds a group's members to the hosts this one heartbeats.
func (h *Host) learnNodes(cs pb.ConfState) {
	now := time.Now()
	for _, ids := range [][]uint64{cs.Voters, cs.Learners, cs.VotersOutgoing} {
		for _, id := range ids {
			if id != h.opts.ID && h.nodes[id] == nil {
				h.nodes[id] = &nodeState{heard: now}
			}
		}
	}
}

func (h *Host) heardFrom(id uint64, now time.Time) {
	if id == h.opts.ID || id >= raft.LocalApplyThread {
		return
	}
	n := h.nodes[id]
	if n == nil {
		n = &nodeState{}
		h.nodes[id] = n
	}
	n.heard, n.dead = now, false
}

// watchNodes sends the node heartbeats and wakes the quiet groups led by
// a host not heard from within an election timeout.
func (h *Host) watchNodes(now time.Time) {
	if h.opts.NoQuiesce {
		return
	}
	beat := h.ticks%uint64(h.opts.HeartbeatTicks) == 0
	timeout := time.Duration(h.opts.ElectionTicks) * h.opts.Tick
	for id, n := range h.nodes {
		if beat {
			h.send(id, []Envelope{{Group: 0, Msg: pb.Message{Type: pb.MsgHeartbeat, From: h.opts.ID, To: id}}})
		}
		if !n.dead && now.Sub(n.heard) > timeout {
			n.dead = true
			for _, g := range h.all {
				if g.quiesced && g.lead.Load() == id {
					h.wake(g)
				}
			}
		}
	}
}

func (h *Host) wake(g *group) {
	h.wakes.Add(1)
	g.quiesced = false
	g.idle = 0
	h.active[g.id] = g
	h.dirty[g.id] = g
}

// maybeQuiesce puts a leader's idle group to sleep: nothing unapplied,
// nothing in flight, every member's log matching the commit index.
func (h *Host) maybeQuiesce(g *group) {
	st := g.rn.BasicStatus()
	if st.RaftState != raft.StateLeader || st.LeadTransferee != 0 || st.Applied != st.Commit ||
		g.appending > 0 || g.applying > 0 || g.rn.HasReady() {
		g.idle = 0
		return
	}
	ok := true
	var followers []uint64
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if pr.Match != st.Commit || pr.Next != pr.Match+1 || pr.State != tracker.StateReplicate {
			ok = false
		}
		if id != h.opts.ID {
			followers = append(followers, id)
		}
	})
	if !ok || g.applied.Load() != st.Commit {
		g.idle = 0
		return
	}
	if g.idle++; g.idle < quiesceAfter {
		return
	}
	for _, f := range followers {
		if n := h.nodes[f]; n != nil && n.dead {
			return // a follower's host is down: keep heartbeating it
		}
	}
	g.quiesced = true
	delete(h.active, g.id)
	for _, f := range followers {
		h.send(f, []Envelope{{Group: g.id, Quiesce: true, Msg: pb.Message{
			Type: pb.MsgHeartbeat, From: h.opts.ID, To: f, Term: st.Term, Commit: st.Commit,
		}}})
	}
}

// followerQuiesce puts a follower's replica to sleep on its leader's
// quiesce heartbeat (already stepped: its commit index is applied).
func (h *Host) followerQuiesce(g *group, m pb.Message) {
	st := g.rn.BasicStatus()
	if st.RaftState != raft.StateFollower || st.Lead != m.From || st.Term != m.Term || st.Commit != m.Commit {
		return
	}
	g.quiesced = true
	g.idle = 0
	delete(h.active, g.id)
}
