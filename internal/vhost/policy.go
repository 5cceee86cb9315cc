package vhost

import (
	"regexp"
	"sort"

	"github.com/warrenmq/warren/internal/metadata"
)

// policyFor returns the definition of the highest-priority policy whose
// pattern matches name and applies to kind ("queues" or "exchanges").
func (v *VHost) policyFor(name, kind string) map[string]any {
	if best := v.bestPolicy(name, kind); best != nil {
		return best.Definition
	}
	return nil
}

// AppliedPolicy returns the name of the policy that applies to the queue
// or exchange name (kind "queues" or "exchanges"), or "" when none does
// (the "policy" field of the management API's queue and exchange JSON).
func (v *VHost) AppliedPolicy(name, kind string) string {
	if best := v.bestPolicy(name, kind); best != nil {
		return best.Name
	}
	return ""
}

// bestPolicy is the highest-priority policy whose pattern matches name
// and that applies to kind, or nil.
func (v *VHost) bestPolicy(name, kind string) *metadata.Policy {
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
	return best
}

// applyPolicies recomputes every queue's effective policy.
func (v *VHost) applyPolicies() {
	for _, q := range v.Queues() {
		q.SetPolicy(v.policyFor(q.Name(), "queues"))
	}
}
