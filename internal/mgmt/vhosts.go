package mgmt

import (
	"net/http"

	"github.com/warrenmq/warren/internal/metadata"
)

// vhostRoutes: /api/vhosts, /api/vhosts/{vhost} and its permissions.
// HEAD is refused (405) where GET is served: the switch router compared
// the method with GET alone here.
func (s *Server) vhostRoutes(rt *router) {
	rt.handle("GET /api/vhosts", s.listVHosts)
	rt.handle("HEAD /api/vhosts", methodNotAllowed)
	rt.handle("GET /api/vhosts/{vhost}", s.getVHost)
	rt.handle("HEAD /api/vhosts/{vhost}", methodNotAllowed)
	rt.handle("PUT /api/vhosts/{vhost}", s.putVHost)
	rt.handle("DELETE /api/vhosts/{vhost}", s.deleteVHost)
	rt.handle("/api/vhosts/{vhost}/permissions", s.vhostPermissions) // any method
	rt.handlePrefix("/api/vhosts", methodNotAllowed)
}

func (s *Server) listVHosts(u user, r *http.Request) (int, any, error) {
	var out []any
	for _, n := range s.b.VHostNames() {
		if s.vhostVisible(u, n) {
			out = append(out, s.vhostJSON(n))
		}
	}
	return 200, nonNil(out), nil
}

func (s *Server) getVHost(u user, r *http.Request) (int, any, error) {
	vh := r.PathValue("vhost")
	if err := requireAdmin(u); err != nil { // as RabbitMQ 3.10
		return 0, nil, err
	}
	if s.b.VHost(vh) == nil {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	return 200, s.vhostJSON(vh), nil
}

func (s *Server) putVHost(u user, r *http.Request) (int, any, error) {
	vh := r.PathValue("vhost")
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	if err := checkName("vhost", vh); err != nil {
		return 0, nil, err
	}
	var body map[string]any // description, tags, tracing: checked as JSON, not kept yet
	if err := decode(r, &body); err != nil {
		return 0, nil, err
	}
	exists := s.b.VHost(vh) != nil
	if err := s.propose(metadata.Command{Op: metadata.OpAddVHost, VHost: vh}); err != nil {
		return 0, nil, err
	}
	if exists {
		return 204, nil, nil
	}
	// as RabbitMQ does, the user who creates a vhost over the API gets
	// full permissions on it (warrenctl, like rabbitmqctl, acts as no
	// user and grants nothing)
	if s.isUser(u.name) {
		p := metadata.Permission{User: u.name, VHost: vh, Configure: ".*", Write: ".*", Read: ".*"}
		if err := s.propose(metadata.Command{Op: metadata.OpSetPermissions, Permission: &p}); err != nil {
			return 0, nil, err
		}
	}
	return 201, nil, nil
}

func (s *Server) deleteVHost(u user, r *http.Request) (int, any, error) {
	vh := r.PathValue("vhost")
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	if s.b.VHost(vh) == nil {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	return 204, nil, s.propose(metadata.Command{Op: metadata.OpDeleteVHost, VHost: vh})
}

func (s *Server) vhostPermissions(u user, r *http.Request) (int, any, error) {
	vh := r.PathValue("vhost")
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	if s.b.VHost(vh) == nil {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	return 200, s.permList(func(p metadata.Permission) bool { return p.VHost == vh }), nil
}

func (s *Server) vhostJSON(n string) map[string]any {
	msgs, ready, unacked := 0, 0, 0
	if v := s.b.VHost(n); v != nil {
		for _, q := range v.Queues() {
			r, un, _ := q.Counts()
			ready += r
			unacked += un
		}
	}
	msgs = ready + unacked
	return map[string]any{"name": n, "description": "", "tags": []string{}, "tracing": false,
		"messages": msgs, "messages_ready": ready, "messages_unacknowledged": unacked,
		"metadata": map[string]any{"description": "", "tags": []string{}}, "default_queue_type": "classic",
		"cluster_state": map[string]string{s.b.Config().NodeName: "running"}}
}
