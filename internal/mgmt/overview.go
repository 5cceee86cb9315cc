package mgmt

import (
	"net/http"
	"runtime"
	"strconv"

	"github.com/warrenmq/warren/internal/broker"
)

// overviewRoutes: GET /api/overview, /api/whoami, /api/cluster-name and
// /api/extensions (each also with segments after it, as the switch
// router answered; read-only: see readOnly for the other methods).
func (s *Server) overviewRoutes(rt *router) {
	rt.handlePrefix("/api/overview", func(u user, r *http.Request) (int, any, error) {
		return 200, s.restrictOverview(u, s.overview()), nil
	})
	rt.handlePrefix("/api/whoami", func(u user, r *http.Request) (int, any, error) {
		return 200, map[string]any{"name": u.name, "tags": u.tags}, nil
	})
	rt.handlePrefix("GET /api/cluster-name", func(u user, r *http.Request) (int, any, error) {
		return 200, map[string]string{"name": s.b.Config().ClusterName}, nil
	})
	rt.handlePrefix("/api/extensions", func(u user, r *http.Request) (int, any, error) {
		return 200, []any{}, nil
	})
}

func (s *Server) totals() (qs, msgs, ready, unacked, consumers, exchanges int) {
	for _, vn := range s.b.VHostNames() {
		v := s.b.VHost(vn)
		if v == nil {
			continue
		}
		for _, q := range v.Queues() {
			r, un, c := q.Counts()
			qs++
			ready += r
			unacked += un
			consumers += c
		}
		exchanges += len(v.Exchanges())
	}
	return qs, ready + unacked, ready, unacked, consumers, exchanges
}

func (s *Server) overview() map[string]any {
	qs, msgs, ready, unacked, consumers, exchanges := s.totals()
	conns := s.b.Connections()
	chans := 0
	for _, c := range conns {
		chans += c.Info().Channels
	}
	cfg := s.b.Config()
	listeners := s.listeners()
	rt := s.rates.snapshot()
	return map[string]any{
		"management_version": broker.Version,
		"rabbitmq_version":   RabbitMQVersion,
		"product_name":       "Warren",
		"product_version":    broker.Version,
		"erlang_version":     runtime.Version(),
		"exchange_types":     exchangeTypes(),
		"rates_mode":         "basic",
		"churn_rates":        s.churnRates(),
		"cluster_name":       cfg.ClusterName,
		"node":               cfg.NodeName,
		"object_totals":      map[string]int{"connections": len(conns), "channels": chans, "exchanges": exchanges, "queues": qs, "consumers": consumers},
		"queue_totals":       map[string]any{"messages": msgs, "messages_ready": ready, "messages_unacknowledged": unacked},
		"message_stats":      rt.messageStats(),
		"listeners":          listeners,
		"contexts":           []any{map[string]any{"node": cfg.NodeName, "description": "RabbitMQ Management", "path": "/", "port": strconv.Itoa(cfg.ManagementPort)}},
		// what RabbitMQ's overview also says about its statistics
		"disable_stats": false, "enable_queue_totals": false, "statistics_db_event_queue": 0,
		"sample_retention_policies": map[string][]int{"global": {600}, "basic": {600}, "detailed": {600}}, // ten minutes of samples
		"erlang_full_version":       runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + " GOMAXPROCS=" + strconv.Itoa(runtime.GOMAXPROCS(0)),
	}
}
