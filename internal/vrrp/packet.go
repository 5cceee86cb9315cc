// Package vrrp is warren-vrrp (keepalived's role): the VRRPv2 (RFC 3768,
// with keepalived's PASS authentication) and VRRPv3 (RFC 5798, over IPv4
// or IPv6) packet codec, a pure state machine (events in, actions out,
// time passed in), a keepalived.conf parser, and the daemon that drives
// them over raw IP sockets (internal/vrrp/netlink holds the OS layer) and
// keeps the members of a vrrp_sync_group in step. It imports no broker
// package.
//
//	m := vrrp.NewMachine(vrrp.Params{VRID: 66, Priority: 100, Interval: time.Second, Version: 2, Preempt: true})
//	acts := m.Start(now)          // []Action: send advert, add VIPs, set timers...
//	acts = m.Advert(now, pkt, src) // an advertisement arrived
//	acts = m.Tick(now)            // a timer expired
package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
)

// Protocol constants (RFC 5798 section 5).
const (
	Proto         = 112
	TypeAdvert    = 1
	AuthNone      = 0
	AuthPass      = 1
	MulticastIPv4 = "224.0.0.18"
	MulticastIPv6 = "ff02::12" // RFC 5798 section 5.1.2.2
)

// Packet is one VRRP advertisement.
type Packet struct {
	Version  int // 2 or 3
	VRID     uint8
	Priority uint8
	Interval time.Duration // v2: whole seconds; v3: centiseconds
	AuthType uint8         // v2 only
	AuthData [8]byte       // v2 only
	IPs      []net.IP      // IPv4, or IPv6 (v3 only; the IP header's family decides)
}

// Errors of the codec.
var (
	ErrShort    = errors.New("vrrp: packet too short")
	ErrVersion  = errors.New("vrrp: unsupported version")
	ErrType     = errors.New("vrrp: not an advertisement")
	ErrChecksum = errors.New("vrrp: bad checksum")
	ErrFamily   = errors.New("vrrp: IPv6 needs VRRP version 3 and IPv6 addresses only")
)

func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pseudo sums the pseudo-header of the v3 checksum: IPv4's (RFC 768
// style) or IPv6's (RFC 8200 section 8.1: source, destination,
// upper-layer length, next header), chosen by the addresses' family.
func pseudo(src, dst net.IP, length int) uint32 {
	var s uint32
	if isV6(src) && isV6(dst) {
		s16, d16 := src.To16(), dst.To16()
		for i := 0; i < 16; i += 2 {
			s += uint32(s16[i])<<8 | uint32(s16[i+1])
			s += uint32(d16[i])<<8 | uint32(d16[i+1])
		}
		s += uint32(length>>16) + uint32(length&0xffff)
		s += Proto
		return s
	}
	s4, d4 := src.To4(), dst.To4()
	if s4 == nil || d4 == nil {
		return 0
	}
	s += uint32(s4[0])<<8 | uint32(s4[1])
	s += uint32(s4[2])<<8 | uint32(s4[3])
	s += uint32(d4[0])<<8 | uint32(d4[1])
	s += uint32(d4[2])<<8 | uint32(d4[3])
	s += Proto
	s += uint32(length)
	return s
}

// isV6 reports an IPv6 address (not IPv4 nor IPv4-mapped).
func isV6(ip net.IP) bool { return len(ip) == net.IPv6len && ip.To4() == nil }

// Marshal encodes p; src and dst are needed for the v3 checksum (the
// IPv4 or IPv6 pseudo-header, RFC 5798 section 5.2.8) and decide the
// address family: over IPv6 the addresses are 16 bytes each.
func (p *Packet) Marshal(src, dst net.IP) ([]byte, error) {
	n := len(p.IPs)
	if n > 255 {
		return nil, fmt.Errorf("vrrp: %d addresses exceed 255", n)
	}
	v6 := isV6(dst)
	alen := net.IPv4len
	if v6 {
		alen = net.IPv6len
		if p.Version != 3 {
			return nil, ErrFamily
		}
	}
	b := make([]byte, 8, 8+alen*n+8)
	b[0] = byte(p.Version<<4 | TypeAdvert)
	b[1], b[2], b[3] = p.VRID, p.Priority, byte(n)
	switch p.Version {
	case 2:
		b[4] = p.AuthType
		secs := int(p.Interval / time.Second)
		if secs < 1 || secs > 255 {
			return nil, fmt.Errorf("vrrp: v2 advert interval %v must be 1..255 s", p.Interval)
		}
		b[5] = byte(secs)
	case 3:
		cs := int(p.Interval / (10 * time.Millisecond))
		if cs < 1 || cs > 4095 {
			return nil, fmt.Errorf("vrrp: v3 advert interval %v must be 10ms..40.95s", p.Interval)
		}
		binary.BigEndian.PutUint16(b[4:], uint16(cs))
	default:
		return nil, ErrVersion
	}
	for _, ip := range p.IPs {
		a := ip.To4()
		if v6 {
			a = ip.To16()
			if !isV6(ip) {
				return nil, ErrFamily
			}
		}
		if a == nil {
			return nil, fmt.Errorf("vrrp: %s is not an IPv4 address", ip)
		}
		b = append(b, a...)
	}
	if p.Version == 2 {
		b = append(b, p.AuthData[:]...)
		binary.BigEndian.PutUint16(b[6:], checksum(b, 0))
	} else {
		binary.BigEndian.PutUint16(b[6:], checksum(b, pseudo(src, dst, len(b))))
	}
	return b, nil
}

// Unmarshal decodes and verifies an advertisement (the VRRP part of an IP
// packet); src and dst are the IP header's addresses (v3 checksum; IPv6
// ones mean 16-byte addresses in the packet).
func Unmarshal(b []byte, src, dst net.IP) (*Packet, error) {
	alen := net.IPv4len
	if isV6(dst) {
		alen = net.IPv6len
	}
	if len(b) < 8 {
		return nil, ErrShort
	}
	p := &Packet{Version: int(b[0] >> 4), VRID: b[1], Priority: b[2]}
	if b[0]&0xf != TypeAdvert {
		return nil, ErrType
	}
	n := int(b[3])
	switch p.Version {
	case 2:
		if alen != net.IPv4len {
			return nil, ErrFamily
		}
		if len(b) < 8+4*n+8 {
			return nil, ErrShort
		}
		p.AuthType = b[4]
		p.Interval = time.Duration(b[5]) * time.Second
		if checksum(b[:8+4*n+8], 0) != 0 {
			return nil, ErrChecksum
		}
		copy(p.AuthData[:], b[8+4*n:8+4*n+8])
	case 3:
		end := 8 + alen*n
		if len(b) < end {
			return nil, ErrShort
		}
		p.Interval = time.Duration(binary.BigEndian.Uint16(b[4:])&0xfff) * 10 * time.Millisecond
		if checksum(b[:end], pseudo(src, dst, end)) != 0 {
			return nil, ErrChecksum
		}
	default:
		return nil, ErrVersion
	}
	for i := 0; i < n; i++ {
		p.IPs = append(p.IPs, net.IP(append([]byte(nil), b[8+alen*i:8+alen*(i+1)]...)))
	}
	return p, nil
}

// PassAuth returns keepalived's PASS auth data: the first 8 characters of
// auth_pass, zero padded.
func PassAuth(pass string) [8]byte {
	var a [8]byte
	copy(a[:], pass)
	return a
}
