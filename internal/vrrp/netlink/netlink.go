// Package netlink is warren-vrrp's OS layer: raw IP protocol 112 sockets
// (IPv4: multicast 224.0.0.18, TTL 255; IPv6: multicast ff02::12 from the
// link-local address, hop limit 255 set on send and checked on receive;
// or unicast peers), virtual addresses added and removed with netlink
// (IPv6 ones without duplicate address detection, so usable at once),
// and announcements of the addresses: gratuitous ARP for IPv4, unsolicited
// neighbour advertisements for IPv6. It implements vrrp.Net.
package netlink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/warrenmq/warren/internal/vrrp"
)

// ifaFNoDAD is IFA_F_NODAD (linux/if_addr.h): no duplicate address
// detection for the address.
const ifaFNoDAD = 0x02

// OS is the real network.
type OS struct {
	pc      *ipv4.PacketConn // nil without IPv4 instances
	raw     net.PacketConn
	pc6     *ipv6.PacketConn // nil without IPv6 instances
	raw6    net.PacketConn
	packets chan vrrp.Received
	mu      sync.Mutex
	arps    map[string]*arp.Client
	na      *icmp.PacketConn // unsolicited neighbour advertisements
}

// Open opens the raw sockets and joins the VRRP groups: 224.0.0.18 on
// the interfaces of IPv4 instances (v4), ff02::12 on those of IPv6
// instances (v6).
func Open(v4, v6 []string) (*OS, error) {
	o := &OS{packets: make(chan vrrp.Received, 256), arps: map[string]*arp.Client{}}
	var wg sync.WaitGroup
	if len(v4) > 0 {
		if err := o.open4(v4); err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); o.read() }()
	}
	if len(v6) > 0 {
		if err := o.open6(v6); err != nil {
			o.Close()
			return nil, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); o.read6() }()
	}
	go func() { wg.Wait(); close(o.packets) }()
	return o, nil
}

func (o *OS) open4(ifnames []string) error {
	c, err := net.ListenPacket("ip4:112", "0.0.0.0")
	if err != nil {
		return fmt.Errorf("opening a raw IP socket for protocol 112: %w (warren-vrrp needs CAP_NET_RAW: run as root)", err)
	}
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface|ipv4.FlagSrc, true); err != nil {
		c.Close()
		return err
	}
	pc.SetMulticastTTL(255)
	pc.SetTTL(255)
	pc.SetMulticastLoopback(false)
	group := &net.IPAddr{IP: net.ParseIP(vrrp.MulticastIPv4)}
	for _, n := range ifnames {
		ifi, err := net.InterfaceByName(n)
		if err != nil {
			c.Close()
			return fmt.Errorf("interface %s: %w", n, err)
		}
		if err := pc.JoinGroup(ifi, group); err != nil {
			c.Close()
			return fmt.Errorf("joining %s on %s: %w", vrrp.MulticastIPv4, n, err)
		}
	}
	o.pc, o.raw = pc, c
	return nil
}

// open6 opens the IPv6 socket (RFC 5798 section 5.1.2): the kernel
// reports each packet's hop limit and destination; the VRRP checksum
// (over the IPv6 pseudo-header) is the codec's, on both sides.
func (o *OS) open6(ifnames []string) error {
	c, err := net.ListenPacket("ip6:112", "::")
	if err != nil {
		return fmt.Errorf("opening a raw IPv6 socket for protocol 112: %w (warren-vrrp needs CAP_NET_RAW: run as root; is IPv6 enabled?)", err)
	}
	pc := ipv6.NewPacketConn(c)
	if err := pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true); err != nil {
		c.Close()
		return err
	}
	pc.SetMulticastHopLimit(255)
	pc.SetHopLimit(255)
	pc.SetMulticastLoopback(false)
	group := &net.IPAddr{IP: net.ParseIP(vrrp.MulticastIPv6)}
	for _, n := range ifnames {
		ifi, err := net.InterfaceByName(n)
		if err != nil {
			c.Close()
			return fmt.Errorf("interface %s: %w", n, err)
		}
		if err := pc.JoinGroup(ifi, group); err != nil {
			c.Close()
			return fmt.Errorf("joining %s on %s: %w", vrrp.MulticastIPv6, n, err)
		}
	}
	na, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		c.Close()
		return fmt.Errorf("opening an ICMPv6 socket for neighbour advertisements: %w", err)
	}
	na.IPv6PacketConn().SetMulticastHopLimit(255)
	na.IPv6PacketConn().SetHopLimit(255)
	// send only: receive nothing
	var f ipv6.ICMPFilter
	f.SetAll(true)
	na.IPv6PacketConn().SetICMPFilter(&f)
	o.pc6, o.raw6, o.na = pc, c, na
	return nil
}

func (o *OS) read6() {
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := o.pc6.ReadFrom(buf)
		if err != nil {
			return
		}
		r := vrrp.Received{Payload: append([]byte(nil), buf[:n]...)}
		if ip, ok := src.(*net.IPAddr); ok {
			r.Src = ip.IP
		}
		if cm == nil || cm.HopLimit != 255 {
			// RFC 5798 section 7.1: hop limit 255 or discard (also when
			// the kernel did not report it)
			continue
		}
		r.TTL, r.Dst, r.IfIndex = cm.HopLimit, cm.Dst, cm.IfIndex
		select {
		case o.packets <- r:
		default:
		}
	}
}

func (o *OS) read() {
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := o.pc.ReadFrom(buf)
		if err != nil {
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
func (o *OS) Primary(ifname string, v6 bool) (net.IP, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if !v6 && n.IP.To4() != nil {
			return n.IP.To4(), nil
		}
		if v6 && n.IP.To4() == nil && n.IP.IsLinkLocalUnicast() {
			return n.IP, nil
		}
	}
	if v6 {
		return nil, fmt.Errorf("interface %s has no IPv6 link-local address (is IPv6 enabled on it?)", ifname)
	}
	return nil, fmt.Errorf("interface %s has no IPv4 address", ifname)
}

// Send implements vrrp.Net.
func (o *OS) Send(ifname string, src, dst net.IP, payload []byte) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	if dst.To4() == nil {
		if o.pc6 == nil {
			return errors.New("no IPv6 socket: no IPv6 instance on this interface")
		}
		if dst.IsMulticast() {
			if err := o.pc6.SetMulticastInterface(ifi); err != nil {
				return err
			}
		}
		to := &net.IPAddr{IP: dst}
		if dst.IsLinkLocalMulticast() || dst.IsLinkLocalUnicast() {
			to.Zone = ifname
		}
		cm := &ipv6.ControlMessage{Src: src, IfIndex: ifi.Index, HopLimit: 255}
		_, err = o.pc6.WriteTo(payload, cm, to)
		return err
	}
	if o.pc == nil {
		return errors.New("no IPv4 socket: no IPv4 instance on this interface")
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
	if v.Addr.To4() == nil {
		// no duplicate address detection: the address is usable at once
		// (the other router has just given it up)
		a.Flags = ifaFNoDAD
	}
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

// GARP implements vrrp.Net: a gratuitous ARP request announcing ip, or
// for IPv6 an unsolicited neighbour advertisement.
func (o *OS) GARP(ifname string, ip net.IP) error {
	if ip.To4() == nil {
		return o.unsolicitedNA(ifname, ip)
	}
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

// unsolicitedNA sends a neighbour advertisement for target to all nodes
// (RFC 4861 section 7.2.6): override flag set, the interface's hardware
// address as target link-layer address option, from the interface's
// link-local address, hop limit 255 (receivers drop any other). The
// kernel fills in the ICMPv6 checksum.
func (o *OS) unsolicitedNA(ifname string, target net.IP) error {
	if o.na == nil {
		return errors.New("no ICMPv6 socket: no IPv6 instance")
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	src, err := o.Primary(ifname, true)
	if err != nil {
		return err
	}
	b, err := (&icmp.Message{Type: ipv6.ICMPTypeNeighborAdvertisement, Body: &icmp.RawBody{Data: NeighborAdvert(target, ifi.HardwareAddr)}}).Marshal(nil)
	if err != nil {
		return err
	}
	cm := &ipv6.ControlMessage{Src: src, IfIndex: ifi.Index, HopLimit: 255}
	_, err = o.na.IPv6PacketConn().WriteTo(b, cm, &net.IPAddr{IP: net.IPv6linklocalallnodes, Zone: ifname})
	return err
}

// NeighborAdvert is the body of an unsolicited neighbour advertisement
// (RFC 4861 section 4.4) after type, code and checksum: flags R=0 S=0
// O=1, the target address, and the target link-layer address option
// (type 2) when mac is known.
func NeighborAdvert(target net.IP, mac net.HardwareAddr) []byte {
	b := make([]byte, 4, 4+16+8)
	b[0] = 0x20 // Override
	b = append(b, target.To16()...)
	if len(mac) == 6 {
		b = append(b, 2, 1) // target link-layer address, 1 unit of 8 bytes
		b = append(b, mac...)
	}
	return b
}

// Close closes the sockets.
func (o *OS) Close() error {
	o.mu.Lock()
	for _, c := range o.arps {
		c.Close()
	}
	o.mu.Unlock()
	var err error
	if o.raw != nil {
		err = o.raw.Close()
	}
	if o.raw6 != nil {
		err = errors.Join(err, o.raw6.Close())
	}
	if o.na != nil {
		o.na.Close()
	}
	return err
}
