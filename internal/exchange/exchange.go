// Package exchange is pure message routing: direct, fanout, topic (a trie
// over dot-separated words) and headers exchanges. A Router holds one
// exchange's bindings; Route appends the destinations a routing key (and
// headers) reach. Routers are not safe for concurrent mutation: the vhost
// serialises Bind/Unbind and calls Route under its read lock.
//
//	r := exchange.NewRouter(exchange.Topic)
//	r.Bind(exchange.Binding{Destination: "q", Key: "stock.#"})
//	dests := r.Route("stock.nyse.ibm", nil, nil) // [{q false}]
package exchange

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Kind is an exchange type.
type Kind string

// The exchange types.
const (
	Direct  Kind = "direct"
	Fanout  Kind = "fanout"
	Topic   Kind = "topic"
	Headers Kind = "headers"
)

// ParseKind accepts the four standard types.
func ParseKind(s string) (Kind, bool) {
	switch k := Kind(s); k {
	case Direct, Fanout, Topic, Headers:
		return k, true
	}
	return "", false
}

// Binding is one binding of an exchange to a destination.
type Binding struct {
	Destination    string
	DestIsExchange bool
	Key            string
	Args           map[string]any
}

// Destination is a queue or exchange a message is routed to.
type Destination struct {
	Name       string
	IsExchange bool
}

// Router routes for one exchange.
type Router interface {
	Bind(b Binding) (added bool)
	Unbind(b Binding) (removed bool)
	Route(key string, headers map[string]any, out []Destination) []Destination
	Bindings() []Binding
	Len() int
}

// NewRouter returns the router for kind.
func NewRouter(kind Kind) Router {
	switch kind {
	case Fanout:
		return &fanout{set: newSet()}
	case Topic:
		return newTopic()
	case Headers:
		return &headers{set: newSet()}
	}
	return &direct{byKey: map[string]*destSet{}, set: newSet()}
}

func bindingID(b Binding) string {
	return fmt.Sprintf("%t\x00%s\x00%s\x00%v", b.DestIsExchange, b.Destination, b.Key, canonArgs(b.Args))
}

func canonArgs(a map[string]any) string {
	if len(a) == 0 {
		return ""
	}
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s=%v;", k, normalise(a[k]))
	}
	return sb.String()
}

// set keeps bindings in a deterministic order.
type set struct {
	m map[string]Binding
}

func newSet() set { return set{m: map[string]Binding{}} }

func (s *set) add(b Binding) bool {
	id := bindingID(b)
	if _, ok := s.m[id]; ok {
		return false
	}
	s.m[id] = b
	return true
}

func (s *set) remove(b Binding) bool {
	id := bindingID(b)
	if _, ok := s.m[id]; !ok {
		return false
	}
	delete(s.m, id)
	return true
}

func (s *set) list() []Binding {
	out := make([]Binding, 0, len(s.m))
	for _, b := range s.m {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Destination != out[j].Destination {
			return out[i].Destination < out[j].Destination
		}
		return out[i].Key < out[j].Key
	})
	return out
}

func appendUnique(out []Destination, d Destination) []Destination {
	for _, x := range out {
		if x == d {
			return out
		}
	}
	return append(out, d)
}

// destSet is a set of destinations with a reference count each (several
// bindings may link the same destination): add and remove are O(1), and
// list is a slice Route can copy.
type destSet struct {
	list []Destination
	at   map[Destination]destRef
}

type destRef struct{ i, refs int }

func (s *destSet) add(d Destination) {
	if s.at == nil {
		s.at = map[Destination]destRef{}
	}
	r, ok := s.at[d]
	if !ok {
		r.i = len(s.list)
		s.list = append(s.list, d)
	}
	r.refs++
	s.at[d] = r
}

func (s *destSet) remove(d Destination) {
	r, ok := s.at[d]
	if !ok {
		return
	}
	if r.refs > 1 {
		r.refs--
		s.at[d] = r
		return
	}
	delete(s.at, d)
	last := len(s.list) - 1
	if r.i != last {
		moved := s.list[last]
		s.list[r.i] = moved
		m := s.at[moved]
		m.i = r.i
		s.at[moved] = m
	}
	s.list[last] = Destination{}
	s.list = s.list[:last]
}

func (s *destSet) empty() bool { return len(s.list) == 0 }

// ---- direct ----

type direct struct {
	byKey map[string]*destSet
	set   set
}

func (r *direct) Bind(b Binding) bool {
	if !r.set.add(b) {
		return false
	}
	ds := r.byKey[b.Key]
	if ds == nil {
		ds = &destSet{}
		r.byKey[b.Key] = ds
	}
	ds.add(Destination{b.Destination, b.DestIsExchange})
	return true
}

func (r *direct) Unbind(b Binding) bool {
	if !r.set.remove(b) {
		return false
	}
	// another binding with other args may still link key and destination:
	// the reference count keeps it
	if ds := r.byKey[b.Key]; ds != nil {
		ds.remove(Destination{b.Destination, b.DestIsExchange})
		if ds.empty() {
			delete(r.byKey, b.Key)
		}
	}
	return true
}

func (r *direct) Route(key string, _ map[string]any, out []Destination) []Destination {
	if ds := r.byKey[key]; ds != nil {
		return append(out, ds.list...)
	}
	return out
}

func (r *direct) Bindings() []Binding { return r.set.list() }
func (r *direct) Len() int            { return len(r.set.m) }

// ---- fanout ----

// fanout keeps its destinations in a destSet: binding and unbinding are
// O(1) however many queues are bound (20,000 exclusive queues on one
// fanout used to rebuild the list on every bind).
type fanout struct {
	set   set
	dests destSet
}

func (r *fanout) Bind(b Binding) bool {
	if !r.set.add(b) {
		return false
	}
	r.dests.add(Destination{b.Destination, b.DestIsExchange})
	return true
}

func (r *fanout) Unbind(b Binding) bool {
	if !r.set.remove(b) {
		return false
	}
	r.dests.remove(Destination{b.Destination, b.DestIsExchange})
	return true
}

func (r *fanout) Route(_ string, _ map[string]any, out []Destination) []Destination {
	return append(out, r.dests.list...)
}

func (r *fanout) Bindings() []Binding { return r.set.list() }
func (r *fanout) Len() int            { return len(r.set.m) }

// ---- headers ----

type headers struct{ set set }

func (r *headers) Bind(b Binding) bool   { return r.set.add(b) }
func (r *headers) Unbind(b Binding) bool { return r.set.remove(b) }
func (r *headers) Bindings() []Binding   { return r.set.list() }
func (r *headers) Len() int              { return len(r.set.m) }

func (r *headers) Route(_ string, h map[string]any, out []Destination) []Destination {
	for _, b := range r.set.m {
		if headersMatch(b.Args, h) {
			out = appendUnique(out, Destination{b.Destination, b.DestIsExchange})
		}
	}
	return out
}

// headersMatch implements x-match all / any / all-with-x / any-with-x as
// RabbitMQ does (rabbit_exchange_type_headers): a binding argument whose
// value is void matches on presence alone.
func headersMatch(args, h map[string]any) bool {
	mode, _ := args["x-match"].(string)
	if mode == "" {
		mode = "all"
	}
	withX := strings.HasSuffix(mode, "-with-x")
	all := strings.HasPrefix(mode, "all")
	matched := 0
	for k, want := range args {
		if k == "x-match" || (!withX && strings.HasPrefix(k, "x-")) {
			continue
		}
		got, ok := h[k]
		hit := ok && (want == nil || reflect.DeepEqual(normalise(want), normalise(got)))
		if all && !hit {
			return false
		}
		if hit {
			matched++
			if !all {
				return true
			}
		}
	}
	return all
}

func normalise(v any) any {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case uint8:
		return int64(x)
	case int16:
		return int64(x)
	case uint16:
		return int64(x)
	case int32:
		return int64(x)
	case uint32:
		return int64(x)
	case int:
		return int64(x)
	case []byte:
		return string(x)
	}
	return v
}

// ValidateBinding checks a binding's arguments for an exchange of kind as
// RabbitMQ 3.10 does when the binding is created (the exchange type's
// validate_binding): for headers exchanges x-match must be a string, one of
// all, any, all-with-x, any-with-x. It returns the reason, "" when valid.
func ValidateBinding(kind Kind, args map[string]any) string {
	if kind != Headers {
		return ""
	}
	v, ok := args["x-match"]
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if b, isBytes := v.([]byte); isBytes {
		s, isStr = string(b), true
	}
	if !isStr {
		return fmt.Sprintf("Invalid x-match field type %T (value %v); expected longstr", v, v)
	}
	switch s {
	case "all", "any", "all-with-x", "any-with-x":
		return ""
	}
	return fmt.Sprintf("Invalid x-match field value <<%q>>; expected all, any, all-with-x, or any-with-x", s)
}
