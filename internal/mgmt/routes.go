package mgmt

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// The /api router is an http.ServeMux with Go 1.22 method and wildcard
// patterns; each resource registers its own in its file (overview.go,
// nodes.go, vhosts.go, users.go, permissions.go, policies.go, queues.go,
// exchanges.go, bindings.go, connections.go, channels.go, consumers.go,
// definitions.go, health.go, control.go, compat.go). What the patterns
// say is what the API answers, including its errors: a method a path
// does not take has its own pattern (RabbitMQ's 405 JSON body, after the
// same access checks as the methods it takes), and a path no pattern
// names is 404 {"error":"Object Not Found","reason":"Not Found"}, never
// the mux's text answers or redirects.
//
// Three things the mux does on its own would change what clients see, so
// serveAPI routes a rewritten URL (see routePath) and the handlers read
// the request's own segments:
//
//   - a segment that is exactly %2F (the default vhost "/") does not
//     match a {wildcard}: the mux unescapes the segment before matching
//     and takes a lone "/" for a trailing slash (Go 1.26);
//   - an empty segment ("//"), "." or ".." makes the mux redirect to the
//     cleaned path;
//   - a trailing slash is a different path ("/api/queues/" is
//     "/api/queues" here, as before).
//
// And a pattern with method GET also matches HEAD: where an endpoint
// answered HEAD with 405 (it took GET only), a HEAD pattern says so.

// apiFunc answers an authenticated /api request: the status and a JSON
// body (nil for an empty answer), or an error (writeErr's answer).
type apiFunc func(u user, r *http.Request) (int, any, error)

// routed is what serveAPI hands the mux's handlers beside the rewritten
// request.
type routed struct {
	u   user
	seg []string // the request's path segments, unescaped, "api" first
	url *url.URL // the request's own URL
}

type routedKey struct{}

// router registers the API's patterns on a ServeMux.
type router struct {
	s    *Server
	mux  *http.ServeMux
	seen map[string]bool // the patterns registered
}

// routes builds the /api router.
func (s *Server) routes() *http.ServeMux {
	rt := &router{s: s, mux: http.NewServeMux(), seen: map[string]bool{}}
	s.overviewRoutes(rt)
	s.nodeRoutes(rt)
	s.vhostRoutes(rt)
	s.userRoutes(rt)
	s.permissionRoutes(rt)
	s.policyRoutes(rt)
	s.queueRoutes(rt)
	s.exchangeRoutes(rt)
	s.bindingRoutes(rt)
	s.connectionRoutes(rt)
	s.channelRoutes(rt)
	s.consumerRoutes(rt)
	s.definitionRoutes(rt)
	s.healthRoutes(rt)
	s.controlRoutes(rt)
	s.unsupportedRoutes(rt)
	rt.handle("/", notFound) // any other path (the UI is served before the mux)
	// GODEBUG=httpmuxgo121=1 turns the patterns into Go 1.21 literal
	// paths, under which every /api request would answer 404: refuse to
	// start instead.
	probe, _ := http.NewRequest(http.MethodGet, "/api/vhosts", nil)
	if _, p := rt.mux.Handler(probe); p != "GET /api/vhosts" {
		panic("mgmt: net/http.ServeMux does not route Go 1.22 patterns (is GODEBUG=httpmuxgo121=1 set? the management API needs it unset)")
	}
	return rt.mux
}

// serveAPI answers an authenticated /api request (seg without "api").
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, u user, seg []string) {
	all := append([]string{"api"}, seg...)
	rr := r.WithContext(context.WithValue(r.Context(), routedKey{}, &routed{u: u, seg: all, url: r.URL}))
	ru := *r.URL
	ru.Path, ru.RawPath = routePath(all)
	rr.URL = &ru
	s.mux.ServeHTTP(w, rr)
}

// routePath is the path the mux matches for the segments seg: each
// segment escaped, so that one stays one, and "", "/", "." and ".." (which
// the mux would redirect, or not match to a wildcard) replaced by a
// stand-in ("\x00") that no pattern has as a literal. Handlers never see
// the stand-in: handle binds each wildcard to the request's own segment.
func routePath(seg []string) (path, rawPath string) {
	plain := make([]string, len(seg))
	esc := make([]string, len(seg))
	for i, x := range seg {
		switch x {
		case "", "/", ".", "..":
			x = "\x00"
		}
		plain[i], esc[i] = x, url.PathEscape(x)
	}
	return "/" + strings.Join(plain, "/"), "/" + strings.Join(esc, "/")
}

// wildcard is a {name} (or {name...}, multi) at segment index i of a
// pattern's path.
type wildcard struct {
	name  string
	i     int
	multi bool
}

// handle registers pattern with f. The wildcards of the pattern are
// bound to the request's segments (r.PathValue gives the segment as the
// client sent it, unescaped), and f's answer is written as the API writes
// every answer: ?columns= applied to it, then JSON.
//
// A pattern ending in a {name...} wildcard, P/{name...}, needs P
// registered first for the same method (or for all): the mux redirects a
// path P to P/ when P/ has a match and P none.
func (rt *router) handle(pattern string, f apiFunc) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	var wild []wildcard
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, p := range segs {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
			name, multi := strings.CutSuffix(p[1:len(p)-1], "...")
			wild = append(wild, wildcard{name: name, i: i, multi: multi})
			if multi {
				prefix := "/" + strings.Join(segs[:i], "/")
				if !rt.seen[prefix] && !rt.seen[method+" "+prefix] {
					panic("mgmt: " + pattern + " registered before " + prefix + " (the mux would redirect " + prefix + " to " + prefix + "/)")
				}
			}
		}
	}
	rt.seen[pattern] = true
	s := rt.s
	rt.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		rd := r.Context().Value(routedKey{}).(*routed)
		r.URL = rd.url
		for _, wc := range wild {
			v := ""
			switch {
			case wc.multi && wc.i <= len(rd.seg):
				v = strings.Join(rd.seg[wc.i:], "/")
			case wc.i < len(rd.seg):
				v = rd.seg[wc.i]
			}
			r.SetPathValue(wc.name, v)
		}
		status, body, err := f(rd.u, r)
		s.respond(w, r, status, body, err)
	})
}

// handlePrefix registers pattern and every path below it ({rest...}) with
// f: the endpoints that answer the same whatever segments follow.
func (rt *router) handlePrefix(pattern string, f apiFunc) {
	rt.handle(pattern, f)
	rt.handle(pattern+"/{rest...}", f)
}

// respond writes the answer of an apiFunc.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, status int, body any, err error) {
	if err != nil {
		s.log.Debug("management API error", "path", r.URL.Path, "err", err)
		writeErr(w, err)
		return
	}
	if body == nil {
		w.WriteHeader(status)
		return
	}
	if cols := r.URL.Query().Get("columns"); cols != "" {
		if body, err = filterColumns(body, cols); err != nil {
			writeErr(w, err)
			return
		}
	}
	writeJSON(w, status, body)
}

// The answers for a path or a method the API does not have.
func notFound(user, *http.Request) (int, any, error) { return 0, nil, errStatus(404, "Not Found") }

func methodNotAllowed(user, *http.Request) (int, any, error) {
	return 0, nil, errStatus(405, "Method Not Allowed")
}
