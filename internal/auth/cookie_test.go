package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadCookieFileModes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c")
	os.WriteFile(p, []byte("SECRETSECRET\n"), 0o600)
	for mode, ok := range map[os.FileMode]bool{0o400: true, 0o600: true, 0o700: true, 0o640: false, 0o604: false, 0o620: false, 0o601: false, 0o644: false} {
		os.Chmod(p, mode)
		c, err := ReadCookieFile(p)
		if ok && (err != nil || c != "SECRETSECRET") {
			t.Errorf("mode %04o: %q %v", mode, c, err)
		}
		if !ok && (!errors.Is(err, ErrCookieMode) || !strings.HasPrefix(err.Error(), "Cookie file "+p+" must be accessible by owner only")) {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	if _, err := ReadCookieFile(p + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestControlMACCoversTheRequest(t *testing.T) {
	base := ControlMAC("cookie", "n1", "POST", "/api/warren/stop_app", nil)
	for _, other := range []string{
		ControlMAC("cookie2", "n1", "POST", "/api/warren/stop_app", nil),
		ControlMAC("cookie", "n2", "POST", "/api/warren/stop_app", nil),
		ControlMAC("cookie", "n1", "GET", "/api/warren/stop_app", nil),
		ControlMAC("cookie", "n1", "POST", "/api/warren/start_app", nil),
		ControlMAC("cookie", "n1", "POST", "/api/warren/stop_app", []byte("{}")),
	} {
		if EqualMAC(base, other) {
			t.Fatal("the MAC does not cover every part of the request")
		}
	}
	if !EqualMAC(base, ControlMAC("cookie", "n1", "POST", "/api/warren/stop_app", nil)) || EqualMAC(NodeProof("cookie", "n1"), base) {
		t.Fatal("MAC not deterministic, or the node proof equals the client's MAC")
	}
}
