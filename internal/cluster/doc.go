// Package cluster is the inter-node port of ADR 0005
// (docs/adr/0005-cluster-membership-placement-forwarding.md): node names
// (warren@HOST, as RabbitMQ's rabbit@HOST), one authenticated connection
// per pair of nodes, and typed frames on it for Raft (RaftTransport, a
// consensus.Transport), queue operations and control.
//
// A connection is opened by the node with the lower id, redialled with
// bounded exponential backoff, optionally wrapped in mutual TLS, and
// starts with a cookie challenge-response (see handshake.go): the cookie
// never crosses the wire, a recorded handshake cannot be replayed, and a
// refusal ("the cookies of warren@A and warren@B differ: ...", "dialled
// warren@B but reached warren@C", an unknown node id) is sent to the peer
// and logged on both sides.
//
// Frames are [kind u8][length u32][payload], the payload at most
// Config.MaxFrame (16 MiB). Each peer has two send queues, written by one
// goroutine per connection that coalesces frames into few writes:
// droppable frames (TrySend; Raft: a full queue fails at once so Raft
// can be told) go first, flow-controlled frames (Send; queue traffic)
// wait for room under a byte bound, so a slow peer slows its senders
// instead of filling memory. Handlers, one per kind, run on the
// connection's reader goroutine.
//
//	l, err := cluster.Listen(cluster.Config{Name: cluster.MustParseNodeName("warren@a"), ID: 1, Cookie: cookie})
//	rt := cluster.NewRaftTransport(l, cluster.RaftConfig{
//		Deliver: func(envs []consensus.Envelope, _ bool) bool { h.Deliver(envs); return true },
//	})
//	l.Handle(cluster.KindQueue, func(from uint64, payload []byte) { ... })
//	l.AddPeer(cluster.Peer{ID: 2, Name: cluster.MustParseNodeName("warren@b")}) // dials b:25672
//	h, err := consensus.Open(consensus.Options{ID: 1, Transport: rt, ...})
//	...
//	rt.Close(); l.Close()
package cluster
