package mgmt

import (
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/vhost"
)

// exchangeRoutes: /api/exchanges, /api/exchanges/{vhost},
// /api/exchanges/{vhost}/{name} (amq.default names the default exchange),
// its publish and its bindings as source or destination. Below a vhost,
// every answer (405 and 404 included) comes after the vhost check. HEAD
// is refused where GET is served, as the switch router did.
func (s *Server) exchangeRoutes(rt *router) {
	rt.handle("GET /api/exchanges", s.listExchanges)
	rt.handle("HEAD /api/exchanges", methodNotAllowed)
	rt.handle("GET /api/exchanges/{vhost}", s.listExchanges)
	rt.handle("HEAD /api/exchanges/{vhost}", methodNotAllowed)
	rt.handlePrefix("/api/exchanges", methodNotAllowed)
	rt.handle("GET /api/exchanges/{vhost}/{name}", s.getExchange)
	rt.handle("PUT /api/exchanges/{vhost}/{name}", s.putExchange)
	rt.handle("DELETE /api/exchanges/{vhost}/{name}", s.deleteExchange)
	rt.handle("HEAD /api/exchanges/{vhost}/{name}", s.inVHost(methodNotAllowed))
	rt.handle("/api/exchanges/{vhost}/{name}", s.inVHost(methodNotAllowed))
	rt.handle("/api/exchanges/{vhost}/{name}/{rest...}", s.inVHost(notFound))
	rt.handlePrefix("POST /api/exchanges/{vhost}/{name}/publish", s.publish)
	rt.handlePrefix("/api/exchanges/{vhost}/{name}/publish", s.inVHost(methodNotAllowed))
	rt.handle("/api/exchanges/{vhost}/{name}/bindings/source", s.sourceBindings) // any method
	rt.handle("/api/exchanges/{vhost}/{name}/bindings/destination", s.destinationBindings)
}

// exchangeName is the exchange named in the path: amq.default is "".
func exchangeName(r *http.Request) string {
	if n := r.PathValue("name"); n != "amq.default" {
		return n
	}
	return ""
}

// findExchange returns the exchange called name in v, or nil.
func findExchange(v *vhost.VHost, name string) *vhost.Exchange {
	for _, x := range v.Exchanges() {
		if x.Def.Name == name {
			return x
		}
	}
	return nil
}

// listExchanges lists the exchanges of every vhost u may see, or of the
// one in the path.
func (s *Server) listExchanges(u user, r *http.Request) (int, any, error) {
	return s.listPerVHost(u, r, pathVHost(r), func(vn string, v *vhost.VHost) (items []map[string]any) {
		for _, x := range v.Exchanges() {
			items = append(items, s.exchangeJSON(vn, x))
		}
		return items
	})
}

func (s *Server) getExchange(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), exchangeName(r)
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	x := findExchange(s.b.VHost(vh), name)
	if x == nil {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	return 200, s.exchangeJSON(vh, x), nil
}

func (s *Server) putExchange(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), exchangeName(r)
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	// reading needs access to the vhost; changing needs permissions there
	sess, serr := s.session(u, vh)
	var body struct {
		Type       string         `json:"type"`
		Durable    *flexBool      `json:"durable"`
		AutoDelete flexBool       `json:"auto_delete"`
		Internal   flexBool       `json:"internal"`
		Arguments  map[string]any `json:"arguments"`
	}
	if err := decode(r, &body); err != nil {
		return 0, nil, err
	}
	if serr != nil {
		return 0, nil, serr
	}
	if err := checkName("exchange", name); err != nil {
		return 0, nil, err
	}
	durable := true
	if body.Durable != nil {
		durable = bool(*body.Durable)
	}
	existed := findExchange(s.b.VHost(vh), name) != nil
	err := sess.DeclareExchange(&amqp.ExchangeDeclare{Exchange: name, Type: body.Type, Durable: durable, AutoDelete: bool(body.AutoDelete), Internal: bool(body.Internal), Arguments: jsonArgs(body.Arguments)})
	if err != nil {
		return 0, nil, amqpToHTTP(err)
	}
	if existed {
		return 204, nil, nil
	}
	return 201, nil, nil
}

func (s *Server) deleteExchange(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), exchangeName(r)
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	sess, serr := s.session(u, vh)
	if findExchange(s.b.VHost(vh), name) == nil {
		return 0, nil, errStatus(404, "Object Not Found")
	}
	if serr != nil {
		return 0, nil, serr
	}
	return 204, nil, amqpToHTTP(sess.DeleteExchange(&amqp.ExchangeDelete{Exchange: name, IfUnused: r.URL.Query().Get("if-unused") == "true"}))
}

// publish serves POST /api/exchanges/{vhost}/{name}/publish.
func (s *Server) publish(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), exchangeName(r)
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	sess, serr := s.session(u, vh)
	var body struct {
		Properties      map[string]any `json:"properties"`
		RoutingKey      string         `json:"routing_key"`
		Payload         string         `json:"payload"`
		PayloadEncoding string         `json:"payload_encoding"`
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
	payload := []byte(body.Payload)
	if body.PayloadEncoding == "base64" {
		var err error
		if payload, err = base64.StdEncoding.DecodeString(body.Payload); err != nil {
			return 0, nil, errStatus(400, "payload is not valid base64")
		}
	}
	if max := s.b.Config().MaxMessageSize; max > 0 && len(payload) > max {
		return 0, nil, errStatus(400, "message size %d is larger than configured max size %d", len(payload), max)
	}
	if err := checkPublishProps(u, body.Properties); err != nil {
		return 0, nil, err
	}
	p := propsFromJSON(body.Properties)
	raw, err := p.Append(nil)
	if err != nil {
		return 0, nil, errStatus(400, "%v", err)
	}
	msg := &queue.Message{Exchange: name, RoutingKey: body.RoutingKey, Props: raw, Body: payload, Persistent: p.DeliveryMode == 2, Priority: p.Priority}
	if p.Expiration != "" {
		if ms, err := strconv.ParseInt(p.Expiration, 10, 64); err == nil && ms >= 0 {
			msg.Expiration, msg.HasExpiration = ms, true
		}
	}
	res, err := sess.Publish(name, body.RoutingKey, msg)
	if err != nil {
		return 0, nil, amqpToHTTP(err)
	}
	return 200, map[string]bool{"routed": res.Queues > 0}, nil
}

// sourceBindings lists the bindings with the exchange as source.
func (s *Server) sourceBindings(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), exchangeName(r)
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	return 200, s.bindingList(vh, func(b metadata.Binding) bool { return b.Source == name }, ""), nil
}

// destinationBindings lists the bindings with the exchange as destination.
func (s *Server) destinationBindings(u user, r *http.Request) (int, any, error) {
	vh, name := r.PathValue("vhost"), exchangeName(r)
	if err := s.requireVHost(u, vh); err != nil {
		return 0, nil, err
	}
	return 200, s.bindingList(vh, func(b metadata.Binding) bool { return b.DestinationType == "exchange" && b.Destination == name }, ""), nil
}

func (s *Server) exchangeJSON(vh string, x *vhost.Exchange) map[string]any {
	args := x.Def.Arguments
	if args == nil {
		args = map[string]any{}
	}
	out := map[string]any{"name": x.Def.Name, "vhost": vh, "type": x.Def.Type, "durable": x.Def.Durable,
		"auto_delete": x.Def.AutoDelete, "internal": x.Def.Internal, "arguments": args, "user_who_performed_action": "rmq-internal"}
	// like RabbitMQ, "policy" is present only when one applies
	if v := s.b.VHost(vh); v != nil {
		if n := v.AppliedPolicy(x.Def.Name, "exchanges"); n != "" {
			out["policy"] = n
		}
	}
	return out
}
