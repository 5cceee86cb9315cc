package broker

import (
	"log/slog"

	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/wal"
)

// NewWithStoreFS builds a node whose message store uses fs.
func NewWithStoreFS(cfg config.Config, log *slog.Logger, fs wal.FS) (*Broker, error) {
	return newBroker(cfg, log, fs)
}
