package conn

import (
	"log/slog"
	"net"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/queue"
)

// VHost is what a connection needs from the virtual host it opened: every
// call is already checked against the connection user's permissions by the
// implementation, and errors are *amqp.Error values carrying the reply code.
// owner is the connection's id, used for exclusive queues.
type VHost interface {
	Name() string
	DeclareExchange(m *amqp.ExchangeDeclare) error
	DeleteExchange(m *amqp.ExchangeDelete) error
	BindExchange(m *amqp.ExchangeBind) error
	UnbindExchange(m *amqp.ExchangeUnbind) error
	// DeclareQueue returns the queue name (server-generated when m.Queue is
	// empty), its ready message count and consumer count.
	DeclareQueue(m *amqp.QueueDeclare, owner uint64) (string, uint32, uint32, error)
	DeleteQueue(m *amqp.QueueDelete, owner uint64) (uint32, error)
	PurgeQueue(m *amqp.QueuePurge, owner uint64) (uint32, error)
	BindQueue(m *amqp.QueueBind, owner uint64) error
	UnbindQueue(m *amqp.QueueUnbind, owner uint64) error
	// QueueFor returns a queue for basic.consume / basic.get after checking read
	// permission and exclusivity.
	// Errors name method m (basic.consume or basic.get).
	QueueFor(m amqp.Method, name string, owner uint64) (queue.Handle, error)
	// Publish routes msg from exchange with routing key and enqueues it:
	// how many queues took it, whether any refused it (reject-publish), and
	// the store position a confirm must wait for.
	Publish(exchange, key string, msg *queue.Message) (queue.Routed, error)
	// RegisterReplyTo routes messages published to the default exchange
	// with routing key name (amq.rabbitmq.reply-to.*) to deliver.
	RegisterReplyTo(name string, deliver func(*queue.Message) bool)
	// UnregisterReplyTo removes a direct reply-to target.
	UnregisterReplyTo(name string)
	// CanPublish checks that exchange exists and may be written to.
	CanPublish(exchange string) error
	// ConnectionClosed deletes the exclusive queues owned by owner.
	ConnectionClosed(owner uint64)
}

// Durability tells when a store position is on disk (publisher confirms of
// persistent messages wait for it).
type Durability interface {
	OnDurable(pos uint64, fn func(error))
}

// Server is what a connection needs from the node that accepted it.
type Server interface {
	// Authenticate checks a SASL response and returns the user name.
	Authenticate(mechanism string, response []byte, remote net.Addr) (string, error)
	// OpenVHost returns the vhost view for user, or an *amqp.Error
	// (530 NOT_ALLOWED) when the vhost is missing or access is refused.
	OpenVHost(user, vhost string) (VHost, error)
	// PublishAllowed is false while a resource alarm blocks publishers.
	PublishAllowed() bool
	// CanImpersonate reports whether user has the impersonator tag (may
	// publish with another user's user_id property).
	CanImpersonate(user string) bool
}

// Config holds the limits and identity a connection negotiates with.
type Config struct {
	ChannelMax     uint16
	FrameMax       uint32
	Heartbeat      uint16
	MaxMessageSize int
	Durability     Durability // nil: nothing is persisted
	Product        string
	Version        string
	ClusterName    string
	// ReplyToTag is the node's part of direct reply-to names (no dots):
	// in a cluster it names the node, so that a reply published through
	// another node finds its way back (vhost.ReplyToNode).
	ReplyToTag string
	Logger     *slog.Logger
}

func (c *Config) fill() {
	if c.ChannelMax == 0 {
		c.ChannelMax = 2047
	}
	if c.FrameMax == 0 {
		c.FrameMax = 131072
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 128 << 20
	}
	if c.Product == "" {
		c.Product = "Warren"
	}
	if c.Version == "" {
		c.Version = "0.1.0"
	}
	if c.ReplyToTag == "" {
		c.ReplyToTag = "g1h2AA5yZXBseUAx"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
