package mgmt

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/vhost"
)

// api dispatches /api/<seg...>. It returns the status and a JSON body
// (nil for an empty response).
func (s *Server) api(u user, r *http.Request, seg []string) (int, any, error) {
	if len(seg) == 0 {
		return 0, nil, errStatus(404, "Not Found")
	}
	m := r.Method
	get := m == http.MethodGet || m == http.MethodHead
	switch seg[0] {
	case "overview":
		return 200, s.restrictOverview(u, s.overview()), nil
	case "whoami":
		return 200, map[string]any{"name": u.name, "tags": u.tags}, nil
	case "cluster-name":
		if get {
			return 200, map[string]string{"name": s.b.Config().ClusterName}, nil
		}
	case "nodes":
		if !u.has("monitoring") {
			return 0, nil, errStatus(401, "Not monitor user")
		}
		if len(seg) == 1 {
			return 200, append([]any{s.node()}, s.otherNodes("")...), nil
		}
		if seg[1] == s.b.Config().NodeName {
			return 200, s.node(), nil
		}
		if o := s.otherNodes(seg[1]); len(o) == 1 {
			return 200, o[0], nil
		}
		return 0, nil, errStatus(404, "Object Not Found")
	case "vhosts":
		return s.vhosts(u, r, seg[1:])
	case "users":
		return s.users(u, r, seg[1:])
	case "permissions":
		return s.permissions(u, r, seg[1:])
	case "policies":
		return s.policies(u, r, seg[1:])
	case "queues":
		return s.queues(u, r, seg[1:])
	case "exchanges":
		return s.exchanges(u, r, seg[1:])
	case "bindings":
		return s.bindings(u, r, seg[1:])
	case "connections":
		return s.connections(u, r, seg[1:])
	case "channels":
		return 200, s.channelList(u), nil
	case "consumers":
		return 200, s.consumerList(u, seg[1:]), nil
	case "definitions":
		if len(seg) == 2 {
			return s.vhostDefinitions(u, r, seg[1])
		}
		return s.definitions(u, r)
	case "aliveness-test":
		if len(seg) == 2 {
			if s.b.VHost(seg[1]) == nil {
				return 0, nil, errStatus(404, "Object Not Found")
			}
			if !s.hasPerm(u, seg[1]) { // RabbitMQ declares a queue there as the user
				return 0, nil, errStatus(401, "User not authorised to access virtual host")
			}
			return 200, map[string]string{"status": "ok"}, nil
		}
	case "health":
		if len(seg) >= 3 && seg[1] == "checks" {
			switch seg[2] {
			case "alarms", "local-alarms":
				if al := s.b.Alarms(); len(al) > 0 {
					return 503, map[string]any{"status": "failed", "reason": "There are alarms in effect in the cluster", "alarms": al}, nil
				}
				return 200, map[string]string{"status": "ok"}, nil
			case "node-is-quorum-critical":
				code, body := s.quorumCritical()
				return code, body, nil
			case "virtual-hosts", "node-is-mirror-sync-critical":
				return 200, map[string]string{"status": "ok"}, nil
			}
		}
	case "extensions":
		return 200, []any{}, nil
	case "topic-permissions", "parameters", "global-parameters", "operator-policies", "vhost-limits", "user-limits", "federation-links", "shovels":
		return s.unsupportedKind(r, seg)
	case "warren":
		if len(seg) == 2 && seg[1] == "history" {
			if !u.has("monitoring") && !u.control { // node-wide figures
				return 200, []any{}, nil
			}
			return 200, s.rates.snapshot(), nil
		}
		if !u.control {
			return 0, nil, errStatus(404, "node control verbs are served only on the control listener (control.tcp.port), to warrenctl authenticated by the node cookie")
		}
		return s.control(u, r, seg[1:])
	}
	return 0, nil, errStatus(404, "Not Found")
}

func requireAdmin(u user) error {
	if !u.isAdmin() {
		return errStatus(401, "Not administrator user")
	}
	return nil
}

// The access rules follow RabbitMQ's rabbit_mgmt_util:
//   - hasPerm: the user has permissions in the vhost (list_login_vhosts);
//   - canAccessVHost: administrators, or hasPerm (is_authorized_vhost and
//     filter_vhost: what lists of queues, exchanges, bindings, policies
//     show, and who may read a vhost's objects);
//   - vhostVisible: monitoring users and administrators see every vhost
//     in GET /api/vhosts (list_visible_vhosts);
//   - changing objects goes through session, which needs real permissions
//     even for administrators.

func (s *Server) hasPerm(u user, vh string) bool {
	if u.control {
		return true
	}
	m, _ := s.b.Matcher(u.name, vh)
	return m != nil
}

func (s *Server) canAccessVHost(u user, vh string) bool {
	return u.isAdmin() || s.hasPerm(u, vh)
}

func (s *Server) vhostVisible(u user, vh string) bool {
	return u.has("monitoring") || s.hasPerm(u, vh)
}

// requireVHost is RabbitMQ's is_authorized_vhost for a vhost named in the
// path (404 when it does not exist).
func (s *Server) requireVHost(u user, vh string) error {
	if s.b.VHost(vh) == nil {
		return errStatus(404, "Object Not Found")
	}
	if !s.canAccessVHost(u, vh) {
		return errStatus(401, "User not authorised to access virtual host")
	}
	return nil
}

// session returns a vhost view acting for u (warrenctl on the control
// listener gets full permissions).
func (s *Server) session(u user, vh string) (*vhost.Session, error) {
	v := s.b.VHost(vh)
	if v == nil {
		return nil, errStatus(404, "Object Not Found")
	}
	if u.control {
		m, _ := auth.CompilePermission(auth.Permission{Configure: ".*", Write: ".*", Read: ".*"})
		return v.Session(u.name, m), nil
	}
	m, _ := s.b.Matcher(u.name, vh)
	if m == nil {
		return nil, errStatus(401, "Access refused to vhost '%s' for user '%s'", vh, u.name)
	}
	return v.Session(u.name, m), nil
}

// amqpToHTTP maps an AMQP error from the vhost layer to an HTTP status.
func amqpToHTTP(err error) error {
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		return err
	}
	status := 400
	switch ae.Code {
	case amqp.NotFound:
		status = 404
	case amqp.AccessRefused:
		status = 401
	case amqp.PreconditionFailed, amqp.ResourceLocked, amqp.CommandInvalid:
		status = 400
	}
	return errStatus(status, "%s", reasonText(ae.Text))
}

// reasonText drops the reply-code name an AMQP reply text starts with
// ("RESOURCE_LOCKED - cannot ..."), as RabbitMQ's HTTP API does.
func reasonText(t string) string {
	name, rest, ok := strings.Cut(t, " - ")
	if !ok || name == "" || strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != "" {
		return t
	}
	return rest
}

func (s *Server) propose(cmds ...metadata.Command) error {
	for _, c := range cmds {
		if err := s.b.Metadata().Propose(c); err != nil {
			if errors.Is(err, metadata.ErrNotFound) {
				return errStatus(404, "%v", err)
			}
			return errStatus(400, "%v", err)
		}
	}
	return nil
}

// ---- overview and nodes ----

func (s *Server) totals() (qs, msgs, ready, unacked, consumers, exchanges int) {
	for _, vn := range s.b.VHostNames() {
		v := s.b.VHost(vn)
		if v == nil {
			continue
		}
		for _, q := range v.Queues() {
			r, un, c := q.Counts()
			qs++
			ready += r
			unacked += un
			consumers += c
		}
		exchanges += len(v.Exchanges())
	}
	return qs, ready + unacked, ready, unacked, consumers, exchanges
}

func (s *Server) overview() map[string]any {
	qs, msgs, ready, unacked, consumers, exchanges := s.totals()
	conns := s.b.Connections()
	chans := 0
	for _, c := range conns {
		chans += c.Info().Channels
	}
	cfg := s.b.Config()
	listeners := s.listeners()
	rt := s.rates.snapshot()
	return map[string]any{
		"management_version": broker.Version,
		"rabbitmq_version":   RabbitMQVersion,
		"product_name":       "Warren",
		"product_version":    broker.Version,
		"erlang_version":     runtime.Version(),
		"exchange_types":     exchangeTypes(),
		"rates_mode":         "basic",
		"churn_rates":        s.churnRates(),
		"cluster_name":       cfg.ClusterName,
		"node":               cfg.NodeName,
		"object_totals":      map[string]int{"connections": len(conns), "channels": chans, "exchanges": exchanges, "queues": qs, "consumers": consumers},
		"queue_totals":       map[string]any{"messages": msgs, "messages_ready": ready, "messages_unacknowledged": unacked},
		"message_stats":      rt.messageStats(),
		"listeners":          listeners,
		"contexts":           []any{map[string]any{"node": cfg.NodeName, "description": "RabbitMQ Management", "path": "/", "port": strconv.Itoa(cfg.ManagementPort)}},
		// what RabbitMQ's overview also says about its statistics
		"disable_stats": false, "enable_queue_totals": false, "statistics_db_event_queue": 0,
		"sample_retention_policies": map[string][]int{"global": {600}, "basic": {600}, "detailed": {600}}, // ten minutes of samples
		"erlang_full_version":       runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + " GOMAXPROCS=" + strconv.Itoa(runtime.GOMAXPROCS(0)),
	}
}

// ---- vhosts, users, permissions ----

func (s *Server) vhosts(u user, r *http.Request, seg []string) (int, any, error) {
	switch {
	case len(seg) == 0 && r.Method == http.MethodGet:
		var out []any
		for _, n := range s.b.VHostNames() {
			if s.vhostVisible(u, n) {
				out = append(out, s.vhostJSON(n))
			}
		}
		return 200, nonNil(out), nil
	case len(seg) == 1 && r.Method == http.MethodGet:
		if err := requireAdmin(u); err != nil { // as RabbitMQ 3.10
			return 0, nil, err
		}
		if s.b.VHost(seg[0]) == nil {
			return 0, nil, errStatus(404, "Object Not Found")
		}
		return 200, s.vhostJSON(seg[0]), nil
	case len(seg) == 1 && r.Method == http.MethodPut:
		if err := requireAdmin(u); err != nil {
			return 0, nil, err
		}
		if err := checkName("vhost", seg[0]); err != nil {
			return 0, nil, err
		}
		var body map[string]any // description, tags, tracing: checked as JSON, not kept yet
		if err := decode(r, &body); err != nil {
			return 0, nil, err
		}
		exists := s.b.VHost(seg[0]) != nil
		if err := s.propose(metadata.Command{Op: metadata.OpAddVHost, VHost: seg[0]}); err != nil {
			return 0, nil, err
		}
		if exists {
			return 204, nil, nil
		}
		// as RabbitMQ does, the user who creates a vhost over the API gets
		// full permissions on it (warrenctl, like rabbitmqctl, acts as no
		// user and grants nothing)
		if s.isUser(u.name) {
			p := metadata.Permission{User: u.name, VHost: seg[0], Configure: ".*", Write: ".*", Read: ".*"}
			if err := s.propose(metadata.Command{Op: metadata.OpSetPermissions, Permission: &p}); err != nil {
				return 0, nil, err
			}
		}
		return 201, nil, nil
	case len(seg) == 1 && r.Method == http.MethodDelete:
		if err := requireAdmin(u); err != nil {
			return 0, nil, err
		}
		if s.b.VHost(seg[0]) == nil {
			return 0, nil, errStatus(404, "Object Not Found")
		}
		return 204, nil, s.propose(metadata.Command{Op: metadata.OpDeleteVHost, VHost: seg[0]})
	case len(seg) == 2 && seg[1] == "permissions":
		if err := requireAdmin(u); err != nil {
			return 0, nil, err
		}
		if s.b.VHost(seg[0]) == nil {
			return 0, nil, errStatus(404, "Object Not Found")
		}
		return 200, s.permList(func(p metadata.Permission) bool { return p.VHost == seg[0] }), nil
	}
	return 0, nil, errStatus(405, "Method Not Allowed")
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

func nonNil(x []any) []any {
	if x == nil {
		return []any{}
	}
	return x
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

func (s *Server) users(u user, r *http.Request, seg []string) (int, any, error) {
	if err := requireAdmin(u); err != nil { // even one's own permissions, as RabbitMQ
		return 0, nil, err
	}
	st := s.b.Metadata()
	switch {
	case len(seg) == 0 && r.Method == http.MethodGet:
		var out []any
		st.Read(func(m *metadata.State) {
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
	case len(seg) == 1 && r.Method == http.MethodGet:
		var usr metadata.User
		var ok bool
		st.Read(func(m *metadata.State) { usr, ok = m.Users[seg[0]] })
		if !ok {
			return 0, nil, errStatus(404, "Object Not Found")
		}
		return 200, userJSON(usr), nil
	case len(seg) == 1 && r.Method == http.MethodPut:
		var body map[string]any
		if err := decode(r, &body); err != nil {
			return 0, nil, err
		}
		if !utf8.ValidString(seg[0]) || seg[0] == "" {
			return 0, nil, errStatus(400, "user name must be non-empty UTF-8")
		}
		var existing metadata.User
		var exists bool
		st.Read(func(m *metadata.State) { existing, exists = m.Users[seg[0]] })
		nu := metadata.User{Name: seg[0], HashingAlgorithm: "rabbit_password_hashing_sha256", Tags: tagsFrom(body["tags"])}
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
	case len(seg) == 1 && r.Method == http.MethodDelete:
		if !s.isUser(seg[0]) {
			return 0, nil, errStatus(404, "Object Not Found")
		}
		return 204, nil, s.propose(metadata.Command{Op: metadata.OpDeleteUser, Name: seg[0]})
	case len(seg) == 2 && seg[1] == "permissions":
		return 200, s.permList(func(p metadata.Permission) bool { return p.User == seg[0] }), nil
	}
	return 0, nil, errStatus(405, "Method Not Allowed")
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

func (s *Server) permissions(u user, r *http.Request, seg []string) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	switch {
	case len(seg) == 0 && r.Method == http.MethodGet:
		return 200, s.permList(func(metadata.Permission) bool { return true }), nil
	case len(seg) == 2 && r.Method == http.MethodGet:
		ps := s.permList(func(p metadata.Permission) bool { return p.VHost == seg[0] && p.User == seg[1] })
		if len(ps) == 0 {
			return 0, nil, errStatus(404, "Object Not Found")
		}
		return 200, ps[0], nil
	case len(seg) == 2 && r.Method == http.MethodPut:
		var p metadata.Permission
		if err := decode(r, &p); err != nil {
			return 0, nil, err
		}
		p.VHost, p.User = seg[0], seg[1]
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
	case len(seg) == 2 && r.Method == http.MethodDelete:
		if len(s.permList(func(x metadata.Permission) bool { return x.VHost == seg[0] && x.User == seg[1] })) == 0 {
			return 0, nil, errStatus(404, "Object Not Found")
		}
		return 204, nil, s.propose(metadata.Command{Op: metadata.OpClearPermissions, VHost: seg[0], Name: seg[1]})
	}
	return 0, nil, errStatus(405, "Method Not Allowed")
}

// ---- policies ----

// ValidatePolicy checks a policy definition as RabbitMQ does.
func ValidatePolicy(def map[string]any) error {
	if err := vhost.ValidateHAPolicy(def); err != nil {
		return fmt.Errorf("Validation failed\n\n%w", err)
	}
	var unknown []string
	for k, v := range def {
		switch k {
		case "ha-mode", "ha-params", "ha-sync-mode", "ha-promote-on-shutdown", "ha-promote-on-failure", "ha-sync-batch-size":
			// checked by vhost.ValidateHAPolicy above
		case "message-ttl", "max-length", "max-length-bytes", "delivery-limit":
			if n, ok := v2int(v); !ok || n < 0 {
				return fmt.Errorf("%s must be a non-negative integer, got %v", k, v)
			}
		case "expires":
			if n, ok := v2int(v); !ok || n < 1 {
				return fmt.Errorf("expires must be a positive integer, got %v", v)
			}
		case "overflow":
			if v != "drop-head" && v != "reject-publish" && v != "reject-publish-dlx" {
				return fmt.Errorf("overflow %v is not drop-head, reject-publish or reject-publish-dlx", v)
			}
		case "dead-letter-exchange", "dead-letter-routing-key", "alternate-exchange", "queue-mode", "queue-master-locator":
			if _, ok := v.(string); !ok {
				return fmt.Errorf("%s must be a string", k)
			}
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("Validation failed\n\n%s are not recognised", strings.Join(unknown, ", "))
	}
	return nil
}

func v2int(v any) (int64, bool) {
	switch x := v.(type) {
	case float64: // whole and within int64 (conversion out of range is undefined)
		if x != math.Trunc(x) || x < -(1<<63) || x >= 1<<63 {
			return 0, false
		}
		return int64(x), true
	case int:
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

func (s *Server) policyList(u user, vh string) []any {
	var ps []metadata.Policy
	s.b.Metadata().Read(func(m *metadata.State) {
		for _, p := range m.Policies {
			if (vh == "" || p.VHost == vh) && s.canAccessVHost(u, p.VHost) {
				ps = append(ps, p)
			}
		}
	})
	sort.Slice(ps, func(i, j int) bool { return ps[i].VHost+"\x00"+ps[i].Name < ps[j].VHost+"\x00"+ps[j].Name })
	out := []any{}
	for _, p := range ps {
		out = append(out, p)
	}
	return out
}

func (s *Server) policies(u user, r *http.Request, seg []string) (int, any, error) {
	if r.Method == http.MethodGet {
		switch len(seg) {
		case 0:
			return 200, s.policyList(u, ""), nil
		case 1:
			if err := s.requireVHost(u, seg[0]); err != nil {
				return 0, nil, err
			}
			return 200, s.policyList(u, seg[0]), nil
		}
	}
	if len(seg) != 2 {
		return 0, nil, errStatus(405, "Method Not Allowed")
	}
	// RabbitMQ's is_authorized_policies: administrators, or policymakers
	// with access to the vhost; the same for reading one policy.
	if !(u.isAdmin() || (u.has("policymaker") && s.hasPerm(u, seg[0]))) {
		return 0, nil, errStatus(401, "User not authorised to access object")
	}
	switch r.Method {
	case http.MethodGet:
		for _, p := range s.policyList(u, seg[0]) {
			if p.(metadata.Policy).Name == seg[1] {
				return 200, p, nil
			}
		}
		return 0, nil, errStatus(404, "Object Not Found")
	case http.MethodPut:
		var p metadata.Policy
		if err := decode(r, &p); err != nil {
			return 0, nil, err
		}
		p.VHost, p.Name = seg[0], seg[1]
		if p.ApplyTo == "" {
			p.ApplyTo = "all"
		}
		if p.ApplyTo != "all" && p.ApplyTo != "queues" && p.ApplyTo != "exchanges" {
			return 0, nil, errStatus(400, "apply-to %q is not all, queues or exchanges", p.ApplyTo)
		}
		if _, err := regexp.Compile(p.Pattern); err != nil {
			return 0, nil, errStatus(400, "invalid pattern %q: %v", p.Pattern, err)
		}
		if p.Definition == nil {
			return 0, nil, errStatus(400, "definition must be a JSON object")
		}
		if err := ValidatePolicy(p.Definition); err != nil {
			return 0, nil, errStatus(400, "%v", err)
		}
		if s.b.VHost(p.VHost) == nil {
			return 0, nil, errStatus(404, "vhost %q not found", p.VHost)
		}
		exists := s.policyExists(p.VHost, p.Name)
		if err := s.propose(metadata.Command{Op: metadata.OpSetPolicy, Policy: &p}); err != nil {
			return 0, nil, err
		}
		if exists {
			return 204, nil, nil
		}
		return 201, nil, nil
	case http.MethodDelete:
		if !s.policyExists(seg[0], seg[1]) {
			return 0, nil, errStatus(404, "Object Not Found")
		}
		return 204, nil, s.propose(metadata.Command{Op: metadata.OpClearPolicy, VHost: seg[0], Name: seg[1]})
	}
	return 0, nil, errStatus(405, "Method Not Allowed")
}

// ---- queues ----

func (s *Server) queueJSON(vh string, q *queue.Queue) map[string]any {
	c := q.Config()
	ready, unacked, consumers := q.Counts()
	ram, ramBytes := q.InMemory()
	readyBytes := q.ReadyBytes()
	st := q.Stats()
	args := c.Args
	if args == nil {
		args = map[string]any{}
	}
	var policy any
	if c.Policy != nil {
		policy = c.Policy
	}
	var policyName any
	node := s.b.Config().NodeName
	if v := s.b.VHost(vh); v != nil {
		if n := v.AppliedPolicy(c.Name, "queues"); n != "" {
			policyName = n
		}
		if home, ok := v.RemoteHome(c.Name); ok {
			node = home // its figures live there (not gathered across nodes yet)
		}
	}
	qtype := "classic"
	var def metadata.Queue
	s.b.Metadata().Read(func(st *metadata.State) { def = st.Queues[[2]string{vh, c.Name}] })
	rs, replicated := s.b.Replica(def)
	if metadata.IsQuorumQueue(c.Args) {
		qtype = "quorum"
	}
	out := map[string]any{
		"policy": policyName, "operator_policy": nil,
		"name": c.Name, "vhost": vh, "durable": c.Durable, "auto_delete": c.AutoDelete, "exclusive": c.Exclusive,
		"arguments": args, "node": node, "state": "running", "type": qtype,
		"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked,
		"consumers": consumers, "message_bytes_ready": readyBytes, "effective_policy_definition": policy,
		// RabbitMQ's classic-queue paging figures
		"messages_ready_ram": ram, "message_bytes_ram": ramBytes,
		"messages_paged_out": ready - ram, "message_bytes_paged_out": int64(readyBytes) - ramBytes,
		"message_stats": map[string]any{"publish": st.Published, "deliver_get": st.Delivered, "ack": st.Acked, "redeliver": st.Redelivered},
	}
	if replicated {
		// RabbitMQ's quorum queue fields: the leader is the queue's node
		if rs.Leader != "" {
			out["leader"], out["node"] = rs.Leader, rs.Leader
		} else {
			out["leader"] = nil
		}
		out["members"], out["online"] = nodeList(rs.Members), nodeList(rs.Online)
		if qtype == "classic" {
			// a classic queue mirrored by an ha-mode policy: RabbitMQ's
			// mirroring fields. A member counts as synchronised while it
			// is online (Raft brings a returning member up to date before
			// it can vote; per-member progress is not exposed yet).
			var slaves, synced []string
			for _, m := range rs.Members {
				if m == rs.Leader {
					continue
				}
				slaves = append(slaves, m)
				if slices.Contains(rs.Online, m) {
					synced = append(synced, m)
				}
			}
			out["slave_nodes"], out["synchronised_slave_nodes"] = nodeList(slaves), nodeList(synced)
		}
	}
	return out
}

func nodeList(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// page applies RabbitMQ's pagination and filtering (page, page_size, name,
// use_regex) and returns either the list or a page object.
func page(r *http.Request, items []map[string]any) (any, error) {
	q := r.URL.Query()
	if name := q.Get("name"); name != "" {
		var re *regexp.Regexp
		if q.Get("use_regex") == "true" {
			var err error
			if re, err = regexp.Compile(name); err != nil {
				return nil, errStatus(400, "invalid regex %q", name)
			}
		}
		kept := items[:0]
		for _, it := range items {
			n, _ := it["name"].(string)
			if (re != nil && re.MatchString(n)) || (re == nil && strings.Contains(n, name)) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	if q.Get("page") == "" {
		return items, nil
	}
	// RabbitMQ's rabbit_mgmt_util pagination checks and answers.
	pg, err1 := strconv.ParseInt(q.Get("page"), 10, 64)
	size, sizeStr := int64(100), "undefined"
	if ps := q.Get("page_size"); ps != "" {
		var err error
		if size, err = strconv.ParseInt(ps, 10, 64); err != nil {
			return nil, &apiError{status: 400, reason: "Pagination parameters are invalid"}
		}
		sizeStr = ps
	}
	if err1 != nil {
		return nil, &apiError{status: 400, reason: "Pagination parameters are invalid"}
	}
	if pg < 1 || size < 1 || size > 500 {
		return nil, &apiError{status: 400, code: "invalid_pagination_parameters", reason: fmt.Sprintf("Invalid pagination parameters: page number %d, page size %s", pg, sizeStr)}
	}
	total := len(items)
	if pg > 1 && (pg-1) >= (int64(total)+size-1)/size {
		return nil, &apiError{status: 400, code: "page_out_of_range", reason: fmt.Sprintf("Page out of range, page: %d page size: %d, len: %d", pg, size, total)}
	}
	start := int((pg - 1) * size) // < total here, so no overflow
	end := min(start+int(size), total)
	return map[string]any{"items": items[start:end], "page": pg, "page_size": size, "page_count": (int64(total) + size - 1) / size,
		"filtered_count": total, "item_count": end - start, "total_count": total}, nil
}

// listPerVHost lists objects of every vhost the user may see (or the one
// in seg), sorted by vhost and name, with pagination and filtering.
func (s *Server) listPerVHost(u user, r *http.Request, seg []string, list func(string, *vhost.VHost) []map[string]any) (int, any, error) {
	if len(seg) == 1 {
		if err := s.requireVHost(u, seg[0]); err != nil {
			return 0, nil, err
		}
	}
	items := []map[string]any{}
	for _, vn := range s.b.VHostNames() {
		if (len(seg) == 1 && vn != seg[0]) || !s.canAccessVHost(u, vn) {
			continue
		}
		if v := s.b.VHost(vn); v != nil {
			items = append(items, list(vn, v)...)
		}
	}
	sort.Slice(items, func(i, j int) bool {
		return items[i]["vhost"].(string)+"\x00"+items[i]["name"].(string) < items[j]["vhost"].(string)+"\x00"+items[j]["name"].(string)
	})
	out, err := page(r, items)
	return 200, out, err
}

func (s *Server) queues(u user, r *http.Request, seg []string) (int, any, error) {
	if len(seg) <= 1 && r.Method == http.MethodGet {
		return s.listPerVHost(u, r, seg, func(vn string, v *vhost.VHost) (items []map[string]any) {
			for _, q := range v.Queues() {
				items = append(items, s.queueJSON(vn, q))
			}
			return items
		})
	}
	if len(seg) < 2 {
		return 0, nil, errStatus(405, "Method Not Allowed")
	}
	vh, name := seg[0], seg[1]
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	// reading needs access to the vhost; changing needs permissions there
	sess, serr := s.session(u, vh)
	v := s.b.VHost(vh)
	if len(seg) == 2 {
		switch r.Method {
		case http.MethodGet:
			q := v.LookupQueue(name)
			if q == nil {
				return 0, nil, errStatus(404, "Object Not Found")
			}
			return 200, s.queueJSON(vh, q), nil
		case http.MethodPut:
			var body struct {
				Durable    *flexBool      `json:"durable"`
				AutoDelete flexBool       `json:"auto_delete"`
				Arguments  map[string]any `json:"arguments"`
			}
			if err := decode(r, &body); err != nil {
				return 0, nil, err
			}
			if serr != nil {
				return 0, nil, serr
			}
			if err := checkName("queue", name); err != nil {
				return 0, nil, err
			}
			durable := true
			if body.Durable != nil {
				durable = bool(*body.Durable)
			}
			existed := v.LookupQueue(name) != nil
			_, _, _, err := sess.DeclareQueue(&amqp.QueueDeclare{Queue: name, Durable: durable, AutoDelete: bool(body.AutoDelete), Arguments: jsonArgs(body.Arguments)}, 0)
			if err != nil {
				return 0, nil, amqpToHTTP(err)
			}
			if existed {
				return 204, nil, nil
			}
			return 201, nil, nil
		case http.MethodDelete:
			if v.LookupQueue(name) == nil {
				return 0, nil, errStatus(404, "Object Not Found")
			}
			if serr != nil {
				return 0, nil, serr
			}
			q := r.URL.Query()
			_, err := sess.DeleteQueue(&amqp.QueueDelete{Queue: name, IfEmpty: q.Get("if-empty") == "true", IfUnused: q.Get("if-unused") == "true"}, httpOwner)
			return 204, nil, amqpToHTTP(err)
		}
		return 0, nil, errStatus(405, "Method Not Allowed")
	}
	switch seg[2] {
	case "contents":
		if r.Method != http.MethodDelete {
			return 0, nil, errStatus(405, "Method Not Allowed")
		}
		if serr != nil {
			return 0, nil, serr
		}
		_, err := sess.PurgeQueue(&amqp.QueuePurge{Queue: name}, httpOwner)
		return 204, nil, amqpToHTTP(err)
	case "bindings":
		return 200, s.bindingList(vh, func(b metadata.Binding) bool { return b.DestinationType == "queue" && b.Destination == name }, name), nil
	case "get":
		if serr != nil {
			return 0, nil, serr
		}
		return s.getMessages(sess, v, name, r)
	}
	return 0, nil, errStatus(404, "Not Found")
}

// httpOwner is the connection id HTTP requests act as: none. An exclusive
// queue belongs to its AMQP connection, so the HTTP API gets 405
// RESOURCE_LOCKED on it like any other connection (RabbitMQ answers 400
// with that reason).
const httpOwner uint64 = 0

// checkName refuses what AMQP cannot carry: a short string is at most 255
// bytes (RabbitMQ answers 400 with this text for queue names; Warren also
// for exchange and vhost names and routing keys, which would otherwise
// break the AMQP stream when delivered), and names must be valid UTF-8
// (the definitions log and JSON would change them).
func checkName(kind, name string) error {
	if len(name) > 255 {
		return errStatus(400, "%s should be less than 255 bytes, actually was %d", kind, len(name))
	}
	if !utf8.ValidString(name) {
		return errStatus(400, "%s is not valid UTF-8", kind)
	}
	return nil
}

// jsonArgs turns JSON numbers into AMQP-typed integers where whole.
func jsonArgs(a map[string]any) amqp.Table {
	if a == nil {
		return nil
	}
	t := amqp.Table{}
	for k, v := range a {
		if f, ok := v.(float64); ok && f == float64(int64(f)) {
			t[k] = int64(f)
			continue
		}
		t[k] = v
	}
	return t
}

func (s *Server) getMessages(sess *vhost.Session, v *vhost.VHost, name string, r *http.Request) (int, any, error) {
	if r.Method != http.MethodPost {
		return 0, nil, errStatus(405, "Method Not Allowed")
	}
	var body struct {
		Count    flexInt `json:"count"`
		AckMode  string  `json:"ackmode"`
		Encoding string  `json:"encoding"`
		Truncate flexInt `json:"truncate"`
	}
	if err := decode(r, &body); err != nil {
		return 0, nil, err
	}
	if body.AckMode == "" {
		return 0, nil, errStatus(400, "ackmode must be ack_requeue_true, ack_requeue_false, reject_requeue_true or reject_requeue_false")
	}
	if body.Count <= 0 {
		body.Count = 1
	}
	q, err := sess.Queue(name, httpOwner)
	if err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.ResourceLocked { // RabbitMQ's text for get
			return 0, nil, errStatus(400, "405 RESOURCE_LOCKED - %s", reasonText(ae.Text))
		}
		return 0, nil, amqpToHTTP(err)
	}
	out := []any{}
	var taken []uint64
	for i := 0; i < int(body.Count); i++ {
		d, ok := q.Get(false)
		if !ok {
			break
		}
		taken = append(taken, d.ID)
		payload, enc := string(d.Msg.Body), "string"
		if body.Encoding == "base64" || !utf8.Valid(d.Msg.Body) {
			payload, enc = base64.StdEncoding.EncodeToString(d.Msg.Body), "base64"
		}
		if body.Truncate > 0 && len(payload) > int(body.Truncate) {
			payload = payload[:body.Truncate]
		}
		props := map[string]any{}
		if p, err := amqp.DecodeProperties(d.Msg.Props); err == nil {
			props = propsJSON(p)
		}
		out = append(out, map[string]any{"payload_bytes": len(d.Msg.Body), "redelivered": d.Redelivered, "exchange": d.Msg.Exchange,
			"routing_key": d.Msg.RoutingKey, "message_count": d.Remaining, "properties": props, "payload": payload, "payload_encoding": enc})
	}
	switch body.AckMode {
	case "ack_requeue_false":
		q.Ack(taken...)
	case "reject_requeue_false":
		q.Discard(taken...)
	default:
		q.Requeue(taken...)
	}
	return 200, out, nil
}

func propsJSON(p amqp.Properties) map[string]any {
	m := map[string]any{}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set("content_type", p.ContentType)
	set("content_encoding", p.ContentEncoding)
	set("correlation_id", p.CorrelationID)
	set("reply_to", p.ReplyTo)
	set("expiration", p.Expiration)
	set("message_id", p.MessageID)
	set("type", p.Type)
	set("user_id", p.UserID)
	set("app_id", p.AppID)
	if p.DeliveryMode != 0 {
		m["delivery_mode"] = p.DeliveryMode
	}
	if p.Priority != 0 {
		m["priority"] = p.Priority
	}
	if !p.Timestamp.IsZero() {
		m["timestamp"] = p.Timestamp.Unix()
	}
	if p.Headers != nil {
		m["headers"] = jsonable(p.Headers)
	}
	return m
}

func jsonable(v any) any {
	switch x := v.(type) {
	case amqp.Table:
		o := map[string]any{}
		for k, e := range x {
			o[k] = jsonable(e)
		}
		return o
	case []any:
		o := make([]any, len(x))
		for i := range x {
			o[i] = jsonable(x[i])
		}
		return o
	case []byte:
		return string(x)
	case time.Time:
		return x.Unix()
	case amqp.Decimal:
		return fmt.Sprintf("%d/10^%d", x.Value, x.Scale)
	}
	return v
}

// ---- exchanges and bindings ----

func (s *Server) exchangeJSON(vh string, x *vhost.Exchange) map[string]any {
	args := x.Def.Arguments
	if args == nil {
		args = map[string]any{}
	}
	out := map[string]any{"name": x.Def.Name, "vhost": vh, "type": x.Def.Type, "durable": x.Def.Durable,
		"auto_delete": x.Def.AutoDelete, "internal": x.Def.Internal, "arguments": args, "user_who_performed_action": "rmq-internal"}
	// like RabbitMQ, "policy" is present only when one applies
	if v := s.b.VHost(vh); v != nil {
		if n := v.AppliedPolicy(x.Def.Name, "exchanges"); n != "" {
			out["policy"] = n
		}
	}
	return out
}

func (s *Server) exchanges(u user, r *http.Request, seg []string) (int, any, error) {
	if len(seg) <= 1 && r.Method == http.MethodGet {
		return s.listPerVHost(u, r, seg, func(vn string, v *vhost.VHost) (items []map[string]any) {
			for _, x := range v.Exchanges() {
				items = append(items, s.exchangeJSON(vn, x))
			}
			return items
		})
	}
	if len(seg) < 2 {
		return 0, nil, errStatus(405, "Method Not Allowed")
	}
	vh, name := seg[0], seg[1]
	if name == "amq.default" {
		name = ""
	}
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	// reading needs access to the vhost; changing needs permissions there
	sess, serr := s.session(u, vh)
	v := s.b.VHost(vh)
	find := func() *vhost.Exchange {
		for _, x := range v.Exchanges() {
			if x.Def.Name == name {
				return x
			}
		}
		return nil
	}
	if len(seg) == 2 {
		switch r.Method {
		case http.MethodGet:
			x := find()
			if x == nil {
				return 0, nil, errStatus(404, "Object Not Found")
			}
			return 200, s.exchangeJSON(vh, x), nil
		case http.MethodPut:
			var body struct {
				Type       string         `json:"type"`
				Durable    *flexBool      `json:"durable"`
				AutoDelete flexBool       `json:"auto_delete"`
				Internal   flexBool       `json:"internal"`
				Arguments  map[string]any `json:"arguments"`
			}
			if err := decode(r, &body); err != nil {
				return 0, nil, err
			}
			if serr != nil {
				return 0, nil, serr
			}
			if err := checkName("exchange", name); err != nil {
				return 0, nil, err
			}
			durable := true
			if body.Durable != nil {
				durable = bool(*body.Durable)
			}
			existed := find() != nil
			err := sess.DeclareExchange(&amqp.ExchangeDeclare{Exchange: name, Type: body.Type, Durable: durable, AutoDelete: bool(body.AutoDelete), Internal: bool(body.Internal), Arguments: jsonArgs(body.Arguments)})
			if err != nil {
				return 0, nil, amqpToHTTP(err)
			}
			if existed {
				return 204, nil, nil
			}
			return 201, nil, nil
		case http.MethodDelete:
			if find() == nil {
				return 0, nil, errStatus(404, "Object Not Found")
			}
			if serr != nil {
				return 0, nil, serr
			}
			return 204, nil, amqpToHTTP(sess.DeleteExchange(&amqp.ExchangeDelete{Exchange: name, IfUnused: r.URL.Query().Get("if-unused") == "true"}))
		}
		return 0, nil, errStatus(405, "Method Not Allowed")
	}
	switch seg[2] {
	case "publish":
		if r.Method != http.MethodPost {
			return 0, nil, errStatus(405, "Method Not Allowed")
		}
		var body struct {
			Properties      map[string]any `json:"properties"`
			RoutingKey      string         `json:"routing_key"`
			Payload         string         `json:"payload"`
			PayloadEncoding string         `json:"payload_encoding"`
		}
		if err := decode(r, &body); err != nil {
			return 0, nil, err
		}
		if serr != nil {
			return 0, nil, serr
		}
		if err := checkName("routing_key", body.RoutingKey); err != nil {
			return 0, nil, err
		}
		payload := []byte(body.Payload)
		if body.PayloadEncoding == "base64" {
			var err error
			if payload, err = base64.StdEncoding.DecodeString(body.Payload); err != nil {
				return 0, nil, errStatus(400, "payload is not valid base64")
			}
		}
		if max := s.b.Config().MaxMessageSize; max > 0 && len(payload) > max {
			return 0, nil, errStatus(400, "message size %d is larger than configured max size %d", len(payload), max)
		}
		if err := checkPublishProps(u, body.Properties); err != nil {
			return 0, nil, err
		}
		p := propsFromJSON(body.Properties)
		raw, err := p.Append(nil)
		if err != nil {
			return 0, nil, errStatus(400, "%v", err)
		}
		msg := &queue.Message{Exchange: name, RoutingKey: body.RoutingKey, Props: raw, Body: payload, Persistent: p.DeliveryMode == 2, Priority: p.Priority}
		if p.Expiration != "" {
			if ms, err := strconv.ParseInt(p.Expiration, 10, 64); err == nil && ms >= 0 {
				msg.Expiration, msg.HasExpiration = ms, true
			}
		}
		res, err := sess.Publish(name, body.RoutingKey, msg)
		if err != nil {
			return 0, nil, amqpToHTTP(err)
		}
		return 200, map[string]bool{"routed": res.Queues > 0}, nil
	case "bindings":
		if len(seg) == 4 && seg[3] == "source" {
			return 200, s.bindingList(vh, func(b metadata.Binding) bool { return b.Source == name }, ""), nil
		}
		if len(seg) == 4 && seg[3] == "destination" {
			return 200, s.bindingList(vh, func(b metadata.Binding) bool { return b.DestinationType == "exchange" && b.Destination == name }, ""), nil
		}
	}
	return 0, nil, errStatus(404, "Not Found")
}

func propsFromJSON(m map[string]any) amqp.Properties {
	var p amqp.Properties
	str := func(k string) string { s, _ := m[k].(string); return s }
	p.ContentType, p.ContentEncoding = str("content_type"), str("content_encoding")
	p.CorrelationID, p.ReplyTo, p.Expiration = str("correlation_id"), str("reply_to"), str("expiration")
	p.MessageID, p.Type, p.UserID, p.AppID = str("message_id"), str("type"), str("user_id"), str("app_id")
	if n, ok := v2int(m["delivery_mode"]); ok {
		p.DeliveryMode = uint8(n)
	}
	if n, ok := v2int(m["priority"]); ok {
		p.Priority = uint8(n)
	}
	if n, ok := v2int(m["timestamp"]); ok {
		p.Timestamp = time.Unix(n, 0)
	}
	if h, ok := m["headers"].(map[string]any); ok {
		p.Headers = jsonArgs(h)
	}
	return p
}

func (s *Server) bindingList(vh string, keep func(metadata.Binding) bool, implicitQueue string) []any {
	var bs []metadata.Binding
	s.b.Metadata().Read(func(m *metadata.State) {
		for _, b := range m.Bindings {
			if (vh == "" || b.VHost == vh) && keep(b) {
				bs = append(bs, b)
			}
		}
	})
	sort.Slice(bs, func(i, j int) bool { return metadata.BindingKey(bs[i]) < metadata.BindingKey(bs[j]) })
	out := []any{}
	if implicitQueue != "" {
		out = append(out, bindingJSON(metadata.Binding{Source: "", VHost: vh, Destination: implicitQueue, DestinationType: "queue", RoutingKey: implicitQueue}))
	}
	for _, b := range bs {
		out = append(out, bindingJSON(b))
	}
	return out
}

func bindingJSON(b metadata.Binding) map[string]any {
	args := b.Arguments
	if args == nil {
		args = map[string]any{}
	}
	pk := packPropertiesKey(b.RoutingKey)
	return map[string]any{"source": b.Source, "vhost": b.VHost, "destination": b.Destination, "destination_type": b.DestinationType,
		"routing_key": b.RoutingKey, "arguments": args, "properties_key": pk}
}

func (s *Server) bindings(u user, r *http.Request, seg []string) (int, any, error) {
	if r.Method == http.MethodGet && len(seg) <= 1 {
		vh := ""
		if len(seg) == 1 {
			vh = seg[0]
			if err := s.requireVHost(u, vh); err != nil {
				return 0, nil, err
			}
		}
		// the default exchange's implicit bindings first, as RabbitMQ lists them
		out := s.defaultBindings(u, vh)
		out = append(out, s.bindingList(vh, func(b metadata.Binding) bool { return s.canAccessVHost(u, b.VHost) }, "")...)
		return 200, out, nil
	}
	// /api/bindings/vhost/e/source/{q|e}/dest[/props]
	if len(seg) < 5 || seg[1] != "e" || (seg[3] != "q" && seg[3] != "e") {
		return 0, nil, errStatus(404, "Not Found")
	}
	vh, src, dst, isX := seg[0], seg[2], seg[4], seg[3] == "e"
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	// reading needs access to the vhost; changing needs permissions there
	sess, serr := s.session(u, vh)
	var err error
	switch {
	case len(seg) == 5 && r.Method == http.MethodGet:
		dt := "queue"
		if isX {
			dt = "exchange"
		}
		return 200, s.bindingList(vh, func(b metadata.Binding) bool {
			return b.Source == src && b.Destination == dst && b.DestinationType == dt
		}, ""), nil
	case len(seg) == 5 && r.Method == http.MethodPost:
		var body struct {
			RoutingKey string         `json:"routing_key"`
			Arguments  map[string]any `json:"arguments"`
		}
		if err := decode(r, &body); err != nil {
			return 0, nil, err
		}
		if serr != nil {
			return 0, nil, serr
		}
		if err := checkName("routing_key", body.RoutingKey); err != nil {
			return 0, nil, err
		}
		if isX {
			err = sess.BindExchange(&amqp.ExchangeBind{Destination: dst, Source: src, RoutingKey: body.RoutingKey, Arguments: jsonArgs(body.Arguments)})
		} else {
			err = sess.BindQueue(&amqp.QueueBind{Queue: dst, Exchange: src, RoutingKey: body.RoutingKey, Arguments: jsonArgs(body.Arguments)}, httpOwner)
		}
		if err != nil {
			return 0, nil, amqpToHTTP(err)
		}
		return 201, nil, nil
	case len(seg) == 6 && r.Method == http.MethodDelete:
		key := unpackPropertiesKey(seg[5])
		dt := "queue"
		if isX {
			dt = "exchange"
		}
		// the binding as stored: unbinding needs its arguments too (a
		// binding made with "arguments": {} is not the one made without)
		found, ok := s.findBinding(vh, src, dst, dt, key)
		if !ok {
			return 0, nil, errStatus(404, "Object Not Found")
		}
		var args amqp.Table
		if found.Arguments != nil {
			args = amqp.Table(found.Arguments)
		}
		if serr != nil {
			return 0, nil, serr
		}
		if isX {
			err = sess.UnbindExchange(&amqp.ExchangeUnbind{Destination: dst, Source: src, RoutingKey: key, Arguments: args})
		} else {
			err = sess.UnbindQueue(&amqp.QueueUnbind{Queue: dst, Exchange: src, RoutingKey: key, Arguments: args}, httpOwner)
		}
		return 204, nil, amqpToHTTP(err)
	}
	return 0, nil, errStatus(405, "Method Not Allowed")
}

// ---- connections, channels, consumers ----

func (s *Server) connections(u user, r *http.Request, seg []string) (int, any, error) {
	conns := s.b.Connections()
	var items []map[string]any
	for _, c := range conns {
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
	switch {
	case len(seg) == 0 && r.Method == http.MethodGet:
		out, err := page(r, items)
		return 200, out, err
	case len(seg) == 2 && seg[1] == "channels" && r.Method == http.MethodGet:
		for _, it := range items {
			if it["name"] == seg[0] {
				out := []any{}
				for _, ch := range s.channelList(u) {
					if ch.(map[string]any)["connection_details"].(map[string]any)["name"] == seg[0] {
						out = append(out, ch)
					}
				}
				return 200, out, nil
			}
		}
		return 0, nil, errStatus(404, "Object Not Found")
	case len(seg) == 1:
		for _, c := range conns {
			in := c.Info()
			if in.Name != seg[0] {
				continue
			}
			if r.Method == http.MethodDelete {
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
			for _, it := range items {
				if it["name"] == in.Name {
					return 200, it, nil
				}
			}
		}
		return 0, nil, errStatus(404, "Object Not Found")
	}
	return 0, nil, errStatus(405, "Method Not Allowed")
}

func splitHostPort(a string) (string, int) {
	i := strings.LastIndex(a, ":")
	if i < 0 {
		return a, 0
	}
	p, _ := strconv.Atoi(a[i+1:])
	return strings.Trim(a[:i], "[]"), p
}

func (s *Server) channelList(u user) []any {
	out := []any{}
	for _, c := range s.b.Connections() {
		in := c.Info()
		if !u.has("monitoring") && in.User != u.name {
			continue
		}
		for _, ch := range c.ChannelInfos() {
			out = append(out, map[string]any{
				"name": fmt.Sprintf("%s (%d)", in.Name, ch.Number), "number": ch.Number, "user": in.User, "vhost": in.VHost,
				"node": s.b.Config().NodeName, "consumer_count": ch.Consumers, "messages_unacknowledged": ch.Unacked,
				"prefetch_count": 0, "global_prefetch_count": ch.PrefetchGlobal, "state": "running",
				"user_who_performed_action": in.User,
				"connection_details":        connectionDetails(in.Name, in.Peer),
			})
		}
	}
	return out
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

// ---- definitions ----

func (s *Server) definitions(u user, r *http.Request) (int, any, error) {
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	switch r.Method {
	case http.MethodGet:
		d := s.b.Metadata().Export()
		d.RabbitVersion, d.RabbitMQVer, d.ProductName, d.ProductVer = RabbitMQVersion, RabbitMQVersion, "Warren", broker.Version
		return 200, d, nil
	case http.MethodPost:
		d, err := decodeDefinitions(r)
		if err != nil {
			return 0, nil, err
		}
		if err := s.importDefinitions(d); err != nil {
			return 0, nil, err
		}
		return 204, nil, nil
	}
	return 0, nil, errStatus(405, "Method Not Allowed")
}

// control serves warrenctl's node-level verbs under /api/warren/.
func (s *Server) control(u user, r *http.Request, seg []string) (int, any, error) {
	if len(seg) != 1 {
		return 0, nil, errStatus(404, "Not Found")
	}
	if err := requireAdmin(u); err != nil {
		return 0, nil, err
	}
	cfg := s.b.Config()
	switch seg[0] {
	case "status":
		n := s.node()
		n["running_applications"] = map[bool][]string{true: {"warren"}, false: {}}[s.b.Running()]
		n["listeners"] = s.overview()["listeners"]
		n["data_directory"] = cfg.DataDir
		n["config_files"] = []string{cfg.ConfigFile}
		n["version"] = broker.Version
		n["vm_memory_high_watermark"] = cfg.VMMemoryHighWatermark
		n["disk_free_limit"] = cfg.DiskFreeLimit
		s.statusExtras(n)
		return 200, n, nil
	case "stop_app":
		if r.Method != http.MethodPost {
			return 0, nil, errStatus(405, "Method Not Allowed")
		}
		s.b.StopApp()
		return 204, nil, nil
	case "start_app":
		if r.Method != http.MethodPost {
			return 0, nil, errStatus(405, "Method Not Allowed")
		}
		restarting := s.b.RestartPending()
		if err := s.b.StartApp(); err != nil {
			return 0, nil, errStatus(500, "%v", err)
		}
		if restarting {
			// a membership change: the broker restarts from its data
			// directory; warrenctl waits for it
			return 200, map[string]any{"restarting": true}, nil
		}
		return 204, nil, nil
	case "join_cluster", "reset", "forget_cluster_node":
		if r.Method != http.MethodPost {
			return 0, nil, errStatus(405, "Method Not Allowed")
		}
		return s.membership(r, seg[0])
	case "vm_memory_high_watermark":
		var body struct {
			Fraction float64 `json:"fraction"`
		}
		if err := decode(r, &body); err != nil {
			return 0, nil, err
		}
		if body.Fraction < 0 || body.Fraction > 1 {
			return 0, nil, errStatus(400, "vm_memory_high_watermark must be between 0 and 1")
		}
		s.b.SetMemoryHighWatermark(body.Fraction)
		return 204, nil, nil
	case "disk_free_limit":
		var body struct {
			Bytes       *int64   `json:"bytes"`
			MemRelative *float64 `json:"mem_relative"`
		}
		if err := decode(r, &body); err != nil {
			return 0, nil, err
		}
		switch {
		case body.Bytes != nil && *body.Bytes >= 0:
			s.b.SetDiskFreeLimit(*body.Bytes)
		case body.MemRelative != nil && *body.MemRelative > 0 && *body.MemRelative <= 1000 && broker.TotalMemory() > 0:
			s.b.SetDiskFreeLimit(int64(*body.MemRelative * float64(broker.TotalMemory())))
		default:
			return 0, nil, errStatus(400, `expected {"bytes": N} with N >= 0 or {"mem_relative": F} with 0 < F <= 1000`)
		}
		return 204, nil, nil
	case "authenticate_user":
		if r.Method != http.MethodPost {
			return 0, nil, errStatus(405, "Method Not Allowed")
		}
		var body struct {
			Username string `json:"username"`
			Password string `json:"password"`
		}
		if err := decode(r, &body); err != nil {
			return 0, nil, err
		}
		var usr metadata.User
		var found bool
		s.b.Metadata().Read(func(st *metadata.State) { usr, found = st.Users[body.Username] })
		if !found || !auth.CheckPasswordWith(usr.HashingAlgorithm, usr.PasswordHash, body.Password) {
			return 0, nil, errStatus(401, "user '%s' - invalid credentials", body.Username)
		}
		return 200, map[string]any{"name": usr.Name, "tags": nonNilStrings(usr.Tags)}, nil
	case "environment":
		return 200, map[string]any{"node": cfg.NodeName, "listeners": cfg.AMQPListeners, "management_port": cfg.ManagementPort,
			"prometheus_port": cfg.PrometheusPort, "data_dir": cfg.DataDir, "default_vhost": cfg.DefaultVHost,
			"loopback_users": cfg.LoopbackUsers, "channel_max": cfg.ChannelMax, "frame_max": cfg.FrameMax, "heartbeat": cfg.Heartbeat,
			"max_message_size": cfg.MaxMessageSize, "vm_memory_high_watermark": cfg.VMMemoryHighWatermark,
			"disk_free_limit": cfg.DiskFreeLimit, "cluster_name": cfg.ClusterName}, nil
	}
	return 0, nil, errStatus(404, "Not Found")
}

func nonNilStrings(x []string) []string {
	if x == nil {
		return []string{}
	}
	return x
}

func contains(xs []string, x string) bool {
	for _, e := range xs {
		if e == x {
			return true
		}
	}
	return false
}
