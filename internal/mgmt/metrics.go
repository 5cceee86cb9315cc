package mgmt

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warrenmq/warren/internal/broker"
)

// collector exposes node metrics under rabbitmq_prometheus's names, so
// existing dashboards and alerts keep working. As in RabbitMQ, queue
// metrics are aggregated (no vhost or queue names) unless perObject: the
// endpoint is unauthenticated, and object names are the users' data.
type collector struct {
	b         *broker.Broker
	perObject bool
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	mReady     = desc("rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers", "vhost", "queue")
	mUnacked   = desc("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged", "vhost", "queue")
	mMessages  = desc("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages", "vhost", "queue")
	mQCons     = desc("rabbitmq_queue_consumers", "Consumers on a queue", "vhost", "queue")
	mPub       = desc("rabbitmq_global_messages_received_total", "Total number of messages received from publishers")
	mDel       = desc("rabbitmq_global_messages_delivered_total", "Total number of messages delivered to consumers")
	mAck       = desc("rabbitmq_global_messages_acknowledged_total", "Total number of messages acknowledged by consumers")
	mDL        = desc("rabbitmq_global_messages_dead_lettered_total", "Total number of messages dead-lettered")
	mConns     = desc("rabbitmq_connections", "Connections currently open")
	mChans     = desc("rabbitmq_channels", "Channels currently open")
	mQueues    = desc("rabbitmq_queues", "Queues available")
	mConsumers = desc("rabbitmq_consumers", "Consumers currently connected")
	mMemAlarm  = desc("rabbitmq_alarms_memory_used_watermark", "is 1 if VM memory watermark alarm is in effect")
	mDiskAlarm = desc("rabbitmq_alarms_free_disk_space_watermark", "is 1 if free disk space watermark alarm is in effect")
	mRSS       = desc("rabbitmq_process_resident_memory_bytes", "Memory used in bytes")
	mIdentity  = desc("rabbitmq_identity_info", "RabbitMQ node & cluster identity info", "rabbitmq_node", "rabbitmq_cluster")

	// the aggregated forms (sums over every queue)
	aReady    = desc("rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers")
	aUnacked  = desc("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged")
	aMessages = desc("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages")
	aQCons    = desc("rabbitmq_queue_consumers", "Consumers on a queue")
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	q := []*prometheus.Desc{aReady, aUnacked, aMessages, aQCons}
	if c.perObject {
		q = []*prometheus.Desc{mReady, mUnacked, mMessages, mQCons}
	}
	for _, d := range q {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{mPub, mDel, mAck, mDL, mConns, mChans, mQueues, mConsumers, mMemAlarm, mDiskAlarm, mRSS, mIdentity} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	var pub, del, ack, dl uint64
	queues, consumers := 0, 0
	var sumR, sumU int
	for _, vn := range c.b.VHostNames() {
		v := c.b.VHost(vn)
		if v == nil {
			continue
		}
		for _, q := range v.Queues() {
			r, u, n := q.Counts()
			st := q.Stats()
			pub, del, ack, dl = pub+st.Published, del+st.Delivered, ack+st.Acked, dl+st.DeadLettered
			queues++
			consumers += n
			sumR, sumU = sumR+r, sumU+u
			if c.perObject {
				// label values must be UTF-8: invalid bytes are shown
				// escaped rather than failing the whole scrape
				vl, ql := labelValue(vn), labelValue(q.Name())
				for _, m := range []struct {
					d *prometheus.Desc
					v int
				}{{mReady, r}, {mUnacked, u}, {mMessages, r + u}, {mQCons, n}} {
					if mt, err := prometheus.NewConstMetric(m.d, prometheus.GaugeValue, float64(m.v), vl, ql); err == nil {
						ch <- mt
					}
				}
			}
		}
	}
	if !c.perObject {
		ch <- prometheus.MustNewConstMetric(aReady, prometheus.GaugeValue, float64(sumR))
		ch <- prometheus.MustNewConstMetric(aUnacked, prometheus.GaugeValue, float64(sumU))
		ch <- prometheus.MustNewConstMetric(aMessages, prometheus.GaugeValue, float64(sumR+sumU))
		ch <- prometheus.MustNewConstMetric(aQCons, prometheus.GaugeValue, float64(consumers))
	}
	conns := c.b.Connections()
	chans := 0
	for _, x := range conns {
		chans += x.Info().Channels
	}
	ch <- prometheus.MustNewConstMetric(mPub, prometheus.CounterValue, float64(pub))
	ch <- prometheus.MustNewConstMetric(mDel, prometheus.CounterValue, float64(del))
	ch <- prometheus.MustNewConstMetric(mAck, prometheus.CounterValue, float64(ack))
	ch <- prometheus.MustNewConstMetric(mDL, prometheus.CounterValue, float64(dl))
	ch <- prometheus.MustNewConstMetric(mConns, prometheus.GaugeValue, float64(len(conns)))
	ch <- prometheus.MustNewConstMetric(mChans, prometheus.GaugeValue, float64(chans))
	ch <- prometheus.MustNewConstMetric(mQueues, prometheus.GaugeValue, float64(queues))
	ch <- prometheus.MustNewConstMetric(mConsumers, prometheus.GaugeValue, float64(consumers))
	memA, diskA := 0.0, 0.0
	for _, a := range c.b.Alarms() {
		if a == "memory" {
			memA = 1
		} else if a == "disk" {
			diskA = 1
		}
	}
	ch <- prometheus.MustNewConstMetric(mMemAlarm, prometheus.GaugeValue, memA)
	ch <- prometheus.MustNewConstMetric(mDiskAlarm, prometheus.GaugeValue, diskA)
	ch <- prometheus.MustNewConstMetric(mRSS, prometheus.GaugeValue, float64(rss()))
	cfg := c.b.Config()
	if mt, err := prometheus.NewConstMetric(mIdentity, prometheus.GaugeValue, 1, labelValue(cfg.NodeName), labelValue(cfg.ClusterName)); err == nil {
		ch <- mt
	}
}

// labelValue returns s, or s with each invalid UTF-8 byte written as \xNN.
func labelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			fmt.Fprintf(&b, "\\x%02X", s[i])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// rss reads the process's resident set size from /proc.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// MetricsHandler serves node b's metrics as rabbitmq_prometheus does:
// /metrics aggregated (per object when prometheus.return_per_object_metrics
// is set) and /metrics/per-object always per object. A metric that cannot
// be collected is left out with the error logged, never a 500 with a
// stack trace.
func MetricsHandler(b *broker.Broker, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	handler := func(perObject bool) http.Handler {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collector{b: b, perObject: perObject})
		reg.MustRegister(prometheus.NewGoCollector())
		return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, ErrorLog: errLogger{log}})
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", handler(b.Config().PrometheusPerObject))
	mux.Handle("/metrics/per-object", handler(true))
	return mux
}

type errLogger struct{ log *slog.Logger }

func (l errLogger) Println(v ...any) {
	l.log.Warn("Prometheus collection error", "err", fmt.Sprint(v...))
}
