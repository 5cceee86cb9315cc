package vrrp

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/testenv"
)

// The guide's keepalived.conf (kept in examples/guide as the user's
// configuration) parses as written and means what the guide says.
func TestGuideKeepalivedConfVerbatim(t *testing.T) {
	cfg, err := Parse(filepath.Join(testenv.RepoRoot(t), "examples", "guide", "keepalived.conf"))
	if err != nil {
		t.Fatalf("the guide's keepalived.conf: %v", err)
	}
	if cfg.RouterID != "C" {
		t.Errorf("router_id = %q, want C", cfg.RouterID)
	}
	s := cfg.Scripts["chk_haproxy"]
	if s == nil {
		t.Fatalf("vrrp_script chk_haproxy missing; scripts: %v", cfg.Scripts)
	}
	if s.Command != "/etc/keepalived/haproxy_check.sh" || s.Interval != 2*time.Second || s.Weight != -20 {
		t.Errorf("chk_haproxy = %+v", s)
	}
	if len(cfg.Instances) != 1 {
		t.Fatalf("%d instances, want 1", len(cfg.Instances))
	}
	in := cfg.Instances[0]
	if in.Name != "VI_1" || in.State != Master || in.Interface != "ens33" || in.VRID != 66 || in.Priority != 100 ||
		in.AdvertInt != time.Second || in.AuthType != "PASS" || in.AuthPass != "1111" {
		t.Errorf("VI_1 = %+v", in)
	}
	if len(in.Tracks) != 1 || in.Tracks[0].Script != "chk_haproxy" {
		t.Errorf("track_script = %+v", in.Tracks)
	}
	if len(in.VIPs) != 1 || in.VIPs[0].Addr.String() != "192.168.204.66" {
		t.Errorf("VIPs = %+v", in.VIPs)
	}
}
