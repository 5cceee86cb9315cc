package exchange

import (
	"strings"
	"sync"
)

// topic is a trie over routing-key words; '*' matches one word and '#'
// zero or more (RabbitMQ's rabbit_exchange_type_topic semantics). Results
// for recent keys are cached; any bind or unbind clears the cache.
type topic struct {
	set  set
	root *node
	// Route runs concurrently under the vhost's read lock, so the cache has
	// its own lock.
	mu    sync.Mutex
	cache map[string][]Destination
	// hashKeys counts bindings whose key has a '#' word
	hashKeys int
}

func hasHash(key string) bool {
	for _, w := range splitKey(key) {
		if w == "#" {
			return true
		}
	}
	return false
}

type node struct {
	children map[string]*node
	dests    destSet
}

func newNode() *node { return &node{children: map[string]*node{}} }

func newTopic() *topic {
	return &topic{set: newSet(), root: newNode(), cache: map[string][]Destination{}}
}

const topicCacheMax = 4096

func (r *topic) Bind(b Binding) bool {
	if !r.set.add(b) {
		return false
	}
	if hasHash(b.Key) {
		r.hashKeys++
	}
	n := r.root
	for _, w := range splitKey(b.Key) {
		c := n.children[w]
		if c == nil {
			c = newNode()
			n.children[w] = c
		}
		n = c
	}
	n.dests.add(Destination{b.Destination, b.DestIsExchange})
	r.mu.Lock()
	clear(r.cache)
	r.mu.Unlock()
	return true
}

func (r *topic) Unbind(b Binding) bool {
	if !r.set.remove(b) {
		return false
	}
	if hasHash(b.Key) {
		r.hashKeys--
	}
	words := splitKey(b.Key)
	path := []*node{r.root}
	n := r.root
	for _, w := range words {
		n = n.children[w]
		if n == nil {
			return true
		}
		path = append(path, n)
	}
	n.dests.remove(Destination{b.Destination, b.DestIsExchange})
	// prune empty nodes
	for i := len(words) - 1; i >= 0; i-- {
		c := path[i+1]
		if c.dests.empty() && len(c.children) == 0 {
			delete(path[i].children, words[i])
		} else {
			break
		}
	}
	r.mu.Lock()
	clear(r.cache)
	r.mu.Unlock()
	return true
}

func (r *topic) Bindings() []Binding { return r.set.list() }
func (r *topic) Len() int            { return len(r.set.m) }

func (r *topic) Route(key string, _ map[string]any, out []Destination) []Destination {
	r.mu.Lock()
	ds, ok := r.cache[key]
	r.mu.Unlock()
	if ok {
		return append(out, ds...)
	}
	start := len(out)
	words := splitKey(key)
	m := matcher{words: words, start: start, memo: r.hashKeys > 0}
	out = m.match(r.root, 0, out)
	res := append([]Destination(nil), out[start:]...)
	r.mu.Lock()
	if len(r.cache) >= topicCacheMax {
		clear(r.cache)
	}
	r.cache[key] = res
	r.mu.Unlock()
	return out
}

// matcher walks the trie for one routing key. Each (node, word position)
// state is explored once: with '#' able to consume any number of words,
// a plain recursion revisits the same states exponentially often (a
// binding "#.#.#.#.#.#.#.#.z" and a 60-word key took minutes); memoised,
// the walk is O(trie nodes x words) at worst.
type matcher struct {
	words []string
	start int
	memo  bool // some binding key has a '#'
	seen  map[matchState]struct{}
	dedup map[Destination]struct{} // once the result is large
}

type matchState struct {
	n *node
	i int
}

func (m *matcher) add(out []Destination, ds []Destination) []Destination {
	for _, d := range ds {
		if m.dedup != nil {
			if _, ok := m.dedup[d]; ok {
				continue
			}
			m.dedup[d] = struct{}{}
			out = append(out, d)
			continue
		}
		dup := false
		for _, x := range out[m.start:] {
			if x == d {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, d)
		}
		if len(out)-m.start > 32 {
			// linear de-duplication would make big fan-outs quadratic
			m.dedup = make(map[Destination]struct{}, 2*(len(out)-m.start))
			for _, x := range out[m.start:] {
				m.dedup[x] = struct{}{}
			}
		}
	}
	return out
}

func (m *matcher) match(n *node, i int, out []Destination) []Destination {
	if m.memo {
		// with '#' in the trie a state can be reached along many paths
		if m.seen == nil {
			m.seen = map[matchState]struct{}{}
		}
		st := matchState{n, i}
		if _, ok := m.seen[st]; ok {
			return out
		}
		m.seen[st] = struct{}{}
	}
	if i == len(m.words) {
		out = m.add(out, n.dests.list)
		// a trailing '#' matches zero words
		if h := n.children["#"]; h != nil {
			out = m.match(h, i, out)
		}
		return out
	}
	if c := n.children[m.words[i]]; c != nil {
		out = m.match(c, i+1, out)
	}
	if c := n.children["*"]; c != nil {
		out = m.match(c, i+1, out)
	}
	if h := n.children["#"]; h != nil {
		// '#' consumes zero or more words
		for j := i; j <= len(m.words); j++ {
			out = m.match(h, j, out)
		}
	}
	return out
}

// splitKey splits a routing or binding key into words; the empty key has
// no words (so "*" does not match it, "#" does).
func splitKey(k string) []string {
	if k == "" {
		return nil
	}
	return strings.Split(k, ".")
}
