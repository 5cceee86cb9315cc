// Package vrrp is warren-vrrp (keepalived's role): the VRRPv2 (RFC 3768,
// with keepalived's PASS authentication) and VRRPv3 (RFC 5798) packet
// codec, a pure state machine (events in, actions out, time passed in), a
// keepalived.conf parser, and the daemon that drives them over a raw IP
// socket (internal/vrrp/netlink holds the OS layer). It imports no broker
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
)

// Packet is one VRRP advertisement.
type Packet struct {
	Version  int // 2 or 3
	VRID     uint8
	Priority uint8
	Interval time.Duration // v2: whole seconds; v3: centiseconds
	AuthType uint8         // v2 only
	AuthData [8]byte       // v2 only
	IPs      []net.IP      // IPv4
}

// Errors of the codec.
var (
	ErrShort    = errors.New("vrrp: packet too short")
	ErrVersion  = errors.New("vrrp: unsupported version")
	ErrType     = errors.New("vrrp: not an advertisement")
	ErrChecksum = errors.New("vrrp: bad checksum")
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

func pseudo(src, dst net.IP, length int) uint32 {
	var s uint32
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

// Marshal encodes p; src and dst are needed for the v3 checksum (the
// IPv4 pseudo-header, RFC 5798 section 5.2.8).
func (p *Packet) Marshal(src, dst net.IP) ([]byte, error) {
	n := len(p.IPs)
	if n > 255 {
		return nil, fmt.Errorf("vrrp: %d addresses exceed 255", n)
	}
	b := make([]byte, 8, 8+4*n+8)
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
		b = append(b, ip.To4()...)
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
// packet); src and dst are the IP header's addresses (v3 checksum).
func Unmarshal(b []byte, src, dst net.IP) (*Packet, error) {
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
		if len(b) < 8+4*n {
			return nil, ErrShort
		}
		p.Interval = time.Duration(binary.BigEndian.Uint16(b[4:])&0xfff) * 10 * time.Millisecond
		if checksum(b[:8+4*n], pseudo(src, dst, 8+4*n)) != 0 {
			return nil, ErrChecksum
		}
	default:
		return nil, ErrVersion
	}
	for i := 0; i < n; i++ {
		p.IPs = append(p.IPs, net.IP(append([]byte(nil), b[8+4*i:12+4*i]...)))
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
