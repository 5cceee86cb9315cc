package queue_test

import (
	"testing"

	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/queue/storetest"
)

func TestMemStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) queue.Store { return queue.NewMemStore() })
}
