package mgmt

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/metadata"
)

// Control returns the handler of the control listener (warrenctl's). It
// serves the same /api paths as the management API plus the node-level
// verbs under /api/warren/ (stop_app, start_app, disk_free_limit, ...),
// and authenticates only by the node cookie, by challenge-response
// (auth.ControlMAC): GET /control/challenge hands out a single-use nonce;
// each request then carries
//
//	Authorization: Warren-Cookie-HMAC nonce=<nonce>,mac=<auth.ControlMAC(...)>
//
// and its answer carries X-Warren-Node-Proof (auth.NodeProof). Management
// users (basic auth) are not accepted here, and the cookie is not accepted
// on the management listener.
func (s *Server) Control() http.Handler { return controlHandler{s} }

// ChallengePath is where warrenctl fetches a nonce.
const ChallengePath = "/control/challenge"

// NodeProofHeader carries auth.NodeProof in control answers.
const NodeProofHeader = "X-Warren-Node-Proof"

type controlHandler struct{ s *Server }

func (h controlHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	if r.URL.Path == ChallengePath {
		n, err := s.nonces.issue()
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, 200, map[string]string{"nonce": n})
		return
	}
	seg := segments(r)
	if len(seg) == 0 || seg[0] != "api" {
		writeErr(w, errStatus(404, "Not Found"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<20))
	if err != nil {
		writeErr(w, errStatus(400, "cannot read the request body: %v", err))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	nonce, mac, ok := parseControlAuth(r.Header.Get("Authorization"))
	if !ok {
		writeErr(w, errStatus(401, "the control listener accepts only warrenctl's cookie challenge-response (Authorization: %s)", auth.ControlAuthScheme))
		return
	}
	if !s.nonces.spend(nonce) || !auth.EqualMAC(mac, auth.ControlMAC(s.cookie, nonce, r.Method, r.URL.RequestURI(), body)) {
		writeErr(w, errStatus(401, "cookie authentication failed: the CLI's cookie differs from the node's, or the challenge expired (check $HOME/.warren.cookie or --cookie-file)"))
		return
	}
	w.Header().Set(NodeProofHeader, auth.NodeProof(s.cookie, nonce))
	s.serveAPI(w, r, user{name: "warrenctl", tags: []string{"administrator"}, control: true}, seg[1:])
}

func parseControlAuth(h string) (nonce, mac string, ok bool) {
	rest, found := strings.CutPrefix(h, auth.ControlAuthScheme+" ")
	if !found {
		return "", "", false
	}
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch k {
		case "nonce":
			nonce = v
		case "mac":
			mac = v
		}
	}
	return nonce, mac, nonce != "" && mac != ""
}

// nonceStore holds outstanding challenges: each is spent by its first use
// and expires after nonceTTL; at most maxNonces are outstanding.
type nonceStore struct {
	mu sync.Mutex
	m  map[string]time.Time
}

const (
	nonceTTL  = 30 * time.Second
	maxNonces = 4096
)

func newNonceStore() *nonceStore { return &nonceStore{m: map[string]time.Time{}} }

func (ns *nonceStore) issue() (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	n := base64.RawURLEncoding.EncodeToString(raw[:])
	now := time.Now()
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if len(ns.m) >= maxNonces {
		for k, t := range ns.m {
			if now.After(t) {
				delete(ns.m, k)
			}
		}
		if len(ns.m) >= maxNonces {
			return "", errStatus(503, "too many outstanding control challenges; retry in %v", nonceTTL)
		}
	}
	ns.m[n] = now.Add(nonceTTL)
	return n, nil
}

func (ns *nonceStore) spend(n string) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	t, ok := ns.m[n]
	delete(ns.m, n)
	return ok && time.Now().Before(t)
}

// controlRoutes: warrenctl's node-level verbs under /api/warren/, served
// only on the control listener (controlOnly), and /api/warren/history
// (the UI's charts) on both.
func (s *Server) controlRoutes(rt *router) {
	rt.handle("/api/warren/history", s.history)
	rt.handlePrefix("/api/warren", s.controlOnly(notFound))
	rt.handle("/api/warren/status", s.controlOnly(s.nodeStatus))
	rt.handle("POST /api/warren/stop_app", s.controlOnly(s.stopApp))
	rt.handle("/api/warren/stop_app", s.controlOnly(methodNotAllowed))
	rt.handle("POST /api/warren/drain", s.controlOnly(func(user, *http.Request) (int, any, error) { s.b.Drain(); return 204, nil, nil }))
	rt.handle("/api/warren/drain", s.controlOnly(methodNotAllowed))
	rt.handle("POST /api/warren/revive", s.controlOnly(func(user, *http.Request) (int, any, error) {
		if err := s.b.Revive(); err != nil {
			return 0, nil, errStatus(500, "%v", err)
		}
		return 204, nil, nil
	}))
	rt.handle("/api/warren/revive", s.controlOnly(methodNotAllowed))
	rt.handle("POST /api/warren/start_app", s.controlOnly(s.startApp))
	rt.handle("/api/warren/start_app", s.controlOnly(methodNotAllowed))
	for _, verb := range []string{"join_cluster", "reset", "forget_cluster_node"} { // membership.go
		rt.handle("POST /api/warren/"+verb, s.controlOnly(func(u user, r *http.Request) (int, any, error) { return s.membership(r, verb) }))
		rt.handle("/api/warren/"+verb, s.controlOnly(methodNotAllowed))
	}
	rt.handle("/api/warren/vm_memory_high_watermark", s.controlOnly(s.setMemoryHighWatermark))
	rt.handle("/api/warren/disk_free_limit", s.controlOnly(s.setDiskFreeLimit))
	rt.handle("POST /api/warren/authenticate_user", s.controlOnly(s.authenticateUser))
	rt.handle("/api/warren/authenticate_user", s.controlOnly(methodNotAllowed))
	rt.handle("/api/warren/environment", s.controlOnly(s.environment))
}

// controlOnly answers with f on the control listener only (warrenctl,
// authenticated by the cookie), to administrators.
func (s *Server) controlOnly(f apiFunc) apiFunc {
	return func(u user, r *http.Request) (int, any, error) {
		if !u.control {
			return 0, nil, errStatus(404, "node control verbs are served only on the control listener (control.tcp.port), to warrenctl authenticated by the node cookie")
		}
		if err := requireAdmin(u); err != nil {
			return 0, nil, err
		}
		return f(u, r)
	}
}

// history is the node's recent message rates (for monitoring users).
func (s *Server) history(u user, r *http.Request) (int, any, error) {
	if !u.has("monitoring") && !u.control { // node-wide figures
		return 200, []any{}, nil
	}
	return 200, s.rates.snapshot(), nil
}

func (s *Server) nodeStatus(u user, r *http.Request) (int, any, error) {
	cfg := s.b.Config()
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
}

func (s *Server) stopApp(u user, r *http.Request) (int, any, error) {
	s.b.StopApp()
	return 204, nil, nil
}

func (s *Server) startApp(u user, r *http.Request) (int, any, error) {
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
}

func (s *Server) setMemoryHighWatermark(u user, r *http.Request) (int, any, error) {
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
}

func (s *Server) setDiskFreeLimit(u user, r *http.Request) (int, any, error) {
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
}

func (s *Server) authenticateUser(u user, r *http.Request) (int, any, error) {
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
}

func (s *Server) environment(u user, r *http.Request) (int, any, error) {
	cfg := s.b.Config()
	return 200, map[string]any{"node": cfg.NodeName, "listeners": cfg.AMQPListeners, "management_port": cfg.ManagementPort,
		"prometheus_port": cfg.PrometheusPort, "data_dir": cfg.DataDir, "default_vhost": cfg.DefaultVHost,
		"loopback_users": cfg.LoopbackUsers, "channel_max": cfg.ChannelMax, "frame_max": cfg.FrameMax, "heartbeat": cfg.Heartbeat,
		"max_message_size": cfg.MaxMessageSize, "vm_memory_high_watermark": cfg.VMMemoryHighWatermark,
		"disk_free_limit": cfg.DiskFreeLimit, "cluster_name": cfg.ClusterName}, nil
}
