// Package auth holds RabbitMQ-compatible authentication and authorisation:
// password hashing in RabbitMQ's format (so definitions exported from
// RabbitMQ import here), the SASL PLAIN and AMQPLAIN mechanisms, and
// permission matching by configure/write/read regular expressions.
//
//	h := auth.HashPassword("secret")            // base64(salt ++ sha256(salt ++ pw))
//	ok := auth.CheckPassword(h, "secret")
//	m, _ := auth.CompilePermission(auth.Permission{Configure: ".*", Write: ".*", Read: ".*"})
//	m.CanWrite("amq.default")
package auth

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net"
	"regexp"
	"strings"
)

// HashPassword hashes like rabbit_password_hashing_sha256: a 4-byte random
// salt, then base64(salt ++ sha256(salt ++ password)).
func HashPassword(password string) string {
	var salt [4]byte
	_, _ = rand.Read(salt[:])
	return hashWith(sha256.New(), salt[:], password)
}

func hashWith(h hash.Hash, salt []byte, password string) string {
	h.Write(salt)
	h.Write([]byte(password))
	return base64.StdEncoding.EncodeToString(append(append([]byte(nil), salt...), h.Sum(nil)...))
}

// CheckPassword checks a password against a sha256 RabbitMQ hash.
func CheckPassword(hash, password string) bool {
	return CheckPasswordWith("", hash, password)
}

// CheckPasswordWith checks against a hash made by the named RabbitMQ
// hashing module (sha256 when algorithm is empty).
func CheckPasswordWith(algorithm, hashed, password string) bool {
	raw, err := base64.StdEncoding.DecodeString(hashed)
	if err != nil || len(raw) < 5 {
		return false
	}
	var h hash.Hash
	switch algorithm {
	case "", "rabbit_password_hashing_sha256":
		h = sha256.New()
	case "rabbit_password_hashing_sha512":
		h = sha512.New()
	case "rabbit_password_hashing_md5":
		h = md5.New()
	default:
		return false
	}
	want := hashWith(h, raw[:4], password)
	return subtle.ConstantTimeCompare([]byte(want), []byte(hashed)) == 1
}

// Credentials are a SASL login.
type Credentials struct{ Username, Password string }

// ErrMalformed is returned for an unparsable SASL response.
var ErrMalformed = errors.New("malformed SASL response")

// ParsePlain parses a PLAIN response: authzid NUL user NUL password.
func ParsePlain(resp []byte) (Credentials, error) {
	parts := strings.Split(string(resp), "\x00")
	if len(parts) != 3 {
		return Credentials{}, fmt.Errorf("%w: PLAIN needs 3 NUL-separated fields, got %d", ErrMalformed, len(parts))
	}
	if parts[0] != "" && parts[0] != parts[1] {
		return Credentials{}, fmt.Errorf("%w: PLAIN authorisation identity %q differs from the user", ErrMalformed, parts[0])
	}
	return Credentials{Username: parts[1], Password: parts[2]}, nil
}

// ParseAMQPlain parses an AMQPLAIN response: a field table without its
// length prefix, holding LOGIN and PASSWORD.
func ParseAMQPlain(resp []byte) (Credentials, error) {
	var c Credentials
	b := resp
	for len(b) > 0 {
		kl := int(b[0])
		if len(b) < 1+kl+1 {
			return c, fmt.Errorf("%w: truncated AMQPLAIN table", ErrMalformed)
		}
		key := string(b[1 : 1+kl])
		typ := b[1+kl]
		b = b[2+kl:]
		var val string
		switch typ {
		case 'S':
			if len(b) < 4 {
				return c, fmt.Errorf("%w: truncated AMQPLAIN value", ErrMalformed)
			}
			n := binary.BigEndian.Uint32(b)
			if uint64(n) > uint64(len(b)-4) {
				return c, fmt.Errorf("%w: truncated AMQPLAIN value", ErrMalformed)
			}
			val, b = string(b[4:4+n]), b[4+n:]
		case 's':
			if len(b) < 1 || int(b[0]) > len(b)-1 {
				return c, fmt.Errorf("%w: truncated AMQPLAIN value", ErrMalformed)
			}
			n := int(b[0])
			val, b = string(b[1:1+n]), b[1+n:]
		default:
			return c, fmt.Errorf("%w: AMQPLAIN field %q has type %q, want a string", ErrMalformed, key, typ)
		}
		switch key {
		case "LOGIN":
			c.Username = val
		case "PASSWORD":
			c.Password = val
		}
	}
	if c.Username == "" {
		return c, fmt.Errorf("%w: AMQPLAIN without LOGIN", ErrMalformed)
	}
	return c, nil
}

// Mechanisms lists the SASL mechanisms offered in connection.start.
func Mechanisms() string { return "PLAIN AMQPLAIN" }

// Permission is a user's configure/write/read patterns in one vhost.
type Permission struct{ Configure, Write, Read string }

// Matcher is a compiled Permission. Like RabbitMQ (rabbit_access_control
// uses re:run without anchors), a pattern matches anywhere in the name;
// an empty pattern denies everything.
type Matcher struct{ configure, write, read *regexp.Regexp }

// CompilePermission compiles the three patterns.
func CompilePermission(p Permission) (*Matcher, error) {
	var m Matcher
	for _, x := range []struct {
		name, pat string
		dst       **regexp.Regexp
	}{{"configure", p.Configure, &m.configure}, {"write", p.Write, &m.write}, {"read", p.Read, &m.read}} {
		if x.pat == "" {
			continue
		}
		re, err := regexp.Compile(x.pat)
		if err != nil {
			return nil, fmt.Errorf("invalid %s permission pattern %q: %w", x.name, x.pat, err)
		}
		*x.dst = re
	}
	return &m, nil
}

func allowed(re *regexp.Regexp, s string) bool { return re != nil && re.MatchString(s) }

// CanConfigure reports configure permission on a resource name.
func (m *Matcher) CanConfigure(res string) bool { return allowed(m.configure, res) }

// CanWrite reports write permission on a resource name.
func (m *Matcher) CanWrite(res string) bool { return allowed(m.write, res) }

// CanRead reports read permission on a resource name.
func (m *Matcher) CanRead(res string) bool { return allowed(m.read, res) }

// ParseTags splits "administrator, monitoring" or "a b" into tags.
func ParseTags(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if f == nil {
		return []string{}
	}
	return f
}

// IsLoopback reports whether addr is a loopback address.
func IsLoopback(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
