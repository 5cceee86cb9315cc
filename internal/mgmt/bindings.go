package mgmt

import (
	"net/http"
	"sort"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/metadata"
)

// bindingRoutes: /api/bindings, /api/bindings/{vhost}, and the bindings
// from exchange {source} to queue (q) or exchange (e) {destination}:
// /api/bindings/{vhost}/e/{source}/{q|e}/{destination}[/{props}], where
// props is a binding's properties_key. Any other path below
// /api/bindings is 404 (HEAD of the lists too, as the switch router
// answered); below a binding path every answer comes after the vhost
// check.
func (s *Server) bindingRoutes(rt *router) {
	rt.handle("GET /api/bindings", s.listBindings)
	rt.handle("HEAD /api/bindings", notFound)
	rt.handle("GET /api/bindings/{vhost}", s.listBindings)
	rt.handle("HEAD /api/bindings/{vhost}", notFound)
	rt.handlePrefix("/api/bindings", notFound)
	for kind, dt := range map[string]string{"q": "queue", "e": "exchange"} {
		p := "/api/bindings/{vhost}/e/{source}/" + kind + "/{destination}"
		rt.handle("GET "+p, s.listBindingsBetween(dt))
		rt.handle("POST "+p, s.bind(dt))
		rt.handle("HEAD "+p, s.inVHost(methodNotAllowed))
		rt.handle(p, s.inVHost(methodNotAllowed))
		rt.handle("DELETE "+p+"/{props}", s.unbind(dt))
		rt.handlePrefix(p+"/{props}", s.inVHost(methodNotAllowed))
	}
}

// listBindings lists the bindings of every vhost u may see, or of the one
// in the path.
func (s *Server) listBindings(u user, r *http.Request) (int, any, error) {
	vh := ""
	if one := pathVHost(r); one != nil {
		vh = one[0]
		if err := s.requireVHost(u, vh); err != nil {
			return 0, nil, err
		}
	}
	// the default exchange's implicit bindings first, as RabbitMQ lists them
	out := s.defaultBindings(u, vh)
	out = append(out, s.bindingList(vh, func(b metadata.Binding) bool { return s.canAccessVHost(u, b.VHost) }, "")...)
	return 200, out, nil
}

// listBindingsBetween lists the bindings from {source} to {destination}
// of kind dt (queue or exchange).
func (s *Server) listBindingsBetween(dt string) apiFunc {
	return func(u user, r *http.Request) (int, any, error) {
		vh, src, dst := r.PathValue("vhost"), r.PathValue("source"), r.PathValue("destination")
		if err := s.requireVHost(u, vh); err != nil {
			return 0, nil, err
		}
		return 200, s.bindingList(vh, func(b metadata.Binding) bool {
			return b.Source == src && b.Destination == dst && b.DestinationType == dt
		}, ""), nil
	}
}

// bind binds {destination} of kind dt to exchange {source}.
func (s *Server) bind(dt string) apiFunc {
	return func(u user, r *http.Request) (int, any, error) {
		vh, src, dst := r.PathValue("vhost"), r.PathValue("source"), r.PathValue("destination")
		if err := s.requireVHost(u, vh); err != nil {
			return 0, nil, err
		}
		// reading needs access to the vhost; changing needs permissions there
		sess, serr := s.session(u, vh)
		var body struct {
			RoutingKey string         `json:"routing_key"`
			Arguments  map[string]any `json:"arguments"`
		}
		if err := decode(r, &body); err != nil {
			return 0, nil, err
		}
		if serr != nil {
			return 0, nil, serr
		}
		if err := checkName("routing_key", body.RoutingKey); err != nil {
			return 0, nil, err
		}
		var err error
		if dt == "exchange" {
			err = sess.BindExchange(&amqp.ExchangeBind{Destination: dst, Source: src, RoutingKey: body.RoutingKey, Arguments: jsonArgs(body.Arguments)})
		} else {
			err = sess.BindQueue(&amqp.QueueBind{Queue: dst, Exchange: src, RoutingKey: body.RoutingKey, Arguments: jsonArgs(body.Arguments)}, httpOwner)
		}
		if err != nil {
			return 0, nil, amqpToHTTP(err)
		}
		return 201, nil, nil
	}
}

// unbind deletes the binding of {destination} (kind dt) to exchange
// {source} with properties_key {props}.
func (s *Server) unbind(dt string) apiFunc {
	return func(u user, r *http.Request) (int, any, error) {
		vh, src, dst := r.PathValue("vhost"), r.PathValue("source"), r.PathValue("destination")
		if err := s.requireVHost(u, vh); err != nil {
			return 0, nil, err
		}
		sess, serr := s.session(u, vh)
		key := unpackPropertiesKey(r.PathValue("props"))
		// the binding as stored: unbinding needs its arguments too (a
		// binding made with "arguments": {} is not the one made without)
		found, ok := s.findBinding(vh, src, dst, dt, key)
		if !ok {
			return 0, nil, errStatus(404, "Object Not Found")
		}
		var args amqp.Table
		if found.Arguments != nil {
			args = amqp.Table(found.Arguments)
		}
		if serr != nil {
			return 0, nil, serr
		}
		var err error
		if dt == "exchange" {
			err = sess.UnbindExchange(&amqp.ExchangeUnbind{Destination: dst, Source: src, RoutingKey: key, Arguments: args})
		} else {
			err = sess.UnbindQueue(&amqp.QueueUnbind{Queue: dst, Exchange: src, RoutingKey: key, Arguments: args}, httpOwner)
		}
		return 204, nil, amqpToHTTP(err)
	}
}

func (s *Server) bindingList(vh string, keep func(metadata.Binding) bool, implicitQueue string) []any {
	var bs []metadata.Binding
	s.b.Metadata().Read(func(m *metadata.State) {
		for _, b := range m.Bindings {
			if (vh == "" || b.VHost == vh) && keep(b) {
				bs = append(bs, b)
			}
		}
	})
	sort.Slice(bs, func(i, j int) bool { return metadata.BindingKey(bs[i]) < metadata.BindingKey(bs[j]) })
	out := []any{}
	if implicitQueue != "" {
		out = append(out, bindingJSON(metadata.Binding{Source: "", VHost: vh, Destination: implicitQueue, DestinationType: "queue", RoutingKey: implicitQueue}))
	}
	for _, b := range bs {
		out = append(out, bindingJSON(b))
	}
	return out
}

func bindingJSON(b metadata.Binding) map[string]any {
	args := b.Arguments
	if args == nil {
		args = map[string]any{}
	}
	pk := packPropertiesKey(b.RoutingKey)
	return map[string]any{"source": b.Source, "vhost": b.VHost, "destination": b.Destination, "destination_type": b.DestinationType,
		"routing_key": b.RoutingKey, "arguments": args, "properties_key": pk}
}
