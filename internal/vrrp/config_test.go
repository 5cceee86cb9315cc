package vrrp

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
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

// TestSyncGroupOwnTracking checks a sync group's own track_script and
// track_interface: every member tracks them, a failing one means FAULT.
func TestSyncGroupOwnTracking(t *testing.T) {
	cfg, err := parseText(t, twoInstances+`vrrp_script grp {
   script "true"
   weight -5
}
vrrp_sync_group G1 {
   group {
       VI_1
       VI_2
   }
   track_script {
       grp
   }
   track_interface {
       eth1
   }
}
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range cfg.Instances {
		found := false
		for _, tr := range in.Tracks {
			if tr.Script == "grp" && tr.HasWeight && tr.Weight == 0 {
				found = true
			}
		}
		if !found || !slices.Contains(in.TrackInterfaces, "eth1") {
			t.Fatalf("%s tracks %+v and interfaces %v", in.Name, in.Tracks, in.TrackInterfaces)
		}
	}
	_, err = parseText(t, twoInstances+"vrrp_sync_group G1 {\n group {\n  VI_1\n  VI_2\n }\n track_script {\n  nosuch\n }\n}\n")
	if err == nil || !strings.Contains(err.Error(), ":22: vrrp_sync_group G1: track_script refers to 'nosuch'") {
		t.Fatalf("unknown group script: %v", err)
	}
}

// TestSyncGroupScriptFaultsEveryMember runs a parsed configuration whose
// sync group has its own failing tracking script: both members go to
// FAULT and release their addresses; when it recovers they come back.
func TestSyncGroupScriptFaultsEveryMember(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "ok")
	os.WriteFile(flag, nil, 0o644)
	cfg, err := parseText(t, twoInstances+`vrrp_script grp {
   script "test -e `+flag+`"
   interval 1
   fall 1
   rise 1
}
vrrp_sync_group G1 {
   group {
       VI_1
       VI_2
   }
   track_script {
       grp
   }
}
`)
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		a := (&fakeLAN{}).host("10.77.8.1")
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		d, _ := startDaemon(t, ctx, &wg, cfg, a)
		time.Sleep(6 * time.Second) // alone on the link: both become MASTER
		synctest.Wait()
		if states(d) != "MASTER,MASTER" || !a.holdsBoth() {
			t.Fatalf("before the failure: %s", states(d))
		}
		os.Remove(flag)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if states(d) != "FAULT,FAULT" || !a.holdsNone() {
			t.Fatalf("after the group's script failed: %s", states(d))
		}
		os.WriteFile(flag, nil, 0o644)
		time.Sleep(8 * time.Second)
		synctest.Wait()
		if states(d) != "MASTER,MASTER" || !a.holdsBoth() {
			t.Fatalf("after it recovered: %s", states(d))
		}
	})
}
