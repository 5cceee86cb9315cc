package netlink

import (
	"bytes"
	"encoding/hex"
	"net"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// TestNeighborAdvert checks the unsolicited neighbour advertisement
// against RFC 4861 section 4.4, written out by hand: type 136, code 0,
// checksum (left to the kernel), flags R=0 S=0 O=1 then 29 reserved
// bits, the target address, and option 2 (target link-layer address,
// length 1 = 8 bytes) with the MAC.
func TestNeighborAdvert(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:5e:00:01:42")
	b, err := (&icmp.Message{Type: ipv6.ICMPTypeNeighborAdvertisement, Body: &icmp.RawBody{Data: NeighborAdvert(net.ParseIP("fd77:77::66"), mac)}}).Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString("88000000" + "20000000" + "fd770077000000000000000000000066" + "0201" + "02005e000142")
	if !bytes.Equal(b, want) {
		t.Fatalf("neighbour advertisement\n got %x\nwant %x", b, want)
	}
	// without a hardware address (no link layer), no option
	if got := NeighborAdvert(net.ParseIP("fd77:77::66"), nil); len(got) != 20 {
		t.Fatalf("without a MAC: %x", got)
	}
}
