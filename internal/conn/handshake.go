package conn

import (
	"errors"
	"fmt"

	"github.com/warrenmq/warren/internal/amqp"
)

// ErrAuthFailed is returned by Server.Authenticate for bad credentials.
var ErrAuthFailed = errors.New("authentication failed")

func (c *Conn) serverProperties() amqp.Table {
	return amqp.Table{
		"product":      c.cfg.Product,
		"version":      c.cfg.Version,
		"platform":     "Go",
		"copyright":    "Warren contributors",
		"information":  "Licensed under the Apache License 2.0",
		"cluster_name": c.cfg.ClusterName,
		"capabilities": amqp.Table{
			"publisher_confirms":           true,
			"exchange_exchange_bindings":   true,
			"basic.nack":                   true,
			"consumer_cancel_notify":       true,
			"connection.blocked":           true,
			"consumer_priorities":          true,
			"authentication_failure_close": true,
			"per_consumer_qos":             true,
			"direct_reply_to":              true,
		},
	}
}

// expect reads frames until a method arrives on channel 0 (heartbeats are
// allowed during the handshake) and returns it.
func (c *Conn) expect() (amqp.Method, error) {
	for i := 0; i < 16; i++ {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		if f.Type == amqp.FrameHeartbeat {
			continue
		}
		if f.Type != amqp.FrameMethod || f.Channel != 0 {
			return nil, amqp.NewError(amqp.UnexpectedFrame, 0, 0, "unexpected frame type %d on channel %d during the handshake", f.Type, f.Channel)
		}
		return amqp.DecodeMethod(f.Payload)
	}
	return nil, fmt.Errorf("too many heartbeats during the handshake")
}

// handshakeFail closes the connection with e during the handshake.
func (c *Conn) handshakeFail(e *amqp.Error) error {
	c.log.Warn("connection refused during handshake", "code", e.Code, "text", e.Text)
	c.writeMethod(0, &amqp.ConnectionClose{ReplyCode: e.Code, ReplyText: e.Text, ClassId: e.ClassID, MethodId: e.MethodID})
	c.flushAndWait()
	return errQuiet
}

func (c *Conn) handshake() error {
	c.writeMethod(0, &amqp.ConnectionStart{
		VersionMajor:     0,
		VersionMinor:     9,
		ServerProperties: c.serverProperties(),
		Mechanisms:       "PLAIN AMQPLAIN",
		Locales:          "en_US",
	})
	m, err := c.expect()
	if err != nil {
		return err
	}
	so, ok := m.(*amqp.ConnectionStartOk)
	if !ok {
		return c.handshakeFail(amqp.NewError(amqp.CommandInvalid, m.ClassID(), m.MethodID(), "expected 'connection.start_ok', got '%s'", m.Name()))
	}
	c.clientProps = so.ClientProperties
	if name, ok := so.ClientProperties["connection_name"].(string); ok {
		c.log = c.log.With("name", name)
	}
	user, err := c.srv.Authenticate(so.Mechanism, []byte(so.Response), c.nc.RemoteAddr())
	if err != nil {
		e := amqp.NewError(amqp.AccessRefused, 0, 0, "Login was refused using authentication mechanism %s. For details see the broker logfile.", so.Mechanism)
		var ae *amqp.Error
		if errors.As(err, &ae) {
			e = &amqp.Error{Code: ae.Code, Text: ae.Text} // RabbitMQ names no method here
		}
		caps, _ := so.ClientProperties["capabilities"].(amqp.Table)
		if notify, _ := caps["authentication_failure_close"].(bool); !notify {
			// RabbitMQ 3.10 (rabbit_reader:auth_fail) sends connection.close
			// on a failed login only to clients announcing
			// authentication_failure_close; others see the socket close,
			// which they report as bad credentials (amqp091-go's
			// ErrCredentials, which applications test for).
			c.log.Warn("connection refused during handshake", "code", e.Code, "text", e.Text)
			return errQuiet
		}
		return c.handshakeFail(e)
	}
	c.user = user
	c.writeMethod(0, &amqp.ConnectionTune{ChannelMax: c.cfg.ChannelMax, FrameMax: c.cfg.FrameMax, Heartbeat: c.cfg.Heartbeat})
	m, err = c.expect()
	if err != nil {
		return err
	}
	to, ok := m.(*amqp.ConnectionTuneOk)
	if !ok {
		return c.handshakeFail(amqp.NewError(amqp.CommandInvalid, m.ClassID(), m.MethodID(), "expected 'connection.tune_ok', got '%s'", m.Name()))
	}
	switch {
	case to.FrameMax != 0 && to.FrameMax < amqp.FrameMinSize:
		return c.handshakeFail(amqp.NewError(amqp.NotAllowed, 10, 31, "frame_max=%d < %d min size", to.FrameMax, amqp.FrameMinSize))
	case to.FrameMax > c.cfg.FrameMax:
		return c.handshakeFail(amqp.NewError(amqp.NotAllowed, 10, 31, "frame_max=%d > %d max size", to.FrameMax, c.cfg.FrameMax))
	case to.ChannelMax > c.cfg.ChannelMax:
		return c.handshakeFail(amqp.NewError(amqp.NotAllowed, 10, 31, "channel_max=%d > %d max", to.ChannelMax, c.cfg.ChannelMax))
	}
	c.frameMax = c.cfg.FrameMax
	if to.FrameMax != 0 {
		c.frameMax = to.FrameMax
	}
	c.fr.SetFrameMax(c.frameMax)
	c.channelMax = c.cfg.ChannelMax
	if to.ChannelMax != 0 {
		c.channelMax = to.ChannelMax
	}
	c.heartbeat = to.Heartbeat
	m, err = c.expect()
	if err != nil {
		return err
	}
	op, ok := m.(*amqp.ConnectionOpen)
	if !ok {
		return c.handshakeFail(amqp.NewError(amqp.CommandInvalid, m.ClassID(), m.MethodID(), "expected 'connection.open', got '%s'", m.Name()))
	}
	vh, err := c.srv.OpenVHost(user, op.VirtualHost)
	if err != nil {
		var ae *amqp.Error
		if !errors.As(err, &ae) {
			ae = amqp.NewError(amqp.NotAllowed, 10, 40, "%v", err)
		}
		return c.handshakeFail(ae)
	}
	c.vhost = vh
	c.infoMu.Lock()
	c.info = Info{User: user, VHost: vh.Name(), FrameMax: c.frameMax, ChannelMax: c.channelMax, Heartbeat: c.heartbeat, ClientProps: c.clientProps}
	c.infoMu.Unlock()
	c.writeMethod(0, &amqp.ConnectionOpenOk{})
	if !c.srv.PublishAllowed() {
		c.SetBlocked(true, "low on resources")
	}
	now := nowNano()
	c.lastRead.Store(now)
	c.lastSent.Store(now)
	return nil
}
