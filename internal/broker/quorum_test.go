package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/config"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/mgmt"
)

var quorum = amqp091.Table{"x-queue-type": "quorum"}

func withArgs(extra amqp091.Table) amqp091.Table {
	t := amqp091.Table{"x-queue-type": "quorum"}
	for k, v := range extra {
		t[k] = v
	}
	return t
}

// TestQuorumDeclareRefusals: a quorum queue must be durable, not
// exclusive, not auto-delete, and takes only its own arguments, each
// refused with RabbitMQ 3.10's 406 and text.
func TestQuorumDeclareRefusals(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	cases := []struct {
		durable, autoDelete, exclusive bool
		args                           amqp091.Table
		want                           string
	}{
		{false, false, false, quorum, "invalid property 'non-durable' for queue 'qq' in vhost '/'"},
		{true, false, true, quorum, "invalid property 'exclusive-owner' for queue 'qq' in vhost '/'"},
		{true, true, false, quorum, "invalid property 'auto-delete' for queue 'qq' in vhost '/'"},
		{true, false, false, withArgs(amqp091.Table{"x-max-priority": int32(5)}), "invalid arg 'x-max-priority' for queue 'qq' in vhost '/' of queue type rabbit_quorum_queue"},
		{true, false, false, withArgs(amqp091.Table{"x-queue-mode": "lazy"}), "invalid arg 'x-queue-mode' for queue 'qq' in vhost '/' of queue type rabbit_quorum_queue"},
		{true, false, false, withArgs(amqp091.Table{"x-max-in-memory-length": "a"}), "invalid arg 'x-max-in-memory-length' for queue 'qq' in vhost '/': \"expected integer, got longstr\""},
		{true, false, false, withArgs(amqp091.Table{"x-dead-letter-strategy": "foo"}), "invalid arg 'x-dead-letter-strategy' for queue 'qq' in vhost '/': invalid_dlx_strategy"},
		{true, false, false, withArgs(amqp091.Table{"x-queue-master-locator": "min-masters"}), "invalid arg 'x-queue-master-locator' for queue 'qq' in vhost '/' of queue type rabbit_quorum_queue"},
		{true, false, false, withArgs(amqp091.Table{"x-quorum-initial-group-size": int32(0)}), "invalid arg 'x-quorum-initial-group-size' for queue 'qq' in vhost '/': {value_zero,0}"},
	}
	for _, tc := range cases {
		ch := channel(t, c)
		_, err := ch.QueueDeclare("qq", tc.durable, tc.autoDelete, tc.exclusive, false, tc.args)
		e := amqpErr(t, err, 406, true)
		if e.Reason != "PRECONDITION_FAILED - "+tc.want {
			t.Errorf("%+v: got %q, want %q", tc, e.Reason, tc.want)
		}
	}
	// and the classic queue refuses the quorum queue's arguments
	ch := channel(t, c)
	_, err := ch.QueueDeclare("cq", true, false, false, false, amqp091.Table{"x-delivery-limit": int32(3)})
	amqpErr(t, err, 406, true)
}

// TestQuorumQueueBasics: a quorum queue takes transient and persistent
// messages with confirms, delivers them in order, and a redeclare with
// the same arguments is fine while one as classic is refused.
func TestQuorumQueueBasics(t *testing.T) {
	b, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	if _, err := ch.QueueDeclare("qq", true, false, false, false, quorum); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("qq", true, false, false, false, quorum); err != nil {
		t.Fatalf("redeclare: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		mode := amqp091.Transient
		if i%2 == 0 {
			mode = amqp091.Persistent
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "qq", false, false, amqp091.Publishing{Body: []byte(fmt.Sprint(i)), DeliveryMode: mode})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := dc.WaitContext(ctxTimeout(t, 10*time.Second)); err != nil || !ok {
			t.Fatalf("message %d not confirmed: %v %v", i, ok, err)
		}
	}
	for i := range 20 {
		m, ok, err := ch.Get("qq", true)
		if err != nil || !ok || string(m.Body) != fmt.Sprint(i) {
			t.Fatalf("get %d: %q %v %v", i, m.Body, ok, err)
		}
	}
	ch2 := channel(t, c)
	_, err := ch2.QueueDeclare("qq", true, false, false, false, nil)
	amqpErr(t, err, 406, true)

	// the management API shows it as RabbitMQ shows a quorum queue
	srv := httptest.NewServer(mgmt.New(b, "", nil))
	defer srv.Close()
	var q map[string]any
	waitUntil(t, "the queue's group to elect this node", func() bool {
		getJSON(t, srv.URL+"/api/queues/%2F/qq", &q)
		return q["leader"] != nil
	})
	if q["type"] != "quorum" || q["leader"] == nil || len(q["members"].([]any)) != 1 || len(q["online"].([]any)) != 1 || q["leader"] != q["node"] {
		t.Fatalf("management view of a quorum queue: type %v leader %v members %v online %v node %v", q["type"], q["leader"], q["members"], q["online"], q["node"])
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestQuorumDeliveryLimit: a message returned to a quorum queue comes
// with x-delivery-count (0 at first); returned more often than x-delivery-limit,
// it is dead-lettered with reason delivery_limit.
func TestQuorumDeliveryLimit(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	if _, err := ch.QueueDeclare("dlq", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("dlq", "dlq", "amq.direct", false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("qq", true, false, false, false, withArgs(amqp091.Table{"x-delivery-limit": int32(2), "x-dead-letter-exchange": "amq.direct", "x-dead-letter-routing-key": "dlq"})); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "qq", "m")
	for i := range 3 {
		m, ok, err := ch.Get("qq", false)
		if err != nil || !ok {
			t.Fatalf("get %d: %v %v", i, ok, err)
		}
		// RabbitMQ 3.10 sends it from the first delivery on: 0, 1, 2
		if n := m.Headers["x-delivery-count"]; n != int64(i) {
			t.Fatalf("delivery %d: x-delivery-count %v (%T), want %d", i+1, n, n, i)
		}
		if err := m.Nack(false, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := ch.Get("qq", true); ok {
		t.Fatal("the message is still in the quorum queue after its delivery limit")
	}
	var m amqp091.Delivery
	waitUntil(t, "the dead-lettered message", func() bool {
		var ok bool
		m, ok, _ = ch.Get("dlq", true)
		return ok
	})
	death, _ := m.Headers["x-death"].([]any)
	if len(death) != 1 || death[0].(amqp091.Table)["reason"] != "delivery_limit" {
		t.Fatalf("x-death %v", m.Headers["x-death"])
	}
}

// TestQuorumMaxLength: x-max-length with drop-head drops the oldest;
// with reject-publish the publisher gets a nack.
func TestQuorumMaxLength(t *testing.T) {
	_, url := node(t)
	c := dial(t, url)
	ch := channel(t, c)
	if _, err := ch.QueueDeclare("head", true, false, false, false, withArgs(amqp091.Table{"x-max-length": int32(2)})); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("rej", true, false, false, false, withArgs(amqp091.Table{"x-max-length-bytes": int32(4), "x-overflow": "reject-publish"})); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	send := func(q, body string) bool {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", q, false, false, amqp091.Publishing{Body: []byte(body), DeliveryMode: 2})
		if err != nil {
			t.Fatal(err)
		}
		ok, err := dc.WaitContext(ctxTimeout(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, b := range []string{"a", "b", "c"} {
		if !send("head", b) {
			t.Fatalf("drop-head queue nacked %s", b)
		}
	}
	for _, want := range []string{"b", "c"} {
		m, ok, _ := ch.Get("head", true)
		if !ok || string(m.Body) != want {
			t.Fatalf("drop-head: got %q %v, want %s", m.Body, ok, want)
		}
	}
	if !send("rej", "abcd") {
		t.Fatal("the first 4 bytes were refused")
	}
	if send("rej", "e") {
		t.Fatal("reject-publish confirmed a message over x-max-length-bytes")
	}
}

// TestHAPolicyReplicatesClassicQueue: on a standalone node, a durable
// classic queue declared under an ha-mode policy is a replicated queue
// (one member); it keeps its messages across a restart and the
// management API shows its policy and mirroring fields.
func TestHAPolicyReplicatesClassicQueue(t *testing.T) {
	dir := t.TempDir()
	b, url := node(t, func(c *config.Config) { c.DataDir = dir })
	if err := setPolicy(b, "ha", "^ha\\.", map[string]any{"ha-mode": "all", "ha-sync-mode": "automatic"}); err != nil {
		t.Fatal(err)
	}
	ch := channel(t, dial(t, url))
	for _, q := range []string{"ha.q", "plain"} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	var ha, plain metadata.Queue
	b.Metadata().Read(func(s *metadata.State) {
		ha, plain = s.Queues[[2]string{"/", "ha.q"}], s.Queues[[2]string{"/", "plain"}]
	})
	if ha.Group == 0 || plain.Group != 0 {
		t.Fatalf("groups: ha.q %d (want one), plain %d (want none)", ha.Group, plain.Group)
	}
	srv := httptest.NewServer(mgmt.New(b, "", nil))
	var q map[string]any
	waitUntil(t, "the queue's group to elect this node", func() bool {
		getJSON(t, srv.URL+"/api/queues/%2F/ha.q", &q)
		return q["leader"] != nil
	})
	srv.Close()
	pol, _ := q["effective_policy_definition"].(map[string]any)
	if q["type"] != "classic" || q["policy"] != "ha" || pol["ha-mode"] != "all" || len(q["slave_nodes"].([]any)) != 0 || q["leader"] != q["node"] {
		t.Fatalf("management view: type %v policy %v effective %v slave_nodes %v leader %v", q["type"], q["policy"], q["effective_policy_definition"], q["slave_nodes"], q["leader"])
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "ha.q", false, false, amqp091.Publishing{Body: []byte(fmt.Sprint(i)), DeliveryMode: amqp091.Persistent})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := dc.WaitContext(ctxTimeout(t, 10*time.Second)); err != nil || !ok {
			t.Fatalf("not confirmed: %v %v", ok, err)
		}
	}
	if err := b.Stop(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	_, url2 := node(t, func(c *config.Config) { c.DataDir = dir })
	ch2 := channel(t, dial(t, url2))
	for i := range 10 {
		m, ok, err := ch2.Get("ha.q", true)
		if err != nil || !ok || string(m.Body) != fmt.Sprint(i) {
			t.Fatalf("after restart, message %d: %q %v %v", i, m.Body, ok, err)
		}
	}
}

// TestHAPolicyMovesExistingQueue: on a standalone node, an ha-mode policy
// set after a durable classic queue holds messages makes it replicated:
// its messages move into the queue's group, in order, and it keeps them
// and new ones across a restart.
func TestHAPolicyMovesExistingQueue(t *testing.T) {
	dir := t.TempDir()
	b, url := node(t, func(c *config.Config) { c.DataDir = dir })
	ch := channel(t, dial(t, url))
	if _, err := ch.QueueDeclare("mv", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	send := func(c *amqp091.Channel, body string) {
		t.Helper()
		dc, err := c.PublishWithDeferredConfirmWithContext(context.Background(), "", "mv", false, false, amqp091.Publishing{Body: []byte(body), DeliveryMode: amqp091.Persistent})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := dc.WaitContext(ctxTimeout(t, 10*time.Second)); err != nil || !ok {
			t.Fatalf("%s not confirmed: %v %v", body, ok, err)
		}
	}
	var want []string
	for i := range 30 {
		send(ch, fmt.Sprintf("m%02d", i))
		want = append(want, fmt.Sprintf("m%02d", i))
	}
	if err := setPolicy(b, "ha", "^mv$", map[string]any{"ha-mode": "all"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the queue to move into its group", func() bool {
		q := b.VHost("/").LookupQueue("mv")
		return q != nil && q.Config().PersistAll
	})
	var d metadata.Queue
	b.Metadata().Read(func(s *metadata.State) { d = s.Queues[[2]string{"/", "mv"}] })
	if d.Group == 0 {
		t.Fatal("the definition has no group")
	}
	ch2 := channel(t, dial(t, url))
	if err := ch2.Confirm(false); err != nil {
		t.Fatal(err)
	}
	send(ch2, "after")
	want = append(want, "after")
	if err := b.Stop(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	_, url2 := node(t, func(c *config.Config) { c.DataDir = dir })
	ch3 := channel(t, dial(t, url2))
	for i, w := range want {
		m, ok, err := ch3.Get("mv", true)
		if err != nil || !ok || string(m.Body) != w {
			t.Fatalf("after the move and a restart, message %d: %q %v %v, want %s", i, m.Body, ok, err, w)
		}
	}
	if m, ok, _ := ch3.Get("mv", true); ok {
		t.Fatalf("an extra message %q (the message store's copy came back?)", m.Body)
	}
}
