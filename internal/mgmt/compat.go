package mgmt

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/warrenmq/warren/internal/metadata"
)

// isUser reports whether name is a user in the definitions (the cookie
// identity warrenctl uses is not).
func (s *Server) isUser(name string) bool {
	var ok bool
	s.b.Metadata().Read(func(m *metadata.State) { _, ok = m.Users[name] })
	return ok
}

func (s *Server) policyExists(vh, name string) bool {
	var ok bool
	s.b.Metadata().Read(func(m *metadata.State) {
		for _, p := range m.Policies {
			if p.VHost == vh && p.Name == name {
				ok = true
			}
		}
	})
	return ok
}

// packPropertiesKey is RabbitMQ's properties_key for a binding without
// arguments: the routing key form-encoded (quote_plus, so it fits in one
// path segment) with "~" written %7E, and "~" for the empty key.
func packPropertiesKey(key string) string {
	if key == "" {
		return "~"
	}
	return strings.ReplaceAll(url.QueryEscape(key), "~", "%7E")
}

// unpackPropertiesKey reads a properties_key from the last segment of a
// binding's URL (already path-unescaped once): "~" is the empty key,
// otherwise it is unescaped once more, as RabbitMQ does. A routing key
// sent as it is (no "%") is returned unchanged.
func unpackPropertiesKey(pk string) string {
	if pk == "~" {
		return ""
	}
	if k, err := url.QueryUnescape(pk); err == nil {
		return k
	}
	return pk
}

// unsupportedRoutes answers for the kinds of objects Warren does not have
// (topic permissions, runtime parameters, operator policies, limits,
// federation, shovels): there are none, so lists are empty and a single
// one (a path as long as objectPattern, or longer) is not found; creating
// one is refused with a message saying so, never accepted and dropped.
func (s *Server) unsupportedRoutes(rt *router) {
	list := func(user, *http.Request) (int, any, error) { return 200, []any{}, nil }
	none := func(user, *http.Request) (int, any, error) { return 0, nil, errStatus(404, "Object Not Found") }
	for kind, objectPattern := range map[string]string{
		"parameters":        "/{component}/{vhost}/{name}",
		"global-parameters": "/{name}",
		"topic-permissions": "/{vhost}/{user}",
		"operator-policies": "/{vhost}/{name}",
		"vhost-limits":      "/{vhost}/{name}",
		"user-limits":       "/{user}/{name}",
		"federation-links":  "",
		"shovels":           "",
	} {
		p := "/api/" + kind
		rt.handlePrefix("GET "+p, list)
		rt.handlePrefix("DELETE "+p, none)
		rt.handlePrefix(p, func(user, *http.Request) (int, any, error) {
			return 0, nil, errStatus(400, "Warren does not support %s yet; see the README's list of what is supported", kind)
		})
		if objectPattern != "" {
			rt.handlePrefix("GET "+p+objectPattern, none)
		}
	}
}

// defaultBindings lists the default exchange's implicit binding of every
// queue in vh (every vhost u may see when vh is ""), sorted by vhost and
// queue.
func (s *Server) defaultBindings(u user, vh string) []any {
	out := []any{}
	for _, vn := range s.b.VHostNames() {
		if (vh != "" && vn != vh) || !s.canAccessVHost(u, vn) {
			continue
		}
		v := s.b.VHost(vn)
		if v == nil {
			continue
		}
		var names []string
		for _, q := range v.Queues() {
			names = append(names, q.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, bindingJSON(metadata.Binding{VHost: vn, Destination: n, DestinationType: "queue", RoutingKey: n}))
		}
	}
	return out
}

// flexBool reads a JSON boolean the way RabbitMQ's API does: true/false
// or the strings "true"/"false" (rabbitmqadmin sends strings).
type flexBool bool

func (b *flexBool) UnmarshalJSON(raw []byte) error {
	switch strings.Trim(string(raw), `"`) {
	case "true":
		*b = true
	case "false", "null", "":
		*b = false
	default:
		return fmt.Errorf("%s is not a boolean (true or false)", raw)
	}
	return nil
}

// flexInt reads a JSON integer given as a number or as a string of
// digits (rabbitmqadmin sends "count": "1").
type flexInt int

func (n *flexInt) UnmarshalJSON(raw []byte) error {
	s := strings.Trim(string(raw), `"`)
	if s == "null" || s == "" {
		*n = 0
		return nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%s is not an integer", raw)
	}
	*n = flexInt(v)
	return nil
}

// findBinding returns the stored binding from src to dst (kind dt) with
// routing key key; one without arguments is preferred when several
// differ only in their arguments.
func (s *Server) findBinding(vh, src, dst, dt, key string) (metadata.Binding, bool) {
	var out metadata.Binding
	var found bool
	s.b.Metadata().Read(func(m *metadata.State) {
		for _, b := range m.Bindings {
			if b.VHost != vh || b.Source != src || b.Destination != dst || b.DestinationType != dt || b.RoutingKey != key {
				continue
			}
			if !found || len(b.Arguments) < len(out.Arguments) {
				out, found = b, true
			}
		}
	})
	return out, found
}

// connectionDetails is RabbitMQ's connection_details object of a channel.
func connectionDetails(name, peer string) map[string]any {
	host, port := splitHostPort(peer)
	return map[string]any{"name": name, "peer_host": host, "peer_port": port}
}

// readOnly reports the endpoints that only answer GET and HEAD.
func readOnly(seg []string) bool {
	if len(seg) == 0 {
		return false
	}
	switch seg[0] {
	case "overview", "whoami", "nodes", "channels", "consumers", "extensions", "aliveness-test", "health":
		return true
	}
	return false
}
