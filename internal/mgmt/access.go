package mgmt

// restrictOverview narrows GET /api/overview for users without the
// monitoring tag as RabbitMQ does: totals over the vhosts they have
// permissions in and their own connections and channels, and no node,
// listener or context details (nor node-wide message rates).
func (s *Server) restrictOverview(u user, o map[string]any) map[string]any {
	if u.has("monitoring") || u.control {
		return o
	}
	qs, ready, unacked, consumers, exchanges := 0, 0, 0, 0, 0
	for _, vn := range s.b.VHostNames() {
		v := s.b.VHost(vn)
		if v == nil || !s.hasPerm(u, vn) {
			continue
		}
		for _, q := range v.Queues() {
			r, un, c := q.Counts()
			qs++
			ready += r
			unacked += un
			consumers += c
		}
		exchanges += len(v.Exchanges())
	}
	conns, chans := 0, 0
	for _, c := range s.b.Connections() {
		if in := c.Info(); in.User == u.name {
			conns++
			chans += in.Channels
		}
	}
	o["object_totals"] = map[string]int{"connections": conns, "channels": chans, "exchanges": exchanges, "queues": qs, "consumers": consumers}
	o["queue_totals"] = map[string]any{"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked}
	o["message_stats"] = map[string]any{}
	delete(o, "node")
	delete(o, "listeners")
	delete(o, "contexts")
	return o
}
