package queue

import (
	"math"
	"time"
)

// Message TTL (x-message-ttl, per-message expiration): expiring ready messages.

// dropExpiredHead removes expired messages at the head.
func (q *Queue) dropExpiredHead() {
	if q.nextExpiry == 0 {
		return
	}
	now := q.now().UnixNano()
	for {
		e, ok := q.head()
		if !ok || e.expiresAt == 0 || e.expiresAt > now {
			return
		}
		q.pop()
		q.stats.Expired++
		q.queueDL(e, ReasonExpired)
	}
}

// msDuration converts milliseconds to a Duration, saturating instead of
// overflowing (a TTL of 2^63-1 ms means "never", not "already").
func msDuration(ms int64) time.Duration {
	switch {
	case ms <= 0:
		return 0
	case ms > math.MaxInt64/int64(time.Millisecond):
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

// addSat adds a non-negative b to a, saturating at math.MaxInt64.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// armTTL schedules a sweep at the earliest message expiry.
func (q *Queue) armTTL() {
	if q.nextExpiry == 0 || q.deleted {
		return
	}
	d := time.Duration(q.nextExpiry - q.now().UnixNano())
	if d < 0 {
		d = 0
	}
	if q.ttlTimer == nil {
		q.ttlTimer = time.AfterFunc(d, q.sweep)
	} else {
		q.ttlTimer.Reset(d)
	}
}

// sweep removes every expired ready message, wherever it sits, and
// dead-letters it.
func (q *Queue) sweep() {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return
	}
	now := q.now().UnixNano()
	next := int64(0)
	keep := func(e entry) bool {
		if e.expiresAt != 0 && e.expiresAt <= now {
			q.count--
			q.readyBytes -= int(e.size)
			q.subResident(e)
			q.stats.Expired++
			q.queueDL(e, ReasonExpired)
			return false
		}
		if e.expiresAt != 0 && (next == 0 || e.expiresAt < next) {
			next = e.expiresAt
		}
		return true
	}
	for i := range q.levels {
		l := &q.levels[i]
		rs := l.returned[:0]
		for _, e := range l.returned {
			if keep(e) {
				rs = append(rs, e)
			}
		}
		l.returned = rs
		var nf fifo
		for l.ready.len() > 0 {
			if e := l.ready.pop(); keep(e) {
				nf.push(e)
			}
		}
		l.ready = nf
	}
	q.nextExpiry = next
	q.armTTL()
	q.dispatch()
	dls := q.takeDL()
	q.mu.Unlock()
	q.deadLetter(dls)
}
