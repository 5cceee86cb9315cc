package queue

// Length limits (x-max-length, x-max-length-bytes) and what happens past them (x-overflow).

// Overflow behaviours of a length-limited queue.
const (
	DropHead         = "drop-head"
	RejectPublish    = "reject-publish"
	RejectPublishDLX = "reject-publish-dlx"
)

func (q *Queue) full(extra int) bool {
	return (q.set.MaxLength >= 0 && int64(q.count+1) > q.set.MaxLength) ||
		(q.set.MaxBytes >= 0 && int64(q.readyBytes+extra) > q.set.MaxBytes)
}

// enforceLimits drops (or dead-letters) from the head while over a limit.
func (q *Queue) enforceLimits() {
	if q.set.Overflow != DropHead {
		return
	}
	for q.count > 0 && ((q.set.MaxLength >= 0 && int64(q.count) > q.set.MaxLength) ||
		(q.set.MaxBytes >= 0 && int64(q.readyBytes) > q.set.MaxBytes)) {
		e := q.pop()
		q.stats.Dropped++
		q.queueDL(e, ReasonMaxLen)
	}
}
