package mgmt

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/vhost"
)

// policyRoutes: /api/policies, /api/policies/{vhost} and
// /api/policies/{vhost}/{name}. HEAD is refused where GET is served, as
// the switch router did.
func (s *Server) policyRoutes(rt *router) {
	rt.handle("GET /api/policies", s.listPolicies)
	rt.handle("HEAD /api/policies", methodNotAllowed)
	rt.handle("GET /api/policies/{vhost}", s.listVHostPolicies)
	rt.handle("HEAD /api/policies/{vhost}", methodNotAllowed)
	rt.handle("GET /api/policies/{vhost}/{name}", s.getPolicy)
	rt.handle("PUT /api/policies/{vhost}/{name}", s.putPolicy)
	rt.handle("DELETE /api/policies/{vhost}/{name}", s.deletePolicy)
	rt.handle("HEAD /api/policies/{vhost}/{name}", s.policyNotAllowed)
	rt.handle("/api/policies/{vhost}/{name}", s.policyNotAllowed)
	rt.handlePrefix("/api/policies", methodNotAllowed)
}

// mayManagePolicies is RabbitMQ's is_authorized_policies: administrators,
// or policymakers with access to the vhost; the same for reading one
// policy.
func (s *Server) mayManagePolicies(u user, vh string) error {
	if !(u.isAdmin() || (u.has("policymaker") && s.hasPerm(u, vh))) {
		return errStatus(401, "User not authorised to access object")
	}
	return nil
}

func (s *Server) policyNotAllowed(u user, r *http.Request) (int, any, error) {
	if err := s.mayManagePolicies(u, r.PathValue("vhost")); err != nil {
		return 0, nil, err
	}
	return methodNotAllowed(u, r)
}

func (s *Server) listPolicies(u user, r *http.Request) (int, any, error) {
	return 200, s.policyList(u, ""), nil
}

func (s *Server) listVHostPolicies(u user, r *http.Request) (int, any, error) {
	vh := r.PathValue("vhost")
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	return 200, s.policyList(u, vh), nil
}

func (s *Server) getPolicy(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), r.PathValue("name")
	if err := s.mayManagePolicies(u, vh); err != nil {
		return 0, nil, err
	}
	for _, p := range s.policyList(u, vh) {
		if p.(metadata.Policy).Name == name {
			return 200, p, nil
		}
	}
	return 0, nil, errStatus(404, "Object Not Found")
}

func (s *Server) putPolicy(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), r.PathValue("name")
	if err := s.mayManagePolicies(u, vh); err != nil {
		return 0, nil, err
	}
	var p metadata.Policy
	if err := decode(r, &p); err != nil {
		return 0, nil, err
	}
	p.VHost, p.Name = vh, name
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
}

func (s *Server) deletePolicy(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), r.PathValue("name")
	if err := s.mayManagePolicies(u, vh); err != nil {
		return 0, nil, err
	}
	if !s.policyExists(vh, name) {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	return 204, nil, s.propose(metadata.Command{Op: metadata.OpClearPolicy, VHost: vh, Name: name})
}

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
