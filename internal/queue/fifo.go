package queue

// fifo: the chunked queue of entries under each priority level.

// fifo is a queue of entries in chunks (16 entries first, doubling up to
// maxChunk), so a long backlog grows without copying and a short queue
// stays small.
type fifo struct {
	chunks     [][]entry
	head, tail int // next to pop in chunks[0]; next free in the last chunk
	size       int
}

const maxChunk = 4096

func (f *fifo) len() int { return f.size }

func (f *fifo) push(e entry) {
	if n := len(f.chunks); n == 0 || f.tail == len(f.chunks[n-1]) {
		size := 16
		if n > 0 {
			size = min(2*len(f.chunks[n-1]), maxChunk)
		}
		f.chunks = append(f.chunks, make([]entry, size))
		f.tail = 0
	}
	f.chunks[len(f.chunks)-1][f.tail] = e
	f.tail++
	f.size++
}

func (f *fifo) peek() (entry, bool) {
	if f.size == 0 {
		return entry{}, false
	}
	return f.chunks[0][f.head], true
}

func (f *fifo) pop() entry {
	c := f.chunks[0]
	e := c[f.head]
	c[f.head] = entry{}
	f.head++
	f.size--
	switch {
	case f.size == 0:
		// keep one small chunk for reuse; give a drained backlog's back
		if len(f.chunks) > 1 || len(c) > 64 {
			f.chunks = nil
		}
		f.head, f.tail = 0, 0
	case f.head == len(c):
		f.chunks[0] = nil
		f.chunks = f.chunks[1:]
		f.head = 0
	}
	return e
}

// each calls fn on entries from the head until it returns false.
func (f *fifo) each(fn func(e *entry) bool) {
	left := f.size
	for ci, c := range f.chunks {
		start := 0
		if ci == 0 {
			start = f.head
		}
		for i := start; i < len(c) && left > 0; i++ {
			left--
			if !fn(&c[i]) {
				return
			}
		}
	}
}
