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
