package mgmt

import (
	"net/http"
	"sort"

	"github.com/warrenmq/warren/internal/amqp"
)

// connectionRoutes: /api/connections, /api/connections/{name} (any method
// but DELETE shows it, as the switch router answered) and its channels.
// HEAD is refused where only GET is served.
func (s *Server) connectionRoutes(rt *router) {
	rt.handle("GET /api/connections", s.listConnections)
	rt.handle("HEAD /api/connections", methodNotAllowed)
	rt.handle("/api/connections/{name}", s.getConnection)
	rt.handle("DELETE /api/connections/{name}", s.closeConnection)
	rt.handle("GET /api/connections/{name}/channels", s.connectionChannels)
	rt.handle("HEAD /api/connections/{name}/channels", methodNotAllowed)
	rt.handlePrefix("/api/connections", methodNotAllowed)
}

// connectionItems lists the connections u may see (its own, or all for
// monitoring users), sorted by name.
func (s *Server) connectionItems(u user) []map[string]any {
	var items []map[string]any
	for _, c := range s.b.Connections() {
		in := c.Info()
		if !u.has("monitoring") && in.User != u.name {
			continue
		}
		cp := map[string]any{}
		if in.ClientProps != nil {
			cp = jsonable(in.ClientProps).(map[string]any)
		}
		peerHost, peerPort := splitHostPort(in.Peer)
		host, port := splitHostPort(in.Local)
		items = append(items, map[string]any{
			"name": in.Name, "node": s.b.Config().NodeName, "user": in.User, "vhost": in.VHost, "channels": in.Channels,
			"peer_host": peerHost, "peer_port": peerPort, "host": host, "port": port, "protocol": "AMQP 0-9-1",
			"state": map[bool]string{true: "blocked", false: "running"}[in.Blocked], "connected_at": in.Opened.UnixMilli(),
			"recv_oct": in.RecvOct, "send_oct": in.SendOct, "frame_max": in.FrameMax, "channel_max": in.ChannelMax,
			"timeout": in.Heartbeat, "client_properties": cp, "auth_mechanism": "PLAIN", "type": "network",
			"user_provided_name": cp["connection_name"], "user_who_performed_action": in.User, "ssl": false,
		})
	}
	sort.Slice(items, func(i, j int) bool { return items[i]["name"].(string) < items[j]["name"].(string) })
	if items == nil {
		items = []map[string]any{}
	}
	return items
}

func (s *Server) listConnections(u user, r *http.Request) (int, any, error) {
	out, err := page(r, s.connectionItems(u))
	return 200, out, err
}

func (s *Server) getConnection(u user, r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	for _, it := range s.connectionItems(u) {
		if it["name"] == name {
			return 200, it, nil
		}
	}
	return 0, nil, errStatus(404, "Object Not Found")
}

func (s *Server) closeConnection(u user, r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	for _, c := range s.b.Connections() {
		in := c.Info()
		if in.Name != name {
			continue
		}
		if !u.isAdmin() && in.User != u.name {
			return 0, nil, errStatus(401, "Not administrator user")
		}
		reason := r.Header.Get("X-Reason")
		if reason == "" {
			reason = "Closed via management plugin"
		}
		c.Close(amqp.ConnectionForced, reason)
		return 204, nil, nil
	}
	return 0, nil, errStatus(404, "Object Not Found")
}

func (s *Server) connectionChannels(u user, r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	for _, it := range s.connectionItems(u) {
		if it["name"] == name {
			out := []any{}
			for _, ch := range s.channelList(u) {
				if ch.(map[string]any)["connection_details"].(map[string]any)["name"] == name {
					out = append(out, ch)
				}
			}
			return 200, out, nil
		}
	}
	return 0, nil, errStatus(404, "Object Not Found")
}
