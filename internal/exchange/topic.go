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
}

type node struct {
	children map[string]*node
	dests    []Destination
	refs     map[Destination]int
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
	n := r.root
	for _, w := range splitKey(b.Key) {
		c := n.children[w]
		if c == nil {
			c = newNode()
			n.children[w] = c
		}
		n = c
	}
	d := Destination{b.Destination, b.DestIsExchange}
	if n.refs == nil {
		n.refs = map[Destination]int{}
	}
	if n.refs[d] == 0 {
		n.dests = append(n.dests, d)
	}
	n.refs[d]++
	r.mu.Lock()
	clear(r.cache)
	r.mu.Unlock()
	return true
}

func (r *topic) Unbind(b Binding) bool {
	if !r.set.remove(b) {
		return false
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
	d := Destination{b.Destination, b.DestIsExchange}
	n.refs[d]--
	if n.refs[d] <= 0 {
		delete(n.refs, d)
		for i, x := range n.dests {
			if x == d {
				n.dests = append(n.dests[:i:i], n.dests[i+1:]...)
				break
			}
		}
	}
	// prune empty nodes
	for i := len(words) - 1; i >= 0; i-- {
		c := path[i+1]
		if len(c.dests) == 0 && len(c.children) == 0 {
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
	out = match(r.root, words, out, start)
	res := append([]Destination(nil), out[start:]...)
	r.mu.Lock()
	if len(r.cache) >= topicCacheMax {
		clear(r.cache)
	}
	r.cache[key] = res
	r.mu.Unlock()
	return out
}

func addDests(out []Destination, start int, ds []Destination) []Destination {
	for _, d := range ds {
		dup := false
		for _, x := range out[start:] {
			if x == d {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, d)
		}
	}
	return out
}

func match(n *node, words []string, out []Destination, start int) []Destination {
	if len(words) == 0 {
		out = addDests(out, start, n.dests)
		// a trailing '#' matches zero words
		if h := n.children["#"]; h != nil {
			out = match(h, nil, out, start)
		}
		return out
	}
	if c := n.children[words[0]]; c != nil {
		out = match(c, words[1:], out, start)
	}
	if c := n.children["*"]; c != nil {
		out = match(c, words[1:], out, start)
	}
	if h := n.children["#"]; h != nil {
		// '#' consumes zero or more words
		for i := 0; i <= len(words); i++ {
			out = match(h, words[i:], out, start)
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
