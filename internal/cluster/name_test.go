package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseNodeName(t *testing.T) {
	host, err := ShortHostname()
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"warren@A":                "warren@A",
		"n1@localhost":            "n1@localhost",
		"rabbit-2@db.example.org": "rabbit-2@db.example.org",
		"w_1@10.0.0.7":            "w_1@10.0.0.7",
		"w@::1":                   "w@::1",
		"@B":                      "warren@B",
		"n3":                      "n3@" + host,
		"":                        "warren@" + host,
	} {
		n, err := ParseNodeName(in)
		if err != nil {
			t.Errorf("ParseNodeName(%q): %v", in, err)
			continue
		}
		if n.String() != want {
			t.Errorf("ParseNodeName(%q) = %s, want %s", in, n, want)
		}
	}
	for in, why := range map[string]string{
		"a@b@c":                             "character '@'",
		"war ren@A":                         "letters, digits",
		"warren@":                           "host after '@' is empty",
		"warren@-a":                         "not a host name",
		"warren@a..b":                       "not a host name",
		"warren@" + strings.Repeat("a", 64): "not a host name",
		strings.Repeat("n", 251) + "@host":  "longer than 255",
	} {
		_, err := ParseNodeName(in)
		if !errors.Is(err, ErrBadNodeName) || !strings.Contains(err.Error(), why) {
			t.Errorf("ParseNodeName(%q) = %v, want an ErrBadNodeName saying %q", in, err, why)
		}
	}
}

func TestNodeAddressAndResolution(t *testing.T) {
	n := MustParseNodeName("warren@localhost")
	if got := n.Addr(0); got != "localhost:25672" {
		t.Fatalf("Addr(0) = %s", got)
	}
	if got := MustParseNodeName("n1@::1").Addr(25673); got != "[::1]:25673" {
		t.Fatalf("Addr = %s", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := n.Resolve(ctx) // /etc/hosts
	if err != nil || len(addrs) == 0 {
		t.Fatalf("resolving localhost: %v %v", addrs, err)
	}
	_, err = MustParseNodeName("warren@no-such-node.invalid").Resolve(ctx)
	if err == nil || !strings.Contains(err.Error(), "add it to /etc/hosts") {
		t.Fatalf("resolving an unknown host: %v", err)
	}
}
