package mgmt

import (
	"fmt"
	"net/http"
)

// channelRoutes: GET /api/channels (also with segments after it, as the
// switch router answered; read-only).
func (s *Server) channelRoutes(rt *router) {
	rt.handlePrefix("/api/channels", func(u user, r *http.Request) (int, any, error) {
		return 200, s.channelList(u), nil
	})
}

func (s *Server) channelList(u user) []any {
	out := []any{}
	for _, c := range s.b.Connections() {
		in := c.Info()
		if !u.has("monitoring") && in.User != u.name {
			continue
		}
		for _, ch := range c.ChannelInfos() {
			out = append(out, map[string]any{
				"name": fmt.Sprintf("%s (%d)", in.Name, ch.Number), "number": ch.Number, "user": in.User, "vhost": in.VHost,
				"node": s.b.Config().NodeName, "consumer_count": ch.Consumers, "messages_unacknowledged": ch.Unacked,
				"prefetch_count": 0, "global_prefetch_count": ch.PrefetchGlobal, "state": "running",
				"user_who_performed_action": in.User,
				"connection_details":        connectionDetails(in.Name, in.Peer),
			})
		}
	}
	return out
}
