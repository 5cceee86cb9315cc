package queue

// Figures are a queue's numbers for the management API, read at once.
type Figures struct {
	Ready, Unacked, Consumers int
	ReadyBytes                int
	InMemory                  int   // ready messages whose body is in memory
	InMemoryBytes             int64 // their bytes (the rest are paged out)
	Stats                     Stats
}

// Figures returns the queue's figures.
func (q *Queue) Figures() Figures {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Figures{Ready: q.count, Unacked: len(q.unacked), Consumers: len(q.consumers), ReadyBytes: q.readyBytes,
		InMemory: q.nResident, InMemoryBytes: q.resident, Stats: q.stats}
}
