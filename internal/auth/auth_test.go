package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"net"
	"testing"
)

func TestHashFormatAndCheck(t *testing.T) {
	h := HashPassword("guest")
	raw, err := base64.StdEncoding.DecodeString(h)
	if err != nil || len(raw) != 4+32 {
		t.Fatalf("hash %q: %v len %d", h, err, len(raw))
	}
	sum := sha256.Sum256(append(append([]byte(nil), raw[:4]...), "guest"...))
	if string(raw[4:]) != string(sum[:]) {
		t.Fatal("hash is not sha256(salt ++ password)")
	}
	if !CheckPassword(h, "guest") || CheckPassword(h, "guesT") {
		t.Fatal("check")
	}
	if HashPassword("guest") == h {
		t.Fatal("salt not random")
	}
}

func TestPlainAndAMQPlain(t *testing.T) {
	c, err := ParsePlain([]byte("\x00u\x00p"))
	if err != nil || c.Username != "u" || c.Password != "p" {
		t.Fatalf("%v %v", c, err)
	}
	if _, err := ParsePlain([]byte("u\x00p")); err == nil {
		t.Fatal("two fields accepted")
	}
	tbl := []byte("\x05LOGINS\x00\x00\x00\x05guest\x08PASSWORDS\x00\x00\x00\x03pwd")
	c, err = ParseAMQPlain(tbl)
	if err != nil || c.Username != "guest" || c.Password != "pwd" {
		t.Fatalf("%v %v", c, err)
	}
	for i := range tbl {
		ParseAMQPlain(tbl[:i]) // never panics on truncation
	}
}

func TestPermissionsUnanchoredLikeRabbitMQ(t *testing.T) {
	m, err := CompilePermission(Permission{Configure: "^$", Write: "foo", Read: ".*"})
	if err != nil {
		t.Fatal(err)
	}
	if m.CanConfigure("x") || !m.CanConfigure("") {
		t.Fatal("^$ matches only the empty name")
	}
	if !m.CanWrite("xfoox") || m.CanWrite("bar") {
		t.Fatal("unanchored match")
	}
	if !m.CanRead("anything") {
		t.Fatal(".*")
	}
	m, _ = CompilePermission(Permission{})
	if m.CanRead("x") || m.CanRead("") {
		t.Fatal("empty pattern must deny")
	}
	if _, err := CompilePermission(Permission{Read: "("}); err == nil {
		t.Fatal("bad regexp accepted")
	}
}

func TestIsLoopback(t *testing.T) {
	if !IsLoopback(&net.TCPAddr{IP: net.ParseIP("127.0.0.1")}) || !IsLoopback(&net.TCPAddr{IP: net.ParseIP("::1")}) {
		t.Fatal("loopback")
	}
	if IsLoopback(&net.TCPAddr{IP: net.ParseIP("10.77.0.1")}) {
		t.Fatal("not loopback")
	}
}
