package mgmt_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDefinitionsImportValidated: a definitions file with one bad object
// is refused with 400 and the reason, and nothing of it is imported (the
// good objects around the bad one included).
func TestDefinitionsImportValidated(t *testing.T) {
	_, base := start(t)
	g := func(m, p string, b any) resp { return call(t, m, base+p, "guest", "guest", b) }
	want(t, g("PUT", "/api/queues/%2F/existing", map[string]any{"durable": true, "arguments": map[string]any{"x-max-length": 5}}), 201)
	q := func(name, vh string, args map[string]any) map[string]any {
		return map[string]any{"name": name, "vhost": vh, "durable": true, "auto_delete": false, "arguments": args}
	}
	for _, tc := range []struct {
		name   string
		bad    map[string]any
		reason string
	}{
		{"topic permissions", map[string]any{"topic_permissions": []any{map[string]any{"user": "imp-user", "vhost": "imp-ok", "exchange": "amq.topic", "write": "^a", "read": "^b"}}}, "topic_permissions"},
		{"queue in a missing vhost", map[string]any{"queues": []any{q("q", "nope", nil)}}, `vhost "nope" does not exist`},
		{"bad permission regex", map[string]any{"permissions": []any{map[string]any{"user": "imp-user", "vhost": "imp-ok", "configure": "(", "write": ".*", "read": ".*"}}}, "invalid regular expression"},
		{"permission of a missing user", map[string]any{"permissions": []any{map[string]any{"user": "ghost", "vhost": "imp-ok", "configure": ".*", "write": ".*", "read": ".*"}}}, "no_such_user"},
		{"bad policy pattern", map[string]any{"policies": []any{map[string]any{"name": "p", "vhost": "imp-ok", "pattern": "(", "apply-to": "all", "definition": map[string]any{"max-length": 1}}}}, "pattern should be regular expression"},
		{"unknown policy key", map[string]any{"policies": []any{map[string]any{"name": "p", "vhost": "imp-ok", "pattern": "^", "definition": map[string]any{"nosuch": 1}}}}, "not recognised"},
		{"unknown exchange type", map[string]any{"exchanges": []any{map[string]any{"name": "x", "vhost": "imp-ok", "type": "nosuch", "durable": true}}}, "unknown exchange type 'nosuch'"},
		{"x-expires zero", map[string]any{"queues": []any{q("q", "imp-ok", map[string]any{"x-expires": 0})}}, "x-expires"},
		{"x-message-ttl not an integer", map[string]any{"queues": []any{q("q", "imp-ok", map[string]any{"x-message-ttl": "soon"})}}, "x-message-ttl"},
		{"x-max-priority too large", map[string]any{"queues": []any{q("q", "imp-ok", map[string]any{"x-max-priority": 1000})}}, "x-max-priority"},
		{"quorum queue", map[string]any{"queues": []any{map[string]any{"name": "q", "vhost": "imp-ok", "durable": true, "type": "quorum", "arguments": map[string]any{}}}}, "queue type quorum is not supported"},
		{"queue name over 255 bytes", map[string]any{"queues": []any{q(strings.Repeat("n", 300), "imp-ok", nil)}}, "queue should be less than 255 bytes"},
		{"binding to a missing queue", map[string]any{"bindings": []any{map[string]any{"source": "amq.direct", "vhost": "imp-ok", "destination": "nosuch", "destination_type": "queue", "routing_key": "k"}}}, "the queue does not exist"},
		{"binding key over 255 bytes", map[string]any{"queues": []any{q("q", "imp-ok", nil)}, "bindings": []any{map[string]any{"source": "amq.direct", "vhost": "imp-ok", "destination": "q", "destination_type": "queue", "routing_key": strings.Repeat("k", 256)}}}, "routing_key should be less than 255 bytes"},
		{"inequivalent existing queue", map[string]any{"queues": []any{q("existing", "/", map[string]any{"x-max-length": 6})}}, "inequivalent"},
		{"runtime parameters", map[string]any{"parameters": []any{map[string]any{"component": "shovel", "name": "s", "vhost": "imp-ok", "value": map[string]any{}}}}, "parameters"},
		{"malformed", map[string]any{"queues": "x"}, "invalid definitions JSON"},
	} {
		file := map[string]any{
			"vhosts":      []any{map[string]any{"name": "imp-ok"}},
			"users":       []any{map[string]any{"name": "imp-user", "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []string{}}},
			"permissions": []any{map[string]any{"user": "imp-user", "vhost": "imp-ok", "configure": ".*", "write": ".*", "read": ".*"}},
		}
		for k, v := range tc.bad {
			if old, ok := file[k].([]any); ok {
				v = append(append([]any{}, old...), v.([]any)...)
			}
			file[k] = v
		}
		r := g("POST", "/api/definitions", file)
		var e struct{ Reason string }
		json.Unmarshal(r.body, &e)
		if r.status != 400 || !strings.Contains(e.Reason, tc.reason) {
			t.Errorf("%s: %d %s, want 400 with %q", tc.name, r.status, r.body, tc.reason)
		}
		if r := g("GET", "/api/users/imp-user", nil); r.status != 404 {
			t.Errorf("%s: the refused file's user was imported (all or nothing)", tc.name)
		}
		var vs []map[string]any
		g("GET", "/api/vhosts", nil).json(t, &vs)
		for _, v := range vs {
			if v["name"] == "imp-ok" {
				t.Errorf("%s: the refused file's vhost was imported (all or nothing)", tc.name)
			}
		}
	}
	// the same file without the bad object imports
	good := map[string]any{
		"vhosts":            []any{map[string]any{"name": "imp-ok"}},
		"users":             []any{map[string]any{"name": "imp-user", "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []string{}}},
		"permissions":       []any{map[string]any{"user": "imp-user", "vhost": "imp-ok", "configure": ".*", "write": ".*", "read": ".*"}},
		"queues":            []any{q("q", "imp-ok", map[string]any{"x-message-ttl": 1000}), q("existing", "/", map[string]any{"x-max-length": 5})},
		"bindings":          []any{map[string]any{"source": "amq.direct", "vhost": "imp-ok", "destination": "q", "destination_type": "queue", "routing_key": "k"}},
		"global_parameters": []any{map[string]any{"name": "cluster_name", "value": "rabbit@x"}},
	}
	want(t, g("POST", "/api/definitions", good), 204)
	want(t, g("GET", "/api/queues/imp-ok/q", nil), 200)
}
