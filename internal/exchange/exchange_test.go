package exchange

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"
)

func names(ds []Destination) string {
	s := make([]string, 0, len(ds))
	for _, d := range ds {
		s = append(s, d.Name)
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

func TestTopicRabbitMQExamples(t *testing.T) {
	r := NewRouter(Topic)
	for _, b := range []struct{ q, k string }{
		{"Q1", "*.orange.*"}, {"Q2", "*.*.rabbit"}, {"Q2", "lazy.#"}, {"all", "#"}, {"tailhash", "a.#"}, {"headhash", "#.a"},
	} {
		r.Bind(Binding{Destination: b.q, Key: b.k})
	}
	for key, want := range map[string]string{
		"quick.orange.rabbit":      "Q1,Q2,all",
		"lazy.orange.elephant":     "Q1,Q2,all",
		"quick.orange.fox":         "Q1,all",
		"lazy.brown.fox":           "Q2,all",
		"lazy.pink.rabbit":         "Q2,all",
		"quick.brown.fox":          "all",
		"orange":                   "all",
		"quick.orange.male.rabbit": "all",
		"lazy.orange.male.rabbit":  "Q2,all",
		"a":                        "all,headhash,tailhash",
		"":                         "all",
		"x.a":                      "all,headhash",
	} {
		if got := names(r.Route(key, nil, nil)); got != want {
			t.Errorf("%q: got %s want %s", key, got, want)
		}
	}
}

// refMatch is a naive backtracking matcher over words, the reference the
// trie is checked against.
func refMatch(pattern, key string) bool {
	var m func(p, k []string) bool
	m = func(p, k []string) bool {
		if len(p) == 0 {
			return len(k) == 0
		}
		switch p[0] {
		case "#":
			for i := 0; i <= len(k); i++ {
				if m(p[1:], k[i:]) {
					return true
				}
			}
			return false
		case "*":
			return len(k) > 0 && m(p[1:], k[1:])
		}
		return len(k) > 0 && k[0] == p[0] && m(p[1:], k[1:])
	}
	var kw []string
	if key != "" {
		kw = strings.Split(key, ".")
	}
	var pw []string
	if pattern != "" {
		pw = strings.Split(pattern, ".")
	}
	return m(pw, kw)
}

func TestTopicAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	words := []string{"a", "b", "c", "*", "#"}
	keyWords := []string{"a", "b", "c", "d"}
	gen := func(ws []string, max int) string {
		n := 1 + rng.Intn(max)
		p := make([]string, n)
		for i := range p {
			p[i] = ws[rng.Intn(len(ws))]
		}
		return strings.Join(p, ".")
	}
	for round := 0; round < 200; round++ {
		r := NewRouter(Topic)
		pats := map[string]string{}
		for i := 0; i < 8; i++ {
			p := gen(words, 4)
			q := "q" + string(rune('0'+i))
			pats[q] = p
			r.Bind(Binding{Destination: q, Key: p})
		}
		for j := 0; j < 20; j++ {
			key := gen(keyWords, 5)
			if j == 0 {
				key = ""
			}
			var want []string
			for q, p := range pats {
				if refMatch(p, key) {
					want = append(want, q)
				}
			}
			sort.Strings(want)
			if got := names(r.Route(key, nil, nil)); got != strings.Join(want, ",") {
				t.Fatalf("key %q patterns %v: got %s want %v", key, pats, got, want)
			}
		}
	}
}

func TestUnbindAndCacheInvalidation(t *testing.T) {
	r := NewRouter(Topic)
	b := Binding{Destination: "q", Key: "a.*"}
	r.Bind(b)
	if names(r.Route("a.b", nil, nil)) != "q" {
		t.Fatal("bind")
	}
	if !r.Unbind(b) || r.Unbind(b) {
		t.Fatal("unbind result")
	}
	if names(r.Route("a.b", nil, nil)) != "" || r.Len() != 0 {
		t.Fatal("cache not invalidated")
	}
}

func TestDirectFanoutDedup(t *testing.T) {
	d := NewRouter(Direct)
	d.Bind(Binding{Destination: "q", Key: "k"})
	d.Bind(Binding{Destination: "q", Key: "k", Args: map[string]any{"x": 1}})
	if d.Len() != 2 || names(d.Route("k", nil, nil)) != "q" {
		t.Fatalf("direct dedup: %d %s", d.Len(), names(d.Route("k", nil, nil)))
	}
	d.Unbind(Binding{Destination: "q", Key: "k"})
	if names(d.Route("k", nil, nil)) != "q" {
		t.Fatal("remaining binding with args lost")
	}
	f := NewRouter(Fanout)
	f.Bind(Binding{Destination: "a"})
	f.Bind(Binding{Destination: "b", Key: "ignored"})
	f.Bind(Binding{Destination: "x", DestIsExchange: true})
	if got := f.Route("any", nil, nil); len(got) != 3 {
		t.Fatalf("fanout %v", got)
	}
}

func TestHeadersMatch(t *testing.T) {
	h := NewRouter(Headers)
	h.Bind(Binding{Destination: "all", Args: map[string]any{"x-match": "all", "a": int32(1), "b": "x"}})
	h.Bind(Binding{Destination: "any", Args: map[string]any{"x-match": "any", "a": int64(1), "c": "y"}})
	h.Bind(Binding{Destination: "present", Args: map[string]any{"p": nil}})
	h.Bind(Binding{Destination: "withx", Args: map[string]any{"x-match": "any-with-x", "x-k": "v"}})
	h.Bind(Binding{Destination: "nox", Args: map[string]any{"x-match": "any", "x-k": "v"}})
	for _, tc := range []struct {
		hdr  map[string]any
		want string
	}{
		{map[string]any{"a": int8(1), "b": []byte("x")}, "all,any"},
		{map[string]any{"c": "y"}, "any"},
		{map[string]any{"p": "anything"}, "present"},
		{map[string]any{"x-k": "v"}, "withx"},
		{nil, ""},
	} {
		if got := names(h.Route("", tc.hdr, nil)); got != tc.want {
			t.Errorf("%v: got %s want %s", tc.hdr, got, tc.want)
		}
	}
}

func BenchmarkRoute(b *testing.B) {
	d := NewRouter(Direct)
	d.Bind(Binding{Destination: "q", Key: "k"})
	f := NewRouter(Fanout)
	for i := 0; i < 10; i++ {
		f.Bind(Binding{Destination: "q" + string(rune('a'+i))})
	}
	tp := NewRouter(Topic)
	for i := 0; i < 1000; i++ {
		k := "k" + string(rune('a'+i%26)) + ".x"
		if i%10 == 0 {
			k = "match.#"
		}
		tp.Bind(Binding{Destination: "q" + strings.Repeat("z", i%7) + string(rune(i)), Key: k})
	}
	out := make([]Destination, 0, 256)
	for _, c := range []struct {
		name string
		r    Router
		key  string
	}{{"direct", d, "k"}, {"fanout10", f, ""}, {"topic1000", tp, "match.a.b"}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				out = c.r.Route(c.key, nil, out[:0])
			}
		})
	}
}

// within runs fn and fails the test if it does not finish in d (a
// deadline, not a timing assertion: the old code took minutes).
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v", what, d)
	}
}

// TestTopicManyHashesIsNotExponential: a binding of eight '#' words and a
// 60-word key routed for 237 s under the vhost lock.
func TestTopicManyHashesIsNotExponential(t *testing.T) {
	r := NewRouter(Topic)
	r.Bind(Binding{Destination: "z", Key: "#.#.#.#.#.#.#.#.z"})
	r.Bind(Binding{Destination: "y", Key: "#.y.#.#.*.#.#.#"})
	words := make([]string, 60)
	for i := range words {
		words[i] = "w"
	}
	miss := strings.Join(words, ".")
	words[59] = "z"
	hit := strings.Join(words, ".")
	within(t, 20*time.Second, "routing a 60-word key", func() {
		if got := names(r.Route(miss, nil, nil)); got != "" {
			t.Errorf("miss: %s", got)
		}
		if got := names(r.Route(hit, nil, nil)); got != "z" {
			t.Errorf("hit: %s", got)
		}
	})
}

// TestManyBindingsAreCheap: 20,000 queues bound to one fanout (and one
// direct key) then unbound: each bind or unbind used to rebuild or scan
// the whole destination list.
func TestManyBindingsAreCheap(t *testing.T) {
	const n = 20000
	for _, kind := range []Kind{Fanout, Direct, Topic} {
		r := NewRouter(kind)
		within(t, 20*time.Second, string(kind)+" binds", func() {
			for i := 0; i < n; i++ {
				r.Bind(Binding{Destination: fmt.Sprintf("q%d", i), Key: "k"})
			}
		})
		if got := len(r.Route("k", nil, nil)); got != n {
			t.Fatalf("%s: %d destinations, want %d", kind, got, n)
		}
		within(t, 20*time.Second, string(kind)+" unbinds", func() {
			for i := 0; i < n; i += 2 {
				r.Unbind(Binding{Destination: fmt.Sprintf("q%d", i), Key: "k"})
			}
		})
		got := r.Route("k", nil, nil)
		if len(got) != n/2 {
			t.Fatalf("%s: %d destinations after unbinding half, want %d", kind, len(got), n/2)
		}
		seen := map[string]bool{}
		for _, d := range got {
			var i int
			fmt.Sscanf(d.Name, "q%d", &i)
			if i%2 == 0 || seen[d.Name] {
				t.Fatalf("%s: wrong or duplicate destination %s", kind, d.Name)
			}
			seen[d.Name] = true
		}
	}
}

// TestTopicLargeFanOutDedup: many bindings reaching the same queues by
// different patterns still route each queue once.
func TestTopicLargeFanOutDedup(t *testing.T) {
	r := NewRouter(Topic)
	for i := 0; i < 100; i++ {
		for _, p := range []string{"a.*", "#", "a.#", "*.b"} {
			r.Bind(Binding{Destination: fmt.Sprintf("q%d", i), Key: p})
		}
	}
	if got := r.Route("a.b", nil, nil); len(got) != 100 {
		t.Fatalf("%d destinations, want 100", len(got))
	}
}
