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
