package lb

import (
	"encoding/binary"
	"fmt"
	"net"
)

// sendProxyHeader writes a PROXY protocol v1 or v2 header when the server
// line asks for it (send-proxy, send-proxy-v2).
func (s *server) sendProxyHeader(dst net.Conn, client net.Conn) error {
	src, _ := client.RemoteAddr().(*net.TCPAddr)
	dstA, _ := client.LocalAddr().(*net.TCPAddr)
	if src == nil || dstA == nil {
		return nil
	}
	var hdr []byte
	switch {
	case s.cfg.SendProxyV2:
		hdr = ProxyV2(src, dstA)
	case s.cfg.SendProxy:
		hdr = ProxyV1(src, dstA)
	default:
		return nil
	}
	_, err := dst.Write(hdr)
	return err
}

// ProxyV1 renders "PROXY TCP4 src dst sport dport\r\n".
func ProxyV1(src, dst *net.TCPAddr) []byte {
	fam := "TCP4"
	if src.IP.To4() == nil {
		fam = "TCP6"
	}
	return []byte(fmt.Sprintf("PROXY %s %s %s %d %d\r\n", fam, src.IP.String(), dst.IP.String(), src.Port, dst.Port))
}

var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// ProxyV2 renders the binary v2 header (PROXY command, TCP over IPv4/6).
func ProxyV2(src, dst *net.TCPAddr) []byte {
	b := append([]byte(nil), v2sig...)
	b = append(b, 0x21) // version 2, PROXY
	if s4, d4 := src.IP.To4(), dst.IP.To4(); s4 != nil && d4 != nil {
		b = append(b, 0x11)
		b = binary.BigEndian.AppendUint16(b, 12)
		b = append(b, s4...)
		b = append(b, d4...)
	} else {
		b = append(b, 0x21)
		b = binary.BigEndian.AppendUint16(b, 36)
		b = append(b, src.IP.To16()...)
		b = append(b, dst.IP.To16()...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(src.Port))
	return binary.BigEndian.AppendUint16(b, uint16(dst.Port))
}
