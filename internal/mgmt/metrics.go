package mgmt

import (
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warrenmq/warren/internal/broker"
)

// collector exposes node metrics under rabbitmq_prometheus's names, so
// existing dashboards and alerts keep working.
type collector struct{ b *broker.Broker }

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
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mReady, mUnacked, mMessages, mQCons, mPub, mDel, mAck, mDL, mConns, mChans, mQueues, mConsumers, mMemAlarm, mDiskAlarm, mRSS, mIdentity} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	var pub, del, ack, dl uint64
	queues, consumers := 0, 0
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
			ch <- prometheus.MustNewConstMetric(mReady, prometheus.GaugeValue, float64(r), vn, q.Name())
			ch <- prometheus.MustNewConstMetric(mUnacked, prometheus.GaugeValue, float64(u), vn, q.Name())
			ch <- prometheus.MustNewConstMetric(mMessages, prometheus.GaugeValue, float64(r+u), vn, q.Name())
			ch <- prometheus.MustNewConstMetric(mQCons, prometheus.GaugeValue, float64(n), vn, q.Name())
		}
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
	ch <- prometheus.MustNewConstMetric(mIdentity, prometheus.GaugeValue, 1, cfg.NodeName, cfg.ClusterName)
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

// MetricsHandler serves /metrics for node b.
func MetricsHandler(b *broker.Broker) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{b: b})
	reg.MustRegister(prometheus.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}
