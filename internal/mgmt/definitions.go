package mgmt

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/exchange"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/vhost"
)

// definitionRoutes: GET (export) and POST (import) /api/definitions and
// /api/definitions/{vhost} (one vhost's, in RabbitMQ's per-vhost format),
// for administrators; more segments after a vhost are the whole node's,
// as the switch router answered. HEAD is refused (405).
func (s *Server) definitionRoutes(rt *router) {
	rt.handle("GET /api/definitions", s.exportDefinitions)
	rt.handle("POST /api/definitions", s.postDefinitions)
	rt.handle("HEAD /api/definitions", s.definitionsNotAllowed)
	rt.handle("/api/definitions", s.definitionsNotAllowed)
	rt.handle("GET /api/definitions/{vhost}", s.exportVHostDefinitions)
	rt.handle("POST /api/definitions/{vhost}", s.importVHostDefinitions)
	rt.handle("HEAD /api/definitions/{vhost}", s.vhostDefinitionsNotAllowed)
	rt.handle("/api/definitions/{vhost}", s.vhostDefinitionsNotAllowed)
	rt.handle("GET /api/definitions/{vhost}/{rest...}", s.exportDefinitions)
	rt.handle("POST /api/definitions/{vhost}/{rest...}", s.postDefinitions)
	rt.handle("HEAD /api/definitions/{vhost}/{rest...}", s.definitionsNotAllowed)
	rt.handle("/api/definitions/{vhost}/{rest...}", s.definitionsNotAllowed)
}

func (s *Server) exportDefinitions(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	d := s.b.Metadata().Export()
	d.RabbitVersion, d.RabbitMQVer, d.ProductName, d.ProductVer = RabbitMQVersion, RabbitMQVersion, "Warren", broker.Version
	return 200, d, nil
}

func (s *Server) postDefinitions(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	d, err := decodeDefinitions(r)
	if err != nil {
		return 0, nil, err
	}
	if err := s.importDefinitions(d); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

func (s *Server) definitionsNotAllowed(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	return methodNotAllowed(u, r)
}

// definitionsVHost checks the caller and the vhost of
// /api/definitions/{vhost}.
func (s *Server) definitionsVHost(u user, r *http.Request) (string, error) {
	if err := requireAdmin(u); err != nil {
		return "", err
	}
	vh := r.PathValue("vhost")
	if s.b.VHost(vh) == nil {
		return "", errStatus(404, "Object Not Found")
	}
	return vh, nil
}

func (s *Server) vhostDefinitionsNotAllowed(u user, r *http.Request) (int, any, error) {
	if _, err := s.definitionsVHost(u, r); err != nil {
		return 0, nil, err
	}
	return methodNotAllowed(u, r)
}

// exportVHostDefinitions serves GET /api/definitions/{vhost}: one vhost's
// queues, exchanges, bindings and policies, in RabbitMQ's per-vhost format
// (no users, vhosts or permissions; objects without a "vhost" field), as
// rabbitmqadmin --vhost export uses it.
func (s *Server) exportVHostDefinitions(u user, r *http.Request) (int, any, error) {
	vh, err := s.definitionsVHost(u, r)
	if err != nil {
		return 0, nil, err
	}
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
}

// importVHostDefinitions serves POST /api/definitions/{vhost}: imports
// one vhost's definitions (rabbitmqadmin --vhost import) into that vhost.
func (s *Server) importVHostDefinitions(u user, r *http.Request) (int, any, error) {
	vh, err := s.definitionsVHost(u, r)
	if err != nil {
		return 0, nil, err
	}
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

// importDefinitions validates d as a whole (validateDefinitions) and only
// then imports it: all or nothing. Every import path (POST
// /api/definitions, per-vhost imports, load_definitions) should come here.
func (s *Server) importDefinitions(d metadata.Definitions) error {
	var err error
	s.b.Metadata().Read(func(st *metadata.State) { err = validateDefinitions(d, st) })
	if err != nil {
		return errStatus(400, "%v", err)
	}
	if err := s.b.Metadata().Import(d); err != nil {
		return errStatus(500, "definitions import stopped part-way after validation passed (retry, or check the node's log): %v", err)
	}
	return nil
}

// validateDefinitions checks a whole definitions file against the current
// state before anything is imported, so an import is all or nothing: every
// object names a vhost (and user) that exists or is in the file, names and
// routing keys fit AMQP's short strings, regular expressions compile,
// exchange types are known, queue arguments and policy definitions pass
// the checks a declare or PUT would make, bindings join existing objects,
// and nothing redefines an existing object differently. Topic permissions
// and vhost parameters (federation, shovels) are refused: Warren does not
// enforce them, and importing them would be silent. The error says which
// object is wrong and why.
func validateDefinitions(d metadata.Definitions, st *metadata.State) error {
	vhosts := map[string]bool{}
	for n := range st.VHosts {
		vhosts[n] = true
	}
	users := map[string]bool{}
	for n := range st.Users {
		users[n] = true
	}
	for i, v := range d.VHosts {
		if v.Name == "" {
			return fmt.Errorf("vhosts[%d]: the name is empty", i)
		}
		if err := checkName("vhost", v.Name); err != nil {
			return fmt.Errorf("vhost %q: %v", v.Name, err)
		}
		vhosts[v.Name] = true
	}
	needVHost := func(kind, name, vh string) error {
		if !vhosts[vh] {
			return fmt.Errorf("%s %q: vhost %q does not exist and is not in the file (no_such_vhost)", kind, name, vh)
		}
		return nil
	}
	for i, u := range d.Users {
		if u.Name == "" || !utf8.ValidString(u.Name) {
			return fmt.Errorf("users[%d]: the name is empty or not UTF-8", i)
		}
		switch u.HashingAlgorithm {
		case "", "rabbit_password_hashing_sha256", "rabbit_password_hashing_sha512", "rabbit_password_hashing_md5":
		default:
			return fmt.Errorf("user %q: unknown hashing_algorithm %q (rabbit_password_hashing_sha256, _sha512 or _md5)", u.Name, u.HashingAlgorithm)
		}
		users[u.Name] = true
	}
	for _, p := range d.Permissions {
		if !users[p.User] {
			return fmt.Errorf("permissions of user %q in vhost %q: user %q does not exist and is not in the file (no_such_user)", p.User, p.VHost, p.User)
		}
		if err := needVHost("permissions of user", p.User, p.VHost); err != nil {
			return err
		}
		if _, err := auth.CompilePermission(auth.Permission{Configure: p.Configure, Write: p.Write, Read: p.Read}); err != nil {
			return fmt.Errorf("permissions of user %q in vhost %q: invalid regular expression: %v", p.User, p.VHost, err)
		}
	}
	if len(d.TopicPerms) > 0 {
		return fmt.Errorf("topic_permissions: Warren does not enforce topic permissions yet, so it refuses to import them rather than drop them; remove them from the file, or import into RabbitMQ")
	}
	if len(d.Parameters) > 0 {
		return fmt.Errorf("parameters: Warren has no runtime parameters (federation upstreams, shovels, ...); remove them from the file")
	}
	for _, g := range d.GlobalParams {
		m, _ := g.(map[string]any)
		switch m["name"] {
		case "cluster_name", "internal_cluster_id": // node identity, not definitions
		default:
			return fmt.Errorf("global_parameters: %v is not supported by Warren; remove it from the file", m["name"])
		}
	}
	for _, p := range d.Policies {
		if p.Name == "" || !utf8.ValidString(p.Name) {
			return fmt.Errorf("policy in vhost %q: the name is empty or not UTF-8", p.VHost)
		}
		if err := needVHost("policy", p.Name, p.VHost); err != nil {
			return err
		}
		if _, err := regexp.Compile(p.Pattern); err != nil {
			return fmt.Errorf("policy %q in vhost %q: pattern should be regular expression but is invalid: %v", p.Name, p.VHost, err)
		}
		switch p.ApplyTo {
		case "", "all", "queues", "exchanges":
		default:
			return fmt.Errorf("policy %q in vhost %q: apply-to %q is not all, queues or exchanges", p.Name, p.VHost, p.ApplyTo)
		}
		if p.Definition == nil {
			return fmt.Errorf("policy %q in vhost %q: definition must be a JSON object", p.Name, p.VHost)
		}
		if err := ValidatePolicy(p.Definition); err != nil {
			return fmt.Errorf("policy %q in vhost %q: %v", p.Name, p.VHost, err)
		}
	}
	exchanges := map[[2]string]metadata.Exchange{}
	for k, x := range st.Exchanges {
		exchanges[k] = x
	}
	for _, x := range d.Exchanges {
		if err := needVHost("exchange", x.Name, x.VHost); err != nil {
			return err
		}
		if x.Name == "" || strings.HasPrefix(x.Name, "amq.") {
			if cur, ok := st.Exchanges[[2]string{x.VHost, x.Name}]; ok && cur.Type == x.Type {
				continue // a built-in exchange, as RabbitMQ exports them at times
			}
			return fmt.Errorf("exchange %q in vhost %q: the name is empty or uses the reserved prefix 'amq.'", x.Name, x.VHost)
		}
		if err := checkName("exchange", x.Name); err != nil {
			return fmt.Errorf("exchange in vhost %q: %v", x.VHost, err)
		}
		if _, ok := exchange.ParseKind(x.Type); !ok {
			return fmt.Errorf("exchange %q in vhost %q: unknown exchange type '%s' (direct, fanout, topic or headers)", x.Name, x.VHost, x.Type)
		}
		if ae, ok := x.Arguments["alternate-exchange"]; ok {
			if s, isStr := ae.(string); !isStr || checkName("alternate-exchange", s) != nil {
				return fmt.Errorf("exchange %q in vhost %q: alternate-exchange must be an exchange name", x.Name, x.VHost)
			}
		}
		k := [2]string{x.VHost, x.Name}
		if cur, ok := st.Exchanges[k]; ok && (cur.Type != x.Type || cur.Durable != x.Durable || cur.AutoDelete != x.AutoDelete || cur.Internal != x.Internal || !sameArgs(cur.Arguments, x.Arguments)) {
			return fmt.Errorf("exchange %q in vhost %q exists with other properties (inequivalent); delete it first or fix the file", x.Name, x.VHost)
		}
		exchanges[k] = x
	}
	queues := map[[2]string]bool{}
	for k := range st.Queues {
		queues[k] = true
	}
	for _, q := range d.Queues {
		if err := needVHost("queue", q.Name, q.VHost); err != nil {
			return err
		}
		if q.Name == "" {
			return fmt.Errorf("queue in vhost %q: the name is empty", q.VHost)
		}
		if err := checkName("queue", q.Name); err != nil {
			return fmt.Errorf("queue in vhost %q: %v", q.VHost, err)
		}
		if err := vhost.ValidateQueueArguments(jsonArgs(q.Arguments), q.Name, q.VHost); err != nil {
			return fmt.Errorf("queue %q in vhost %q: %s", q.Name, q.VHost, reasonText(err.Error()))
		}
		k := [2]string{q.VHost, q.Name}
		if cur, ok := st.Queues[k]; ok && (cur.Durable != q.Durable || cur.AutoDelete != q.AutoDelete || cur.Exclusive || !sameArgs(cur.Arguments, q.Arguments)) {
			return fmt.Errorf("queue %q in vhost %q exists with other properties (inequivalent); delete it first or fix the file", q.Name, q.VHost)
		}
		queues[k] = true
	}
	for _, b := range d.Bindings {
		what := fmt.Sprintf("binding of %s %q to exchange %q in vhost %q", b.DestinationType, b.Destination, b.Source, b.VHost)
		if err := needVHost("binding to", b.Destination, b.VHost); err != nil {
			return err
		}
		if err := checkName("routing_key", b.RoutingKey); err != nil {
			return fmt.Errorf("%s: %v", what, err)
		}
		if _, ok := exchanges[[2]string{b.VHost, b.Source}]; !ok && !builtinExchange(b.Source) {
			return fmt.Errorf("%s: the source exchange does not exist and is not in the file", what)
		}
		switch b.DestinationType {
		case "queue":
			if !queues[[2]string{b.VHost, b.Destination}] {
				return fmt.Errorf("%s: the queue does not exist and is not in the file", what)
			}
		case "exchange":
			if _, ok := exchanges[[2]string{b.VHost, b.Destination}]; !ok && !builtinExchange(b.Destination) {
				return fmt.Errorf("%s: the destination exchange does not exist and is not in the file", what)
			}
		default:
			return fmt.Errorf("%s: destination_type must be queue or exchange", what)
		}
	}
	return nil
}

func builtinExchange(name string) bool {
	switch name {
	case "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match", "amq.rabbitmq.trace":
		return true
	}
	return false
}

// sameArgs compares two argument tables as JSON (numbers as numbers).
func sameArgs(a, b map[string]any) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// decodeDefinitions reads a definitions body; it also refuses queue types
// other than classic, which metadata.Queue does not carry.
func decodeDefinitions(r *http.Request) (metadata.Definitions, error) {
	var d metadata.Definitions
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 64<<20))
	if err != nil {
		return d, errStatus(400, "cannot read the definitions: %v", err)
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, errStatus(400, "invalid definitions JSON: %v", err)
	}
	var types struct {
		Queues []struct {
			Name  string `json:"name"`
			VHost string `json:"vhost"`
			Type  any    `json:"type"`
		} `json:"queues"`
	}
	_ = json.Unmarshal(raw, &types)
	for _, q := range types.Queues {
		if q.Type != nil && q.Type != "classic" {
			return d, errStatus(400, "queue %q in vhost %q: queue type %v is not supported by this node yet (only classic)", q.Name, q.VHost, q.Type)
		}
	}
	return d, nil
}
