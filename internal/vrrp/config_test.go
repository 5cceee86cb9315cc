package vrrp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parseText(t *testing.T, text string) (*Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return Parse(p)
}

const twoInstances = `vrrp_script chk {
   script "true"
   weight -20
}
vrrp_instance VI_1 {
   interface eth0
   virtual_router_id 66
   track_script {
       chk
   }
   virtual_ipaddress {
       10.77.8.66/24
   }
}
vrrp_instance VI_2 {
   interface eth0
   virtual_router_id 67
   virtual_ipaddress {
       10.77.8.67/24
   }
}
`

func TestParseSyncGroup(t *testing.T) {
	cfg, err := parseText(t, twoInstances+`vrrp_sync_group G1 {
   group {
       VI_1
       VI_2
       VI_9
   }
   notify_master "/etc/keepalived/master.sh"
   notify_stop /etc/keepalived/stop.sh
   notify /etc/keepalived/notify.sh
}
`)
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.SyncGroups[0]
	if g.Name != "G1" || strings.Join(g.Group, ",") != "VI_1,VI_2" || g.NotifyMaster != "/etc/keepalived/master.sh" ||
		g.NotifyStop != "/etc/keepalived/stop.sh" || g.Notify != "/etc/keepalived/notify.sh" || g.TrackingWeight {
		t.Fatalf("%+v", g)
	}
	warned := strings.Join(cfg.Warnings, "\n")
	if !strings.Contains(warned, "member VI_9 is not a vrrp_instance") || !strings.Contains(warned, "weight is ignored") {
		t.Fatalf("warnings: %s", warned)
	}

	cfg, err = parseText(t, twoInstances+"vrrp_sync_group G1 {\n group {\n  VI_1\n  VI_2\n }\n sync_group_tracking_weight\n}\n")
	if err != nil || !cfg.SyncGroups[0].TrackingWeight || strings.Contains(strings.Join(cfg.Warnings, "\n"), "weight is ignored") {
		t.Fatalf("sync_group_tracking_weight: %v %+v %q", err, cfg.SyncGroups, cfg.Warnings)
	}

	_, err = parseText(t, twoInstances+"vrrp_sync_group G1 {\n group {\n  VI_1\n }\n}\nvrrp_sync_group G2 {\n group {\n  VI_1\n  VI_2\n }\n}\n")
	if err == nil || !strings.Contains(err.Error(), ":27: vrrp_sync_group G2: vrrp_instance VI_1 is already in vrrp_sync_group G1") {
		t.Fatalf("an instance in two groups: %v", err)
	}
}
