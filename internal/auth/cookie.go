package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrCookieMode is returned by ReadCookieFile for a cookie file that group
// or others may access.
var ErrCookieMode = errors.New("cookie file must be accessible by owner only")

// ReadCookieFile reads a node cookie. Like Erlang's auth module (which
// RabbitMQ's CLI relies on), it refuses a file that group or others can
// read, write or execute: "Cookie file PATH must be accessible by owner
// only". A missing file is reported with an error satisfying
// errors.Is(err, os.ErrNotExist).
func ReadCookieFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", cookieModeError{path, fi.Mode().Perm()}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	c := strings.TrimSpace(string(b))
	if c == "" {
		return "", fmt.Errorf("cookie file %s is empty: delete it to have a new one created", path)
	}
	return c, nil
}

type cookieModeError struct {
	path string
	mode os.FileMode
}

func (e cookieModeError) Error() string {
	return fmt.Sprintf("Cookie file %s must be accessible by owner only (it has mode %04o: run chmod 400 %s)", e.path, e.mode, e.path)
}

func (e cookieModeError) Is(target error) bool { return target == ErrCookieMode }

// The control challenge-response: the node hands out a single-use random
// nonce; warrenctl answers with ControlMAC over the nonce and the request
// (method, request URI, SHA-256 of the body), keyed by the cookie, and the
// node proves it knows the cookie too with NodeProof. The cookie itself
// never travels, a captured request cannot be replayed (the nonce is
// spent) nor turned into another request (the MAC covers it).

// ControlAuthScheme names the Authorization header's scheme.
const ControlAuthScheme = "Warren-Cookie-HMAC"

// ControlMAC is the client's proof for one control request.
func ControlMAC(cookie, nonce, method, requestURI string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, []byte(cookie))
	fmt.Fprintf(m, "warren-control-v1\n%s\n%s\n%s\n%x", nonce, method, requestURI, sum)
	return hex.EncodeToString(m.Sum(nil))
}

// NodeProof is the node's proof, sent back with the answer, that it knows
// the cookie as well.
func NodeProof(cookie, nonce string) string {
	m := hmac.New(sha256.New, []byte(cookie))
	fmt.Fprintf(m, "warren-node-v1\n%s", nonce)
	return hex.EncodeToString(m.Sum(nil))
}

// EqualMAC compares two hex MACs in constant time.
func EqualMAC(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }
