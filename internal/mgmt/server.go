// Package mgmt serves a node's management HTTP API, shaped like RabbitMQ's
// (same paths, methods, status codes and JSON field names for the common
// subset), the web UI, and, on a separate loopback listener, the control
// endpoint warrenctl uses (authenticated by a challenge-response over the
// node's cookie; see control.go).
//
//	s := mgmt.New(b, cookie, logger)
//	http.ListenAndServe(":15672", s)                    // users, basic auth
//	http.ListenAndServe("127.0.0.1:25673", s.Control()) // warrenctl, cookie
package mgmt

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/warrenmq/warren/internal/auth"
	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/metadata"
)

// Server is the management HTTP handler.
type Server struct {
	b      *broker.Broker
	cookie string
	log    *slog.Logger
	rates  *rates
	nonces *nonceStore

	mux *http.ServeMux // the /api router (routes.go)

	lmu           sync.Mutex
	httpListeners []listener // see AddListener
}

// New returns the handler for node b.
func New(b *broker.Broker, cookie string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{b: b, cookie: cookie, log: log, nonces: newNonceStore()}
	s.rates = newRates(b)
	s.mux = s.routes()
	return s
}

// Close stops background sampling.
func (s *Server) Close() { s.rates.stop() }

// user is the authenticated caller. control is set only for warrenctl on
// the control listener, never from anything a management-API user sends.
type user struct {
	name    string
	tags    []string
	control bool
}

func (u user) has(tags ...string) bool {
	for _, t := range u.tags {
		if t == "administrator" {
			return true
		}
		for _, w := range tags {
			if t == w {
				return true
			}
		}
	}
	return false
}

func (u user) isAdmin() bool { return u.has("administrator") }

type apiError struct {
	status int
	code   string // the JSON "error" field when it is not the status's usual one
	reason string
}

func (e *apiError) Error() string { return e.reason }

func errStatus(status int, format string, a ...any) error {
	return &apiError{status: status, reason: fmt.Sprintf(format, a...)}
}

// writeJSON writes v as RabbitMQ does: without HTML escaping ("->" stays
// "->", not "-\u003e").
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// Authentication failures answered as RabbitMQ answers them: no
// credentials gets an empty 401 with WWW-Authenticate (so a browser asks
// for them), wrong ones a JSON "Login failed" (also with the header).
var (
	errNoCredentials = &apiError{status: http.StatusUnauthorized}
	errLoginFailed   = &apiError{status: http.StatusUnauthorized, reason: "Login failed"}
)

func writeErr(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, reason: err.Error()}
	}
	if ae == errNoCredentials || ae == errLoginFailed {
		w.Header().Set("WWW-Authenticate", `Basic realm="RabbitMQ Management"`)
		if ae == errNoCredentials {
			w.WriteHeader(ae.status)
			return
		}
		writeJSON(w, ae.status, map[string]string{"error": "not_authorized", "reason": ae.reason})
		return
	}
	short, reason := ae.code, ae.reason
	if short == "" {
		short = map[int]string{400: "bad_request", 401: "not_authorised", 403: "not_authorised", 404: "not_found", 405: "method_not_allowed", 500: "internal_server_error", 503: "service_unavailable"}[ae.status]
	}
	if ae.status == http.StatusNotFound && (reason == "Object Not Found" || reason == "Not Found") {
		short, reason = "Object Not Found", "Not Found" // RabbitMQ's exact body
	}
	writeJSON(w, ae.status, map[string]string{"error": short, "reason": reason})
}

// authenticate checks HTTP basic auth. The node cookie is not accepted
// here: warrenctl talks to the control listener (Control).
func (s *Server) authenticate(r *http.Request) (user, error) {
	name, pass, ok := r.BasicAuth()
	if !ok {
		return user{}, errNoCredentials
	}
	var u metadata.User
	var found bool
	s.b.Metadata().Read(func(st *metadata.State) { u, found = st.Users[name] })
	if !found || !auth.CheckPasswordWith(u.HashingAlgorithm, u.PasswordHash, pass) {
		return user{}, errLoginFailed
	}
	for _, lu := range s.b.Config().LoopbackUsers {
		if lu == name {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return user{}, errStatus(http.StatusUnauthorized, "User can only log in via localhost")
			}
		}
	}
	uu := user{name: name, tags: u.Tags}
	if !uu.has("management", "monitoring", "policymaker") {
		return user{}, errStatus(http.StatusUnauthorized, "Not management user")
	}
	return uu, nil
}

// segments splits the escaped path into unescaped segments, so that a
// vhost "/" written as %2F stays one segment.
func segments(r *http.Request) []string {
	p := strings.Trim(r.URL.EscapedPath(), "/")
	if p == "" {
		return nil
	}
	parts := strings.Split(p, "/")
	for i, x := range parts {
		if u, err := url.PathUnescape(x); err == nil {
			parts[i] = u
		}
	}
	return parts
}

// maxRequestURI is the longest request target served: RabbitMQ's web
// server (cowboy) answers 414 past about 8,000 bytes.
const maxRequestURI = 8000

// ServeHTTP serves /api/... (routes.go) and the UI.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.RequestURI) > maxRequestURI {
		// RabbitMQ's web server refuses request lines this long
		w.WriteHeader(http.StatusRequestURITooLong)
		return
	}
	seg := segments(r)
	if len(seg) == 1 && seg[0] == "favicon.ico" {
		serveFavicon(w, r)
		return
	}
	if len(seg) == 0 || seg[0] != "api" {
		s.serveUI(w, r)
		return
	}
	u, err := s.authenticate(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if readOnly(seg[1:]) && r.Method != http.MethodGet && r.Method != http.MethodHead {
		// as RabbitMQ answers: an empty 405 saying what is allowed
		w.Header().Set("Allow", "HEAD, GET, OPTIONS")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	s.serveAPI(w, r, u, seg[1:])
}

func decode(r *http.Request, v any) error {
	if r.Body == nil {
		return nil
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<20))
	if err := dec.Decode(v); err != nil && err.Error() != "EOF" {
		return errStatus(http.StatusBadRequest, "invalid JSON body: %v", err)
	}
	return nil
}
