package mgmt

import (
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/vhost"
)

// queueRoutes: /api/queues, /api/queues/{vhost}, /api/queues/{vhost}/{name}
// and its contents, bindings and get. Below a vhost, every answer (405 and
// 404 included) comes after the vhost check. HEAD is refused where GET is
// served, as the switch router did.
func (s *Server) queueRoutes(rt *router) {
	rt.handle("GET /api/queues", s.listQueues)
	rt.handle("HEAD /api/queues", methodNotAllowed)
	rt.handle("GET /api/queues/{vhost}", s.listQueues)
	rt.handle("HEAD /api/queues/{vhost}", methodNotAllowed)
	rt.handlePrefix("/api/queues", methodNotAllowed)
	rt.handle("GET /api/queues/{vhost}/{name}", s.getQueue)
	rt.handle("PUT /api/queues/{vhost}/{name}", s.putQueue)
	rt.handle("DELETE /api/queues/{vhost}/{name}", s.deleteQueue)
	rt.handle("HEAD /api/queues/{vhost}/{name}", s.inVHost(methodNotAllowed))
	rt.handle("/api/queues/{vhost}/{name}", s.inVHost(methodNotAllowed))
	rt.handle("/api/queues/{vhost}/{name}/{rest...}", s.inVHost(notFound))
	rt.handlePrefix("DELETE /api/queues/{vhost}/{name}/contents", s.purgeQueue)
	rt.handlePrefix("/api/queues/{vhost}/{name}/contents", s.inVHost(methodNotAllowed))
	rt.handlePrefix("/api/queues/{vhost}/{name}/bindings", s.queueBindings) // any method
	rt.handlePrefix("POST /api/queues/{vhost}/{name}/get", s.getMessages)
	rt.handlePrefix("/api/queues/{vhost}/{name}/get", s.queueGetNotAllowed)
}

// inVHost answers with f after the check of the vhost in the path
// (requireVHost).
func (s *Server) inVHost(f apiFunc) apiFunc {
	return func(u user, r *http.Request) (int, any, error) {
		if err := s.requireVHost(u, r.PathValue("vhost")); err != nil {
			return 0, nil, err
		}
		return f(u, r)
	}
}

// listQueues lists the queues of every vhost u may see, or of the one in
// the path.
func (s *Server) listQueues(u user, r *http.Request) (int, any, error) {
	return s.listPerVHost(u, r, pathVHost(r), func(vn string, v *vhost.VHost) (items []map[string]any) {
		fc := &figureCache{s: s, vh: vn}
		for _, q := range v.Queues() {
			items = append(items, s.queueJSON(vn, q, fc))
		}
		return items
	})
}

func (s *Server) getQueue(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), r.PathValue("name")
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	q := s.b.VHost(vh).LookupQueue(name)
	if q == nil {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	return 200, s.queueJSON(vh, q, &figureCache{s: s, vh: vh}), nil
}

func (s *Server) putQueue(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), r.PathValue("name")
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	// reading needs access to the vhost; changing needs permissions there
	sess, serr := s.session(u, vh)
	var body struct {
		Durable    *flexBool      `json:"durable"`
		AutoDelete flexBool       `json:"auto_delete"`
		Arguments  map[string]any `json:"arguments"`
	}
	if err := decode(r, &body); err != nil {
		return 0, nil, err
	}
	if serr != nil {
		return 0, nil, serr
	}
	if err := checkName("queue", name); err != nil {
		return 0, nil, err
	}
	durable := true
	if body.Durable != nil {
		durable = bool(*body.Durable)
	}
	existed := s.b.VHost(vh).LookupQueue(name) != nil
	_, _, _, err := sess.DeclareQueue(&amqp.QueueDeclare{Queue: name, Durable: durable, AutoDelete: bool(body.AutoDelete), Arguments: jsonArgs(body.Arguments)}, 0)
	if err != nil {
		return 0, nil, amqpToHTTP(err)
	}
	if existed {
		return 204, nil, nil
	}
	return 201, nil, nil
}

func (s *Server) deleteQueue(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), r.PathValue("name")
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	sess, serr := s.session(u, vh)
	if s.b.VHost(vh).LookupQueue(name) == nil {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	if serr != nil {
		return 0, nil, serr
	}
	q := r.URL.Query()
	_, err := sess.DeleteQueue(&amqp.QueueDelete{Queue: name, IfEmpty: q.Get("if-empty") == "true", IfUnused: q.Get("if-unused") == "true"}, httpOwner)
	return 204, nil, amqpToHTTP(err)
}

func (s *Server) purgeQueue(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), r.PathValue("name")
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	sess, err := s.session(u, vh)
	if err != nil {
		return 0, nil, err
	}
	_, err = sess.PurgeQueue(&amqp.QueuePurge{Queue: name}, httpOwner)
	return 204, nil, amqpToHTTP(err)
}

func (s *Server) queueBindings(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), r.PathValue("name")
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	return 200, s.bindingList(vh, func(b metadata.Binding) bool { return b.DestinationType == "queue" && b.Destination == name }, name), nil
}

// queueGetNotAllowed answers a get that is not a POST: the vhost and
// permission checks first, as for a POST.
func (s *Server) queueGetNotAllowed(u user, r *http.Request) (int, any, error) {
	vh := r.PathValue("vhost")
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	if _, err := s.session(u, vh); err != nil {
		return 0, nil, err
	}
	return methodNotAllowed(u, r)
}

// figureCache fetches the figures of a vhost's queues from their homes,
// once per home node for one answer.
type figureCache struct {
	s  *Server
	vh string
	m  map[string]map[string]queue.Figures // home → queue → figures
	up map[string]bool
}

// get returns the figures of queue name at home (false: home down).
func (fc *figureCache) get(home, name string) (queue.Figures, bool) {
	if fc.m == nil {
		fc.m, fc.up = map[string]map[string]queue.Figures{}, map[string]bool{}
	}
	if _, done := fc.up[home]; !done {
		figs, err := fc.s.b.RemoteFigures(home, fc.vh)
		fc.m[home], fc.up[home] = figs, err == nil
	}
	return fc.m[home][name], fc.up[home]
}

func (s *Server) queueJSON(vh string, q *queue.Queue, fc *figureCache) map[string]any {
	c := q.Config()
	f := q.Figures()
	state := "running"
	if v := s.b.VHost(vh); v != nil && fc != nil {
		if home, ok := v.RemoteHome(c.Name); ok {
			// its figures live on its home
			var up bool
			if f, up = fc.get(home, c.Name); !up {
				state = "down"
			}
		}
	}
	ready, unacked, consumers := f.Ready, f.Unacked, f.Consumers
	ram, ramBytes := f.InMemory, f.InMemoryBytes
	readyBytes := f.ReadyBytes
	st := f.Stats
	args := c.Args
	if args == nil {
		args = map[string]any{}
	}
	var policy any
	if c.Policy != nil {
		policy = c.Policy
	}
	var policyName any
	node := s.b.Config().NodeName
	if v := s.b.VHost(vh); v != nil {
		if n := v.AppliedPolicy(c.Name, "queues"); n != "" {
			policyName = n
		}
		if home, ok := v.RemoteHome(c.Name); ok {
			node = home
		}
	}
	qtype := "classic"
	var def metadata.Queue
	s.b.Metadata().Read(func(st *metadata.State) { def = st.Queues[[2]string{vh, c.Name}] })
	rs, replicated := s.b.Replica(def)
	if metadata.IsQuorumQueue(c.Args) {
		qtype = "quorum"
	}
	out := map[string]any{
		"policy": policyName, "operator_policy": nil,
		"name": c.Name, "vhost": vh, "durable": c.Durable, "auto_delete": c.AutoDelete, "exclusive": c.Exclusive,
		"arguments": args, "node": node, "state": state, "type": qtype,
		"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked,
		"consumers": consumers, "message_bytes_ready": readyBytes, "effective_policy_definition": policy,
		// RabbitMQ's classic-queue paging figures
		"messages_ready_ram": ram, "message_bytes_ram": ramBytes,
		"messages_paged_out": ready - ram, "message_bytes_paged_out": int64(readyBytes) - ramBytes,
		"message_stats": map[string]any{"publish": st.Published, "deliver_get": st.Delivered, "ack": st.Acked, "redeliver": st.Redelivered},
	}
	if replicated {
		// RabbitMQ's quorum queue fields: the leader is the queue's node
		if rs.Leader != "" {
			out["leader"], out["node"] = rs.Leader, rs.Leader
		} else {
			out["leader"] = nil
		}
		out["members"], out["online"] = nodeList(rs.Members), nodeList(rs.Online)
		if qtype == "classic" {
			// a classic queue mirrored by an ha-mode policy: RabbitMQ's
			// mirroring fields. A member counts as synchronised while it
			// is online (Raft brings a returning member up to date before
			// it can vote; per-member progress is not exposed yet).
			var slaves, synced []string
			for _, m := range rs.Members {
				if m == rs.Leader {
					continue
				}
				slaves = append(slaves, m)
				if slices.Contains(rs.Online, m) {
					synced = append(synced, m)
				}
			}
			out["slave_nodes"], out["synchronised_slave_nodes"] = nodeList(slaves), nodeList(synced)
		}
	}
	return out
}

func nodeList(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// getMessages serves POST /api/queues/{vhost}/{name}/get.

func (s *Server) getMessages(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), r.PathValue("name")
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	sess, err := s.session(u, vh)
	if err != nil {
		return 0, nil, err
	}
	var body struct {
		Count    flexInt `json:"count"`
		AckMode  string  `json:"ackmode"`
		Encoding string  `json:"encoding"`
		Truncate flexInt `json:"truncate"`
	}
	if err := decode(r, &body); err != nil {
		return 0, nil, err
	}
	if body.AckMode == "" {
		return 0, nil, errStatus(400, "ackmode must be ack_requeue_true, ack_requeue_false, reject_requeue_true or reject_requeue_false")
	}
	if body.Count <= 0 {
		body.Count = 1
	}
	q, err := sess.Queue(name, httpOwner)
	if err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.ResourceLocked { // RabbitMQ's text for get
			return 0, nil, errStatus(400, "405 RESOURCE_LOCKED - %s", reasonText(ae.Text))
		}
		return 0, nil, amqpToHTTP(err)
	}
	out := []any{}
	var taken []uint64
	for i := 0; i < int(body.Count); i++ {
		d, ok := q.Get(false)
		if !ok {
			break
		}
		taken = append(taken, d.ID)
		payload, enc := string(d.Msg.Body), "string"
		if body.Encoding == "base64" || !utf8.Valid(d.Msg.Body) {
			payload, enc = base64.StdEncoding.EncodeToString(d.Msg.Body), "base64"
		}
		if body.Truncate > 0 && len(payload) > int(body.Truncate) {
			payload = payload[:body.Truncate]
		}
		props := map[string]any{}
		if p, err := amqp.DecodeProperties(d.Msg.Props); err == nil {
			props = propsJSON(p)
		}
		out = append(out, map[string]any{"payload_bytes": len(d.Msg.Body), "redelivered": d.Redelivered, "exchange": d.Msg.Exchange,
			"routing_key": d.Msg.RoutingKey, "message_count": d.Remaining, "properties": props, "payload": payload, "payload_encoding": enc})
	}
	switch body.AckMode {
	case "ack_requeue_false":
		q.Ack(taken...)
	case "reject_requeue_false":
		q.Discard(taken...)
	default:
		q.Requeue(taken...)
	}
	return 200, out, nil
}
