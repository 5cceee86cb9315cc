package mgmt

import (
	"net/http"
	"sort"

	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/metadata"
)

// permissionRoutes: /api/permissions and /api/permissions/{vhost}/{user},
// for administrators only (every answer, 405 included, after that
// check). HEAD is refused where GET is served, as the switch router did.
func (s *Server) permissionRoutes(rt *router) {
	rt.handle("GET /api/permissions", s.listPermissions)
	rt.handle("HEAD /api/permissions", s.permissionsNotAllowed)
	rt.handle("GET /api/permissions/{vhost}/{user}", s.getPermission)
	rt.handle("HEAD /api/permissions/{vhost}/{user}", s.permissionsNotAllowed)
	rt.handle("PUT /api/permissions/{vhost}/{user}", s.putPermission)
	rt.handle("DELETE /api/permissions/{vhost}/{user}", s.deletePermission)
	rt.handle("/api/permissions/{vhost}/{user}", s.permissionsNotAllowed)
	rt.handlePrefix("/api/permissions", s.permissionsNotAllowed)
}

func (s *Server) permissionsNotAllowed(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	return methodNotAllowed(u, r)
}

func (s *Server) listPermissions(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	return 200, s.permList(func(metadata.Permission) bool { return true }), nil
}

func (s *Server) getPermission(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	vh, name := r.PathValue("vhost"), r.PathValue("user")
	ps := s.permList(func(p metadata.Permission) bool { return p.VHost == vh && p.User == name })
	if len(ps) == 0 {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	return 200, ps[0], nil
}

func (s *Server) putPermission(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	var p metadata.Permission
	if err := decode(r, &p); err != nil {
		return 0, nil, err
	}
	p.VHost, p.User = r.PathValue("vhost"), r.PathValue("user")
	if _, err := auth.CompilePermission(auth.Permission{Configure: p.Configure, Write: p.Write, Read: p.Read}); err != nil {
		return 0, nil, errStatus(400, "%v", err)
	}
	exists := len(s.permList(func(x metadata.Permission) bool { return x.VHost == p.VHost && x.User == p.User })) > 0
	if err := s.propose(metadata.Command{Op: metadata.OpSetPermissions, Permission: &p}); err != nil {
		return 0, nil, err
	}
	if exists {
		return 204, nil, nil
	}
	return 201, nil, nil
}

func (s *Server) deletePermission(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	vh, name := r.PathValue("vhost"), r.PathValue("user")
	if len(s.permList(func(x metadata.Permission) bool { return x.VHost == vh && x.User == name })) == 0 {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	return 204, nil, s.propose(metadata.Command{Op: metadata.OpClearPermissions, VHost: vh, Name: name})
}

func (s *Server) permList(keep func(metadata.Permission) bool) []any {
	var ps []metadata.Permission
	s.b.Metadata().Read(func(m *metadata.State) {
		for _, p := range m.Permissions {
			if keep(p) {
				ps = append(ps, p)
			}
		}
	})
	sort.Slice(ps, func(i, j int) bool { return ps[i].User+"\x00"+ps[i].VHost < ps[j].User+"\x00"+ps[j].VHost })
	out := []any{}
	for _, p := range ps {
		out = append(out, p)
	}
	return out
}
