package mgmt

import (
	"net/http"
)

// nodeRoutes: GET /api/nodes and /api/nodes/{node} (monitoring users).
func (s *Server) nodeRoutes(rt *router) {
	rt.handle("/api/nodes", s.listNodes)
	rt.handlePrefix("/api/nodes/{node}", s.getNode)
}

func (s *Server) listNodes(u user, r *http.Request) (int, any, error) {
	if !u.has("monitoring") {
		return 0, nil, errStatus(401, "Not monitor user")
	}
	return 200, append([]any{s.node()}, s.otherNodes("")...), nil
}

func (s *Server) getNode(u user, r *http.Request) (int, any, error) {
	if !u.has("monitoring") {
		return 0, nil, errStatus(401, "Not monitor user")
	}
	name := r.PathValue("node")
	if name == s.b.Config().NodeName {
		return 200, s.node(), nil
	}
	if o := s.otherNodes(name); len(o) == 1 {
		return 200, o[0], nil
	}
	return 0, nil, errStatus(404, "Object Not Found")
}
