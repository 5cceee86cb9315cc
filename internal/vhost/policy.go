package vhost

import (
	"regexp"
	"sort"

	"github.com/warrenmq/warren/internal/metadata"
)

// policyFor returns the definition of the highest-priority policy whose
// pattern matches name and applies to kind ("queues" or "exchanges").
func (v *VHost) policyFor(name, kind string) map[string]any {
	var best *metadata.Policy
	v.meta.Read(func(st *metadata.State) {
		var ps []metadata.Policy
		for k, p := range st.Policies {
			if k[0] == v.name {
				ps = append(ps, p)
			}
		}
		sort.Slice(ps, func(i, j int) bool {
			if ps[i].Priority != ps[j].Priority {
				return ps[i].Priority > ps[j].Priority
			}
			return ps[i].Name < ps[j].Name
		})
		for i := range ps {
			p := ps[i]
			if p.ApplyTo != "" && p.ApplyTo != "all" && p.ApplyTo != kind {
				continue
			}
			re, err := regexp.Compile(p.Pattern)
			if err != nil || !re.MatchString(name) {
				continue
			}
			best = &p
			return
		}
	})
	if best == nil {
		return nil
	}
	return best.Definition
}

// applyPolicies recomputes every queue's effective policy.
func (v *VHost) applyPolicies() {
	for _, q := range v.Queues() {
		q.SetPolicy(v.policyFor(q.Name(), "queues"))
	}
}
