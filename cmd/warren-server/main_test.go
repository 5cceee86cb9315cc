package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestHelpShowsRealDefaults: -h shows the ports a node opens by default,
// not the internal "not given" marker.
func TestHelpShowsRealDefaults(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run -h: %v", err)
	}
	help := out.String()
	if strings.Contains(help, "(default -") {
		t.Errorf("a negative default in -h:\n%s", help)
	}
	for _, w := range []string{"(default 5672)", "(default 15672)", "(default 15692)"} {
		if !strings.Contains(help, w) {
			t.Errorf("-h lacks %s:\n%s", w, help)
		}
	}
}
