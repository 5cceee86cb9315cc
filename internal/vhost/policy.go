package vhost

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/warrenmq/warren/internal/amqp"

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

// ValidatePolicyDefinition checks a policy definition's values as RabbitMQ
// 3.10 does (rabbit_policies:validate_policy0), with its messages. Policies
// have no upper bound on durations there; the queue saturates instead of
// overflowing. Unknown keys are left to the caller.
func ValidatePolicyDefinition(def map[string]any) error {
	keys := make([]string, 0, len(def))
	for k := range def {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := def[k]
		n, isInt := amqp.IntValue(v)
		s, isStr := v.(string)
		var ok bool
		var what string
		switch k {
		case "alternate-exchange":
			ok, what = isStr, "a valid alternate exchange name"
		case "dead-letter-exchange":
			ok, what = isStr, "a valid dead letter exchange name"
		case "dead-letter-routing-key":
			ok, what = isStr, "a valid dead letter routing key"
		case "message-ttl":
			ok, what = isInt && n >= 0, "a valid message TTL"
		case "expires":
			ok, what = isInt && n >= 1, "a valid queue expiry"
		case "max-length":
			ok, what = isInt && n >= 0, "a valid maximum length"
		case "max-length-bytes":
			ok, what = isInt && n >= 0, "a valid maximum length in bytes"
		case "max-in-memory-length", "max-in-memory-bytes":
			ok, what = isInt && n >= 0, "a valid maximum memory in bytes"
		case "delivery-limit":
			ok, what = isInt && n >= 0, "a valid delivery limit"
		case "queue-mode":
			ok, what = s == "default" || s == "lazy", "a valid queue-mode value"
		case "queue-version":
			ok, what = isInt && (n == 1 || n == 2), "a valid queue-version value"
		case "overflow":
			ok, what = s == "drop-head" || s == "reject-publish" || s == "reject-publish-dlx", "a valid overflow value"
		case "dead-letter-strategy":
			ok, what = s == "at-most-once" || s == "at-least-once", "a valid dead letter strategy"
		default:
			continue
		}
		if !ok {
			return fmt.Errorf("%s is not %s", erlTerm(v), what)
		}
	}
	return nil
}

// erlTerm prints a JSON value the way RabbitMQ's ~p shows it.
func erlTerm(v any) string {
	switch x := v.(type) {
	case string:
		return "<<\"" + x + "\">>"
	case bool:
		return fmt.Sprint(x)
	case nil:
		return "null"
	}
	if n, ok := amqp.IntValue(v); ok {
		return fmt.Sprint(n)
	}
	return fmt.Sprint(v)
}

// ValidateHAPolicy checks the mirroring keys of a policy definition
// (ha-mode, ha-params, ha-sync-mode, ha-promote-on-shutdown,
// ha-promote-on-failure, ha-sync-batch-size) as RabbitMQ 3.10 does
// (rabbit_mirror_queue_misc:validate_policy), with its messages.
func ValidateHAPolicy(def map[string]any) error {
	mode, hasMode := def["ha-mode"]
	if !hasMode {
		for _, k := range []string{"ha-params", "ha-sync-mode", "ha-promote-on-shutdown", "ha-promote-on-failure", "ha-sync-batch-size"} {
			if _, ok := def[k]; ok {
				return errors.New("ha-mode must be specified to specify ha-params, ha-sync-mode or ha-promote-on-shutdown")
			}
		}
		return nil
	}
	params, hasParams := def["ha-params"]
	switch mode {
	case "all":
		if hasParams {
			return errors.New(`ha-mode="all" does not take parameters`)
		}
	case "exactly":
		if !hasParams {
			return errors.New(`ha-mode="exactly" takes an integer, none given`)
		}
		if n, ok := amqp.IntValue(params); !ok || n < 1 {
			return fmt.Errorf(`ha-mode="exactly" takes an integer, %s given`, erlTerm(params))
		}
	case "nodes":
		if !hasParams {
			return errors.New(`ha-mode="nodes" takes a list, none given`)
		}
		l, ok := params.([]any)
		if !ok {
			return fmt.Errorf(`ha-mode="nodes" takes a list, %s given`, erlTerm(params))
		}
		if len(l) == 0 {
			return errors.New(`ha-mode="nodes" list must be non-empty`)
		}
		var bad []string
		for _, x := range l {
			if _, ok := x.(string); !ok {
				bad = append(bad, erlTerm(x))
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf(`ha-mode="nodes" takes a list of strings, [%s] was not a string`, strings.Join(bad, ","))
		}
	default:
		return fmt.Errorf("%s is not a valid ha-mode value", erlTerm(mode))
	}
	if v, ok := def["ha-sync-mode"]; ok && v != "manual" && v != "automatic" {
		return fmt.Errorf(`ha-sync-mode must be "manual" or "automatic", got %s`, erlTerm(v))
	}
	for _, k := range []string{"ha-promote-on-shutdown", "ha-promote-on-failure"} {
		if v, ok := def[k]; ok && v != "always" && v != "when-synced" {
			return fmt.Errorf(`%s must be "always" or "when-synced", got %s`, k, erlTerm(v))
		}
	}
	if v, ok := def["ha-sync-batch-size"]; ok {
		if n, isInt := amqp.IntValue(v); !isInt || n < 1 {
			return fmt.Errorf("ha-sync-batch-size takes an integer greater than 0, %s given", erlTerm(v))
		}
	}
	return nil
}
