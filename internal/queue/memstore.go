package queue

import (
	"fmt"
	"sync"
)

// MemStore is a Store in memory: the reference implementation the store
// conformance suite (queue/storetest) checks the others against, and a
// store for tests. It keeps nothing across restarts.
type MemStore struct {
	mu   sync.Mutex
	next uint64
	msgs map[uint64]*memRecord
}

type memRecord struct {
	queue     string
	msg       Message
	expiresAt int64
	delivered bool
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore { return &MemStore{msgs: map[uint64]*memRecord{}} }

// Enqueue keeps a copy of m.
func (s *MemStore) Enqueue(queue string, m *Message, expiresAt int64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	c := *m
	c.Props = append([]byte(nil), m.Props...)
	c.Body = append([]byte(nil), m.Body...)
	s.msgs[s.next] = &memRecord{queue: queue, msg: c, expiresAt: expiresAt}
	return s.next, nil
}

// Remove forgets messages.
func (s *MemStore) Remove(queue string, refs []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range refs {
		delete(s.msgs, r)
	}
}

// Delivered marks messages delivered.
func (s *MemStore) Delivered(queue string, refs []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range refs {
		if m := s.msgs[r]; m != nil {
			m.delivered = true
		}
	}
}

// Load returns copies of stored messages.
func (s *MemStore) Load(refs []uint64, fn func(i int, m *Message)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range refs {
		m := s.msgs[r]
		if m == nil {
			return fmt.Errorf("memstore: message %d is not stored", r)
		}
		c := m.msg
		fn(i, &c)
	}
	return nil
}
