package conn

import (
	"fmt"
	"time"

	"github.com/warrenmq/warren/internal/amqp"
)

// Info describes a connection for management listings.
type Info struct {
	ID          uint64
	Name        string // RabbitMQ style: "127.0.0.1:54321 -> 127.0.0.1:5672"
	User        string
	VHost       string
	Peer        string
	Local       string
	Channels    int
	Opened      time.Time
	RecvOct     uint64
	SendOct     uint64
	FrameMax    uint32
	ChannelMax  uint16
	Heartbeat   uint16
	ClientProps amqp.Table
	Blocked     bool

	// ChannelsOpened counts every channel opened on the connection so
	// far (channel_created in the management API's churn_rates).
	ChannelsOpened uint64
}

// ChannelInfo describes one channel.
type ChannelInfo struct {
	Number         uint16
	Consumers      int
	Unacked        int
	PrefetchGlobal uint16
	Confirm        bool
	Tx             bool
}

// Info returns a snapshot; it is safe to call from any goroutine.
func (c *Conn) Info() Info {
	c.infoMu.Lock()
	in := c.info
	c.infoMu.Unlock()
	c.chmu.Lock()
	in.Channels = len(c.channels)
	in.ChannelsOpened = c.opened
	c.chmu.Unlock()
	in.ID = c.id
	in.Peer = c.nc.RemoteAddr().String()
	in.Local = c.nc.LocalAddr().String()
	in.Name = fmt.Sprintf("%s -> %s", in.Peer, in.Local)
	in.Opened = c.Opened
	in.RecvOct = c.recvOct.Load()
	in.SendOct = c.sendOct.Load()
	in.Blocked = c.blocked.Load()
	return in
}

// ChannelInfos lists the open channels.
func (c *Conn) ChannelInfos() []ChannelInfo {
	chs := c.channelList()
	out := make([]ChannelInfo, 0, len(chs))
	for _, ch := range chs {
		ch.mu.Lock()
		out = append(out, ChannelInfo{Number: ch.id, Consumers: len(ch.consumers), Unacked: ch.unackedLive, PrefetchGlobal: ch.globalPrefetch})
		ch.mu.Unlock()
	}
	return out
}

// Describe tells which connection and channel a consumer belongs to.
func (cs *consumer) Describe() (connID uint64, channel uint16, prefetch uint16, ackRequired bool) {
	return cs.ch.c.id, cs.ch.id, cs.prefetch, !cs.noAck
}
