package queue

import "time"

// Queue expiry (x-expires): deleting a queue left unused.

// Touch records use of the queue (redeclare), for x-expires.
func (q *Queue) Touch() {
	q.mu.Lock()
	q.touch()
	q.armExpiry()
	q.mu.Unlock()
}

func (q *Queue) touch() { q.lastUsed = q.now() }

// armExpiry (re)starts the x-expires timer while the queue is unused.
func (q *Queue) armExpiry() {
	if q.expTimer != nil {
		q.expTimer.Stop()
		q.expTimer = nil
	}
	if q.set.Expires <= 0 || q.deleted || len(q.consumers) > 0 || q.OnExpire == nil {
		return
	}
	d := msDuration(q.set.Expires)
	q.expTimer = time.AfterFunc(d, q.checkExpiry)
}

func (q *Queue) checkExpiry() {
	q.mu.Lock()
	idle := q.now().Sub(q.lastUsed)
	d := msDuration(q.set.Expires)
	expired := !q.deleted && len(q.consumers) == 0 && q.set.Expires > 0 && idle >= d
	if !expired && !q.deleted && q.set.Expires > 0 && len(q.consumers) == 0 {
		q.expTimer = time.AfterFunc(d-idle, q.checkExpiry)
	}
	q.mu.Unlock()
	if expired && q.OnExpire != nil {
		q.OnExpire(q)
	}
}
