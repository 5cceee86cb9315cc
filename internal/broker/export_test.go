package broker

import (
	"log/slog"
	"time"

	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/wal"
)

// NewWithStoreFS builds a node whose message store uses fs.
func NewWithStoreFS(cfg config.Config, log *slog.Logger, fs wal.FS) (*Broker, error) {
	return newBroker(cfg, log, fs)
}

// SetQuorumTimeout bounds the definition changes of a clustered node
// from now on (before any change is in flight).
func SetQuorumTimeout(b *Broker, d time.Duration) {
	if b.cluster != nil {
		b.cluster.rlog.Timeout = d
	}
}

// SetClusterSnapshotEvery makes clustered nodes started from now on
// snapshot their definitions every n entries (0: the default).
func SetClusterSnapshotEvery(n uint64) { snapshotEvery = n }
