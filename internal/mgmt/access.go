package mgmt

import (
	"errors"
	"strconv"
	"strings"

	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/vhost"
)

// restrictOverview narrows GET /api/overview for users without the
// monitoring tag as RabbitMQ does: totals over the vhosts they have
// permissions in and their own connections and channels, and no node,
// listener or context details (nor node-wide message rates).
func (s *Server) restrictOverview(u user, o map[string]any) map[string]any {
	if u.has("monitoring") || u.control {
		return o
	}
	qs, ready, unacked, consumers, exchanges := 0, 0, 0, 0, 0
	for _, vn := range s.b.VHostNames() {
		v := s.b.VHost(vn)
		if v == nil || !s.hasPerm(u, vn) {
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
	conns, chans := 0, 0
	for _, c := range s.b.Connections() {
		if in := c.Info(); in.User == u.name {
			conns++
			chans += in.Channels
		}
	}
	o["object_totals"] = map[string]int{"connections": conns, "channels": chans, "exchanges": exchanges, "queues": qs, "consumers": consumers}
	o["queue_totals"] = map[string]any{"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked}
	o["message_stats"] = map[string]any{}
	delete(o, "node")
	delete(o, "listeners")
	delete(o, "contexts")
	return o
}

// maxExpiry is the largest per-message TTL RabbitMQ accepts: ten years in
// milliseconds (rabbit_misc:check_expiry).
const maxExpiry = 315_360_000_000

// checkPublishProps refuses, as RabbitMQ's HTTP publish does (400 with the
// channel's 406 text), properties a channel would refuse: another user's
// user_id, an unknown delivery_mode, an expiration that is not a
// non-negative integer of at most ten years, a timestamp that is not an
// integer.
func checkPublishProps(u user, m map[string]any) error {
	pf := func(format string, a ...any) error {
		return errStatus(400, "406 PRECONDITION_FAILED - "+format, a...)
	}
	if v, ok := m["user_id"]; ok && v != nil {
		if s, _ := v.(string); s != u.name {
			return pf("user_id property set to '%v' but authenticated user was '%s'", v, u.name)
		}
	}
	if v, ok := m["delivery_mode"]; ok && v != nil {
		if n, ok := v2int(v); !ok || (n != 1 && n != 2) {
			return pf("invalid message: {delivery_mode_unknown,%v}", v)
		}
	}
	if v, ok := m["expiration"]; ok && v != nil {
		s, _ := v.(string)
		n, err := strconv.ParseInt(s, 10, 64)
		switch {
		case err != nil && errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(s, "-"):
			return pf("invalid expiration '%s': {value_too_large,%s}", s, s)
		case err != nil:
			return pf("invalid expiration '%v': no_integer", v)
		case n < 0:
			return pf("invalid expiration '%s': {value_negative,%d}", s, n)
		case n > maxExpiry:
			return pf("invalid expiration '%s': {value_too_large,%d}", s, n)
		}
	}
	if v, ok := m["timestamp"]; ok && v != nil {
		if _, ok := v2int(v); !ok {
			return errStatus(400, "timestamp must be an integer (seconds since the epoch)")
		}
	}
	return nil
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
