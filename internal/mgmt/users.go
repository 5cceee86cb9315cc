package mgmt

import (
	"net/http"
	"sort"
	"unicode/utf8"

	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/metadata"
)

// userRoutes: /api/users, /api/users/{user} and its permissions, for
// administrators only (even one's own, as RabbitMQ): every answer here,
// 405 included, comes after that check. HEAD is refused where GET is
// served, as the switch router did.
func (s *Server) userRoutes(rt *router) {
	rt.handle("GET /api/users", s.listUsers)
	rt.handle("HEAD /api/users", s.usersNotAllowed)
	rt.handle("GET /api/users/{user}", s.getUser)
	rt.handle("HEAD /api/users/{user}", s.usersNotAllowed)
	rt.handle("PUT /api/users/{user}", s.putUser)
	rt.handle("DELETE /api/users/{user}", s.deleteUser)
	rt.handle("/api/users/{user}/permissions", s.userPermissions) // any method
	rt.handlePrefix("/api/users", s.usersNotAllowed)
}

func (s *Server) usersNotAllowed(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	return methodNotAllowed(u, r)
}

func (s *Server) listUsers(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	var out []any
	s.b.Metadata().Read(func(m *metadata.State) {
		names := make([]string, 0, len(m.Users))
		for n := range m.Users {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, userJSON(m.Users[n]))
		}
	})
	return 200, nonNil(out), nil
}

func (s *Server) getUser(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("user")
	var usr metadata.User
	var ok bool
	s.b.Metadata().Read(func(m *metadata.State) { usr, ok = m.Users[name] })
	if !ok {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	return 200, userJSON(usr), nil
}

func (s *Server) putUser(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("user")
	var body map[string]any
	if err := decode(r, &body); err != nil {
		return 0, nil, err
	}
	if !utf8.ValidString(name) || name == "" {
		return 0, nil, errStatus(400, "user name must be non-empty UTF-8")
	}
	var existing metadata.User
	var exists bool
	s.b.Metadata().Read(func(m *metadata.State) { existing, exists = m.Users[name] })
	nu := metadata.User{Name: name, HashingAlgorithm: "rabbit_password_hashing_sha256", Tags: tagsFrom(body["tags"])}
	switch {
	case body["password"] != nil:
		pw, _ := body["password"].(string)
		nu.PasswordHash = auth.HashPassword(pw)
	case body["password_hash"] != nil:
		nu.PasswordHash, _ = body["password_hash"].(string)
		if a, ok := body["hashing_algorithm"].(string); ok {
			nu.HashingAlgorithm = a
		}
	case exists:
		nu.PasswordHash, nu.HashingAlgorithm = existing.PasswordHash, existing.HashingAlgorithm
	default:
		return 0, nil, errStatus(400, "password or password_hash must be set")
	}
	if _, ok := body["tags"]; !ok && exists {
		nu.Tags = existing.Tags
	}
	if err := s.propose(metadata.Command{Op: metadata.OpPutUser, User: &nu}); err != nil {
		return 0, nil, err
	}
	if exists {
		return 204, nil, nil
	}
	return 201, nil, nil
}

func (s *Server) deleteUser(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("user")
	if !s.isUser(name) {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	return 204, nil, s.propose(metadata.Command{Op: metadata.OpDeleteUser, Name: name})
}

func (s *Server) userPermissions(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("user")
	return 200, s.permList(func(p metadata.Permission) bool { return p.User == name }), nil
}

func userJSON(u metadata.User) map[string]any {
	tags := u.Tags
	if tags == nil {
		tags = []string{}
	}
	alg := u.HashingAlgorithm
	if alg == "" {
		alg = "rabbit_password_hashing_sha256"
	}
	return map[string]any{"name": u.Name, "password_hash": u.PasswordHash, "hashing_algorithm": alg, "tags": tags, "limits": map[string]any{}}
}

// tagsFrom accepts RabbitMQ's "a,b" string or a JSON list.
func tagsFrom(v any) []string {
	switch t := v.(type) {
	case string:
		return auth.ParseTags(t)
	case []any:
		out := []string{}
		for _, x := range t {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return []string{}
}
