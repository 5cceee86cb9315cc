package mgmt

import (
	"fmt"
	"net/http"
)

// consumerRoutes: GET /api/consumers and /api/consumers/{vhost}; more
// segments list every vhost's, as the switch router answered (read-only).
func (s *Server) consumerRoutes(rt *router) {
	all := func(u user, r *http.Request) (int, any, error) { return 200, s.consumerList(u, nil), nil }
	rt.handle("/api/consumers", all)
	rt.handle("/api/consumers/{vhost}", func(u user, r *http.Request) (int, any, error) {
		return 200, s.consumerList(u, []string{r.PathValue("vhost")}), nil
	})
	rt.handle("/api/consumers/{vhost}/{rest...}", all)
}

type describer interface {
	Describe() (uint64, uint16, uint16, bool)
}

func (s *Server) consumerList(u user, seg []string) []any {
	names := map[uint64]string{}
	for _, c := range s.b.Connections() {
		names[c.Info().ID] = c.Info().Name
	}
	out := []any{}
	for _, vn := range s.b.VHostNames() {
		if (len(seg) == 1 && seg[0] != vn) || !s.canAccessVHost(u, vn) {
			continue
		}
		for _, q := range s.b.VHost(vn).Queues() {
			for _, ci := range q.Consumers() {
				d := map[string]any{"consumer_tag": ci.Tag, "exclusive": false, "ack_required": !ci.NoAck, "active": ci.Active,
					"activity_status": map[bool]string{true: "up", false: "waiting"}[ci.Active],
					"queue":           map[string]string{"name": q.Name(), "vhost": vn}, "arguments": map[string]any{}, "prefetch_count": 0}
				if x, ok := ci.Consumer.(describer); ok {
					id, ch, pf, _ := x.Describe()
					d["channel_details"] = map[string]any{"name": fmt.Sprintf("%s (%d)", names[id], ch), "number": ch, "connection_name": names[id]}
					d["prefetch_count"] = pf
				}
				if ci.Priority != 0 {
					d["arguments"] = map[string]any{"x-priority": ci.Priority}
				}
				out = append(out, d)
			}
		}
	}
	return out
}
