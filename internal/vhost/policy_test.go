package vhost

import (
	"testing"
)

func TestValidatePolicyDefinition(t *testing.T) {
	for _, tc := range []struct {
		def  map[string]any
		want string
	}{
		{map[string]any{"message-ttl": float64(-1)}, "-1 is not a valid message TTL"},
		{map[string]any{"expires": float64(0)}, "0 is not a valid queue expiry"},
		{map[string]any{"max-length": "x"}, `<<"x">> is not a valid maximum length`},
		{map[string]any{"max-length-bytes": 1.5}, "1.5 is not a valid maximum length in bytes"},
		{map[string]any{"alternate-exchange": float64(1)}, "1 is not a valid alternate exchange name"},
		{map[string]any{"overflow": "drop-tail"}, `<<"drop-tail">> is not a valid overflow value`},
		{map[string]any{"queue-mode": "fast"}, `<<"fast">> is not a valid queue-mode value`},
		{map[string]any{"delivery-limit": float64(-3)}, "-3 is not a valid delivery limit"},
		// no upper bound in RabbitMQ: the queue saturates instead
		{map[string]any{"message-ttl": 1e13, "expires": 1e18, "max-length": float64(0), "dead-letter-exchange": "dlx", "ha-mode": "all"}, ""},
	} {
		err := ValidatePolicyDefinition(tc.def)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%v: got %q, want %q", tc.def, got, tc.want)
		}
	}
}

// TestValidateHAPolicy: the mirroring keys are refused with RabbitMQ
// 3.10's messages (as rabbitmqctl set_policy printed them).
func TestValidateHAPolicy(t *testing.T) {
	cases := []struct {
		def  map[string]any
		want string
	}{
		{map[string]any{"ha-mode": "bogus"}, `<<"bogus">> is not a valid ha-mode value`},
		{map[string]any{"ha-mode": "all", "ha-params": 2.0}, `ha-mode="all" does not take parameters`},
		{map[string]any{"ha-mode": "exactly"}, `ha-mode="exactly" takes an integer, none given`},
		{map[string]any{"ha-mode": "exactly", "ha-params": "x"}, `ha-mode="exactly" takes an integer, <<"x">> given`},
		{map[string]any{"ha-mode": "exactly", "ha-params": 0.0}, `ha-mode="exactly" takes an integer, 0 given`},
		{map[string]any{"ha-mode": "exactly", "ha-params": 2.5}, `ha-mode="exactly" takes an integer, 2.5 given`},
		{map[string]any{"ha-mode": "nodes", "ha-params": "a"}, `ha-mode="nodes" takes a list, <<"a">> given`},
		{map[string]any{"ha-mode": "nodes", "ha-params": []any{}}, `ha-mode="nodes" list must be non-empty`},
		{map[string]any{"ha-mode": "nodes", "ha-params": []any{"a", 2.0}}, `ha-mode="nodes" takes a list of strings, [2] was not a string`},
		{map[string]any{"ha-params": 2.0}, `ha-mode must be specified to specify ha-params, ha-sync-mode or ha-promote-on-shutdown`},
		{map[string]any{"ha-promote-on-failure": "always"}, `ha-mode must be specified to specify ha-params, ha-sync-mode or ha-promote-on-shutdown`},
		{map[string]any{"ha-mode": "all", "ha-sync-mode": "x"}, `ha-sync-mode must be "manual" or "automatic", got <<"x">>`},
		{map[string]any{"ha-mode": "all", "ha-promote-on-shutdown": "x"}, `ha-promote-on-shutdown must be "always" or "when-synced", got <<"x">>`},
		{map[string]any{"ha-mode": "all", "ha-promote-on-failure": "x"}, `ha-promote-on-failure must be "always" or "when-synced", got <<"x">>`},
		{map[string]any{"ha-mode": "all", "ha-sync-batch-size": 0.0}, `ha-sync-batch-size takes an integer greater than 0, 0 given`},
		{map[string]any{"ha-mode": "exactly", "ha-params": 2.0, "ha-sync-mode": "automatic", "ha-promote-on-failure": "when-synced"}, ""},
		{map[string]any{"ha-mode": "nodes", "ha-params": []any{"a@h"}, "ha-sync-mode": "manual"}, ""},
	}
	for _, c := range cases {
		err := ValidateHAPolicy(c.def)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%v: got %q, want %q", c.def, got, c.want)
		}
	}
}
