package mgmt

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRoutesRefuseGo121Mux: with GODEBUG=httpmuxgo121=1 the mux would
// take the patterns for literal paths and answer 404 to every /api
// request; building the router refuses that, saying why.
func TestRoutesRefuseGo121Mux(t *testing.T) {
	if os.Getenv("MGMT_ROUTES_CHILD") == "1" {
		(&Server{}).routes()
		return
	}
	(&Server{}).routes() // the default mux routes the patterns
	cmd := exec.Command(os.Args[0], "-test.run=^TestRoutesRefuseGo121Mux$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MGMT_ROUTES_CHILD=1", "GODEBUG=httpmuxgo121=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "GODEBUG=httpmuxgo121=1") {
		t.Fatalf("routes() under GODEBUG=httpmuxgo121=1: err %v, output:\n%s", err, out)
	}
}
