package mgmt

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/warrenmq/warren/internal/broker"
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

// unsupportedKind answers for the kinds of objects Warren does not have
// (topic permissions, runtime parameters, operator policies, limits,
// federation, shovels): there are none, so lists are empty and a single
// one is not found; creating one is refused with a message saying so,
// never accepted and dropped.
func (s *Server) unsupportedKind(r *http.Request, seg []string) (int, any, error) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if objectPath(seg) {
			return 0, nil, errStatus(404, "Object Not Found")
		}
		return 200, []any{}, nil
	case http.MethodDelete:
		return 0, nil, errStatus(404, "Object Not Found")
	}
	return 0, nil, errStatus(400, "Warren does not support %s yet; see the README's list of what is supported", seg[0])
}

// objectPath tells /api/<kind>/<vhost>/<name> (one object) from the
// listing paths of each kind.
func objectPath(seg []string) bool {
	switch seg[0] {
	case "parameters": // /parameters/<component>/<vhost>/<name>
		return len(seg) >= 4
	case "global-parameters":
		return len(seg) >= 2
	case "topic-permissions", "operator-policies", "vhost-limits", "user-limits":
		return len(seg) >= 3
	}
	return false
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

// vhostDefinitions serves /api/definitions/{vhost}: one vhost's queues,
// exchanges, bindings and policies, in RabbitMQ's per-vhost format (no
// users, vhosts or permissions; objects without a "vhost" field), for
// export (GET) and import into that vhost (POST), as rabbitmqadmin
// --vhost export/import use it.
func (s *Server) vhostDefinitions(u user, r *http.Request, vh string) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	if s.b.VHost(vh) == nil {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	switch r.Method {
	case http.MethodGet:
		d := s.b.Metadata().Export()
		strip := func(items any) []any {
			raw, _ := json.Marshal(items)
			var list []map[string]any
			_ = json.Unmarshal(raw, &list)
			out := []any{}
			for _, it := range list {
				if it["vhost"] == vh {
					delete(it, "vhost")
					out = append(out, it)
				}
			}
			return out
		}
		return 200, map[string]any{"rabbit_version": RabbitMQVersion, "rabbitmq_version": RabbitMQVersion,
			"product_name": "Warren", "product_version": broker.Version,
			"parameters": []any{}, "policies": strip(d.Policies), "queues": strip(d.Queues),
			"exchanges": strip(d.Exchanges), "bindings": strip(d.Bindings)}, nil
	case http.MethodPost:
		var d metadata.Definitions
		if err := decode(r, &d); err != nil {
			return 0, nil, err
		}
		d.Users, d.VHosts, d.Permissions = nil, nil, nil
		for i := range d.Policies {
			d.Policies[i].VHost = vh
			if err := ValidatePolicy(d.Policies[i].Definition); err != nil {
				return 0, nil, errStatus(400, "policy %q: %v", d.Policies[i].Name, err)
			}
		}
		for i := range d.Queues {
			d.Queues[i].VHost = vh
		}
		for i := range d.Exchanges {
			d.Exchanges[i].VHost = vh
		}
		for i := range d.Bindings {
			d.Bindings[i].VHost = vh
		}
		if err := s.b.Metadata().Import(d); err != nil {
			return 0, nil, errStatus(400, "%v", err)
		}
		return 204, nil, nil
	}
	return 0, nil, errStatus(405, "Method Not Allowed")
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
