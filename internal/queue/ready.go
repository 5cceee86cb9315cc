package queue

// The ready list: one level per priority (x-max-priority), each a fifo plus the requeued messages served first.

func (q *Queue) prio(m *Message) int {
	if len(q.levels) == 1 {
		return 0
	}
	return min(int(m.Priority), len(q.levels)-1)
}

func (q *Queue) push(e entry) {
	q.levels[e.prio].ready.push(e)
	q.count++
	q.readyBytes += int(e.size)
	q.addResident(e)
}

func (q *Queue) headLevel() *level {
	for i := len(q.levels) - 1; i >= 0; i-- {
		l := &q.levels[i]
		if len(l.returned) > 0 || l.ready.len() > 0 {
			return l
		}
	}
	return nil
}

// head returns the next message, its body in memory; messages whose body
// cannot be read back are dropped on the way.
func (q *Queue) head() (entry, bool) {
	for {
		l := q.headLevel()
		if l == nil {
			return entry{}, false
		}
		if len(l.returned) > 0 {
			return l.returned[0], true
		}
		e, _ := l.ready.peek()
		if e.msg != nil || q.load(l) {
			e, _ = l.ready.peek()
			return e, true
		}
		e = q.pop()
		q.stats.Dropped++
		q.forget(e)
	}
}

func (q *Queue) pop() entry {
	l := q.headLevel()
	var e entry
	if len(l.returned) > 0 {
		e = l.returned[0]
		l.returned[0] = entry{}
		l.returned = l.returned[1:]
		if len(l.returned) == 0 {
			l.returned = nil
		}
	} else {
		e = l.ready.pop()
	}
	q.count--
	q.readyBytes -= int(e.size)
	q.subResident(e)
	return e
}

// forgetReady forgets every ready message (purge, delete).
func (q *Queue) forgetReady() {
	for i := range q.levels {
		l := &q.levels[i]
		for _, e := range l.returned {
			q.forget(e)
		}
		l.ready.each(func(e *entry) bool { q.forget(*e); return true })
	}
}
