// Package netlink is warren-vrrp's OS layer: a raw IP protocol 112 socket
// (multicast 224.0.0.18 joined on each interface, or unicast peers, TTL
// 255), virtual addresses added and removed with netlink, and gratuitous
// ARP. It implements vrrp.Net.
package netlink

import (
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"

	"github.com/warrenmq/warren/internal/vrrp"
)

// OS is the real network.
type OS struct {
	pc      *ipv4.PacketConn
	raw     net.PacketConn
	packets chan vrrp.Received
	mu      sync.Mutex
	arps    map[string]*arp.Client
}

// Open opens the raw socket and joins the VRRP group on the interfaces.
func Open(ifnames []string) (*OS, error) {
	c, err := net.ListenPacket("ip4:112", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("opening a raw IP socket for protocol 112: %w (warren-vrrp needs CAP_NET_RAW: run as root)", err)
	}
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface|ipv4.FlagSrc, true); err != nil {
		c.Close()
		return nil, err
	}
	pc.SetMulticastTTL(255)
	pc.SetTTL(255)
	pc.SetMulticastLoopback(false)
	group := &net.IPAddr{IP: net.ParseIP(vrrp.MulticastIPv4)}
	for _, n := range ifnames {
		ifi, err := net.InterfaceByName(n)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("interface %s: %w", n, err)
		}
		if err := pc.JoinGroup(ifi, group); err != nil {
			c.Close()
			return nil, fmt.Errorf("joining %s on %s: %w", vrrp.MulticastIPv4, n, err)
		}
	}
	o := &OS{pc: pc, raw: c, packets: make(chan vrrp.Received, 256), arps: map[string]*arp.Client{}}
	go o.read()
	return o, nil
}

func (o *OS) read() {
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := o.pc.ReadFrom(buf)
		if err != nil {
			close(o.packets)
			return
		}
		r := vrrp.Received{Payload: append([]byte(nil), buf[:n]...)}
		if ip, ok := src.(*net.IPAddr); ok {
			r.Src = ip.IP
		}
		if cm != nil {
			r.TTL, r.Dst, r.IfIndex = cm.TTL, cm.Dst, cm.IfIndex
			if r.Src == nil {
				r.Src = cm.Src
			}
		}
		select {
		case o.packets <- r:
		default:
		}
	}
}

// Packets implements vrrp.Net.
func (o *OS) Packets() <-chan vrrp.Received { return o.packets }

// Primary implements vrrp.Net.
func (o *OS) Primary(ifname string) (net.IP, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.To4(), nil
		}
	}
	return nil, fmt.Errorf("interface %s has no IPv4 address", ifname)
}

// Send implements vrrp.Net.
func (o *OS) Send(ifname string, src, dst net.IP, payload []byte) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	if dst.IsMulticast() {
		if err := o.pc.SetMulticastInterface(ifi); err != nil {
			return err
		}
	}
	cm := &ipv4.ControlMessage{Src: src, IfIndex: ifi.Index}
	_, err = o.pc.WriteTo(payload, cm, &net.IPAddr{IP: dst})
	return err
}

func (o *OS) link(ifname string) (vnl.Link, error) {
	l, err := vnl.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifname, err)
	}
	return l, nil
}

// AddVIP implements vrrp.Net.
func (o *OS) AddVIP(ifname string, v vrrp.VIP) error {
	l, err := o.link(ifname)
	if err != nil {
		return err
	}
	a := &vnl.Addr{IPNet: v.Net, Label: v.Label}
	if err := vnl.AddrReplace(l, a); err != nil {
		return fmt.Errorf("adding %s to %s: %w", v.Net, ifname, err)
	}
	return nil
}

// DelVIP implements vrrp.Net.
func (o *OS) DelVIP(ifname string, v vrrp.VIP) error {
	l, err := o.link(ifname)
	if err != nil {
		return err
	}
	return vnl.AddrDel(l, &vnl.Addr{IPNet: v.Net})
}

// GARP implements vrrp.Net: a gratuitous ARP request announcing ip.
func (o *OS) GARP(ifname string, ip net.IP) error {
	o.mu.Lock()
	c := o.arps[ifname]
	if c == nil {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			o.mu.Unlock()
			return err
		}
		c, err = arp.Dial(ifi)
		if err != nil {
			o.mu.Unlock()
			return err
		}
		o.arps[ifname] = c
	}
	o.mu.Unlock()
	addr, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		return fmt.Errorf("not an IPv4 address: %s", ip)
	}
	p, err := arp.NewPacket(arp.OperationRequest, c.HardwareAddr(), addr, ethernet.Broadcast, addr)
	if err != nil {
		return err
	}
	return c.WriteTo(p, ethernet.Broadcast)
}

// Close closes the sockets.
func (o *OS) Close() error {
	o.mu.Lock()
	for _, c := range o.arps {
		c.Close()
	}
	o.mu.Unlock()
	return o.raw.Close()
}
