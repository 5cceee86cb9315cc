package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// DefaultName is the name part of a node name given without one, and of
// the default node name (RabbitMQ's is "rabbit").
const DefaultName = "warren"

// DefaultDistPort is the inter-node port, RabbitMQ's distribution port.
const DefaultDistPort = 25672

// NodeName is a node's name, name@host as RabbitMQ's (and Erlang's):
// the host part is what other nodes resolve to reach it.
type NodeName struct {
	Name string // letters, digits, '_' and '-'
	Host string // a host name (dots allowed) or an IP address
}

// ErrBadNodeName is wrapped by every node name parse error.
var ErrBadNodeName = errors.New("invalid node name")

const maxNameLen = 255 // both parts together, with '@'

// ParseNodeName parses "name@host". As in RabbitMQ, a name without '@'
// is the name part and the host is this machine's short host name;
// "@host" or an empty string take DefaultName.
func ParseNodeName(s string) (NodeName, error) {
	name, host, found := strings.Cut(s, "@")
	if !found {
		h, err := ShortHostname()
		if err != nil {
			return NodeName{}, err
		}
		host = h
	}
	if name == "" {
		name = DefaultName
	}
	n := NodeName{Name: name, Host: host}
	if err := n.Validate(); err != nil {
		return NodeName{}, fmt.Errorf("%w %q: %w", ErrBadNodeName, s, err)
	}
	return n, nil
}

// MustParseNodeName is ParseNodeName for constants (tests); it panics on
// an invalid name.
func MustParseNodeName(s string) NodeName {
	n, err := ParseNodeName(s)
	if err != nil {
		panic(err)
	}
	return n
}

// DefaultNodeName is warren@<short host name of this machine>.
func DefaultNodeName() (NodeName, error) { return ParseNodeName(DefaultName) }

// ShortHostname is this machine's host name up to its first dot, as
// RabbitMQ uses for short node names.
func ShortHostname() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("cluster: reading this machine's host name for the node name: %w; set one with --nodename name@host", err)
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		h = h[:i]
	}
	if h == "" {
		h = "localhost"
	}
	return h, nil
}

// Validate checks both parts; the error says what is wrong.
func (n NodeName) Validate() error {
	if len(n.Name)+1+len(n.Host) > maxNameLen {
		return fmt.Errorf("longer than %d bytes", maxNameLen)
	}
	if n.Name == "" {
		return errors.New("the name before '@' is empty")
	}
	for _, c := range []byte(n.Name) {
		if !isAlnum(c) && c != '_' && c != '-' {
			return fmt.Errorf("the name before '@' may hold letters, digits, '_' and '-', not %q", c)
		}
	}
	if n.Host == "" {
		return errors.New("the host after '@' is empty")
	}
	if net.ParseIP(n.Host) != nil {
		return nil
	}
	for _, label := range strings.Split(n.Host, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host %q is not a host name (empty or over-long label)", n.Host)
		}
		for i, c := range []byte(label) {
			if !isAlnum(c) && !(c == '-' && i > 0 && i < len(label)-1) && c != '_' {
				return fmt.Errorf("host %q is not a host name (character %q)", n.Host, c)
			}
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (n NodeName) String() string { return n.Name + "@" + n.Host }

// IsZero reports whether n is the zero NodeName.
func (n NodeName) IsZero() bool { return n == NodeName{} }

// Addr is the address to dial for the node on port (DefaultDistPort when
// 0): its host, resolved when dialled, so an /etc/hosts change is seen.
func (n NodeName) Addr(port int) string {
	if port == 0 {
		port = DefaultDistPort
	}
	return net.JoinHostPort(n.Host, strconv.Itoa(port))
}

// Resolve looks the node's host up with the system resolver (/etc/hosts,
// then DNS) and returns its addresses; the error says how to fix it.
func (n NodeName) Resolve(ctx context.Context) ([]string, error) {
	if net.ParseIP(n.Host) != nil {
		return []string{n.Host}, nil
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, n.Host)
	if err != nil {
		return nil, fmt.Errorf("cluster: cannot resolve host %q of node %s: %w; add it to /etc/hosts or DNS on every node, or give the node's address explicitly", n.Host, n, err)
	}
	return addrs, nil
}
