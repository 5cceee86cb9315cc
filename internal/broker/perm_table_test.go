package broker_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/broker"
	"github.com/warrenmq/warren/internal/metadata"
)

// permission kinds a method needs (on whatever resources it names)
const (
	needC = 1 << iota
	needW
	needR
)

// permMethod is one AMQP method run by the user under test on resources
// the admin prepared (names end in sfx).
type permMethod struct {
	name string
	need int // permissions it needs when every pattern is ".*" or ""
	run  func(ch *amqp091.Channel, sfx string) error
}

var permMethods = []permMethod{
	{"exchange.declare", needC, func(ch *amqp091.Channel, s string) error {
		return ch.ExchangeDeclare("new-x"+s, "fanout", false, true, false, false, nil)
	}},
	{"exchange.declare passive", 0, func(ch *amqp091.Channel, s string) error {
		return ch.ExchangeDeclarePassive("px"+s, "fanout", false, false, false, false, nil)
	}},
	{"exchange.declare alternate-exchange", needC | needR | needW, func(ch *amqp091.Channel, s string) error {
		return ch.ExchangeDeclare("new-ae-x"+s, "fanout", false, true, false, false, amqp091.Table{"alternate-exchange": "pae" + s})
	}},
	{"exchange.delete", needC, func(ch *amqp091.Channel, s string) error {
		return ch.ExchangeDelete("pdel"+s, false, false)
	}},
	{"exchange.bind", needW | needR, func(ch *amqp091.Channel, s string) error {
		return ch.ExchangeBind("pae"+s, "k", "px"+s, false, nil)
	}},
	{"exchange.unbind", needW | needR, func(ch *amqp091.Channel, s string) error {
		return ch.ExchangeUnbind("pae"+s, "bound", "px"+s, false, nil)
	}},
	{"queue.declare", needC, func(ch *amqp091.Channel, s string) error {
		_, err := ch.QueueDeclare("new-q"+s, false, true, false, false, nil)
		return err
	}},
	{"queue.declare passive", 0, func(ch *amqp091.Channel, s string) error {
		_, err := ch.QueueDeclarePassive("pq"+s, false, false, false, false, nil)
		return err
	}},
	{"queue.declare x-dead-letter-exchange", needC | needR | needW, func(ch *amqp091.Channel, s string) error {
		_, err := ch.QueueDeclare("new-dlx-q"+s, false, true, false, false, amqp091.Table{"x-dead-letter-exchange": "pae" + s})
		return err
	}},
	{"queue.delete", needC, func(ch *amqp091.Channel, s string) error {
		_, err := ch.QueueDelete("pqdel"+s, false, false, false)
		return err
	}},
	{"queue.purge", needR, func(ch *amqp091.Channel, s string) error {
		_, err := ch.QueuePurge("pq"+s, false)
		return err
	}},
	{"queue.bind", needW | needR, func(ch *amqp091.Channel, s string) error {
		return ch.QueueBind("pq"+s, "k", "px"+s, false, nil)
	}},
	{"queue.unbind", needW | needR, func(ch *amqp091.Channel, s string) error {
		return ch.QueueUnbind("pq"+s, "bound", "px"+s, nil)
	}},
	{"basic.publish", needW, func(ch *amqp091.Channel, s string) error {
		if err := ch.PublishWithContext(context.Background(), "px"+s, "", false, false, amqp091.Publishing{Body: []byte("x")}); err != nil {
			return err
		}
		// publish has no reply: a round trip shows whether the channel
		// was closed
		_, err := ch.QueueDeclarePassive("pq"+s, false, false, false, false, nil)
		return err
	}},
	{"basic.get", needR, func(ch *amqp091.Channel, s string) error {
		_, _, err := ch.Get("pq"+s, false)
		return err
	}},
	{"basic.consume", needR, func(ch *amqp091.Channel, s string) error {
		_, err := ch.Consume("pq"+s, "", false, false, false, false, nil)
		return err
	}},
}

// permPatterns are the configure/write/read patterns tried.
var permPatterns = []struct {
	name    string
	c, w, r string
}{
	{"none", "", "", ""},
	{"configure", ".*", "", ""},
	{"write", "", ".*", ""},
	{"read", "", "", ".*"},
	{"configure+write", ".*", ".*", ""},
	{"configure+read", ".*", "", ".*"},
	{"write+read", "", ".*", ".*"},
	{"all", ".*", ".*", ".*"},
}

type permTarget struct {
	adminURL, userURL string
	setPerm           func(t *testing.T, c, w, r string)
}

// runPermTable runs every method under every pattern and returns the
// reply codes (0 = ok) by "method/pattern".
func runPermTable(t *testing.T, tg permTarget) map[string]int {
	admin := dial(t, tg.adminURL)
	got := map[string]int{}
	for pi, p := range permPatterns {
		tg.setPerm(t, p.c, p.w, p.r)
		uc := dial(t, tg.userURL)
		for mi, m := range permMethods {
			sfx := fmt.Sprintf("-%d-%d", pi, mi)
			ach := channel(t, admin)
			must := func(err error) {
				if err != nil {
					t.Fatalf("fixture %s: %v", sfx, err)
				}
			}
			must(ach.ExchangeDeclare("px"+sfx, "fanout", false, true, false, false, nil))
			must(ach.ExchangeDeclare("pae"+sfx, "fanout", false, true, false, false, nil))
			must(ach.ExchangeDeclare("pdel"+sfx, "fanout", false, false, false, false, nil))
			_, err := ach.QueueDeclare("pq"+sfx, false, true, false, false, nil)
			must(err)
			_, err = ach.QueueDeclare("pqdel"+sfx, false, false, false, false, nil)
			must(err)
			must(ach.QueueBind("pq"+sfx, "bound", "px"+sfx, false, nil))
			must(ach.ExchangeBind("pae"+sfx, "bound", "px"+sfx, false, nil))
			uch, err := uc.Channel()
			if err != nil {
				t.Fatalf("%s/%s: channel: %v", m.name, p.name, err)
			}
			closed := uch.NotifyClose(make(chan *amqp091.Error, 1))
			code := 0
			if err := m.run(uch, sfx); err != nil {
				code = -1
				if e, ok := err.(*amqp091.Error); ok {
					code = e.Code
				}
				// an asynchronous close (publish) shows up on later calls
				// as 504 "channel closed": take the server's reason
				select {
				case e := <-closed:
					if e != nil {
						code = e.Code
					}
				case <-time.After(2 * time.Second):
				}
			} else {
				_ = uch.Close()
			}
			got[m.name+"/"+p.name] = code
			// names are unique per case; the vhost or node goes at the end
			_ = ach.Close()
		}
		_ = uc.Close()
	}
	return got
}

func wantPermTable() map[string]int {
	want := map[string]int{}
	for _, p := range permPatterns {
		have := 0
		if p.c != "" {
			have |= needC
		}
		if p.w != "" {
			have |= needW
		}
		if p.r != "" {
			have |= needR
		}
		for _, m := range permMethods {
			code := 0
			if m.need&^have != 0 {
				code = 403
			}
			want[m.name+"/"+p.name] = code
		}
	}
	return want
}

// TestPermissionTable checks every AMQP method that touches a resource
// under every combination of configure/write/read against RabbitMQ's
// rules (rabbit_channel: declare and delete need configure; bindings
// need write on the destination and read on the source; publish write;
// get, consume and purge read; passive declares nothing; an alternate or
// dead-letter exchange also needs read on the declared object and write
// on the target). Set WARREN_COMPARE_RABBITMQ=1 to run the same table
// against the RabbitMQ on 127.0.0.1:5672 (needs rabbitmqctl).
func TestPermissionTable(t *testing.T) {
	b, url := node(t)
	uurl := addUser(t, b, "perm", nil, "", "", "")
	got := runPermTable(t, permTarget{adminURL: url, userURL: uurl, setPerm: func(t *testing.T, c, w, r string) {
		if err := b.Metadata().Propose(metadata.Command{Op: metadata.OpSetPermissions, Permission: &metadata.Permission{User: "perm", VHost: "/", Configure: c, Write: w, Read: r}}); err != nil {
			t.Fatal(err)
		}
	}})
	want := wantPermTable()
	if os.Getenv("WARREN_COMPARE_RABBITMQ") != "" {
		want = rabbitPermTable(t)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %d, want %d", k, got[k], w)
		}
	}
}

func rabbitPermTable(t *testing.T) map[string]int {
	ctl := func(args ...string) {
		if out, err := exec.Command("rabbitmqctl", args...).CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
		}
	}
	vh, user := "amqpsec-perm", "amqpsec-perm"
	ctl("add_vhost", vh)
	t.Cleanup(func() {
		_ = exec.Command("rabbitmqctl", "delete_vhost", vh).Run()
		_ = exec.Command("rabbitmqctl", "delete_user", user).Run()
	})
	ctl("add_user", user, user)
	ctl("set_permissions", "-p", vh, "guest", ".*", ".*", ".*")
	got := runPermTable(t, permTarget{
		adminURL: "amqp://guest:guest@127.0.0.1:5672/" + vh,
		userURL:  "amqp://" + user + ":" + user + "@127.0.0.1:5672/" + vh,
		setPerm: func(t *testing.T, c, w, r string) {
			ctl("set_permissions", "-p", vh, user, c, w, r)
			time.Sleep(100 * time.Millisecond)
		},
	})
	want := wantPermTable()
	var diff []string
	for k, w := range want {
		if got[k] != w {
			diff = append(diff, fmt.Sprintf("%s: RabbitMQ %d, rule %d", k, got[k], w))
		}
	}
	if len(diff) > 0 {
		t.Logf("RabbitMQ differs from the stated rules:\n%s", strings.Join(diff, "\n"))
	}
	return got
}

// TestAlternateAndDeadLetterNeedWriteOnTarget is the case: write
// on ^lim\. only; an alternate or dead-letter exchange outside it is
// refused at declare with RabbitMQ's text.
func TestAlternateAndDeadLetterNeedWriteOnTarget(t *testing.T) {
	b, url := node(t)
	admin := channel(t, dial(t, url))
	if err := admin.ExchangeDeclare("secret", "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	uurl := addUser(t, b, "lim", nil, ".*", `^lim\.`, ".*")
	c := dial(t, uurl)
	ch := channel(t, c)
	err := ch.ExchangeDeclare("lim.x", "direct", false, false, false, false, amqp091.Table{"alternate-exchange": "secret"})
	e := amqpErr(t, err, 403, true)
	if e.Reason != "ACCESS_REFUSED - access to exchange 'secret' in vhost '/' refused for user 'lim'" {
		t.Fatalf("got %q", e.Reason)
	}
	ch = channel(t, c)
	_, err = ch.QueueDeclare("lim.q", false, false, false, false, amqp091.Table{"x-dead-letter-exchange": "secret"})
	e = amqpErr(t, err, 403, true)
	if e.Reason != "ACCESS_REFUSED - access to exchange 'secret' in vhost '/' refused for user 'lim'" {
		t.Fatalf("got %q", e.Reason)
	}
	// targets it may write are fine
	ch = channel(t, c)
	if err := ch.ExchangeDeclare("lim.ae", "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("lim.x", "direct", false, false, false, false, amqp091.Table{"alternate-exchange": "lim.ae"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("lim.q", false, false, false, false, amqp091.Table{"x-dead-letter-exchange": "lim.ae"}); err != nil {
		t.Fatal(err)
	}
	_ = broker.Version
}

// TestRevocationReachesOpenConnections: deleting a user closes its
// connections (320 "user 'x' is deleted", rabbit_connection_tracking);
// changed permissions refuse the next operation (403), publishes
// included; deleting a vhost closes its connections (320 "vhost 'x' is
// deleted").
func TestRevocationReachesOpenConnections(t *testing.T) {
	b, url := node(t)
	meta := b.Metadata()
	admin := channel(t, dial(t, url))
	if _, err := admin.QueueDeclare("rq", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}

	// permissions cleared: the next declare and the next publish get 403
	uurl := addUser(t, b, "rev", nil, ".*", ".*", ".*")
	uc := dial(t, uurl)
	ch := channel(t, uc)
	if _, err := ch.QueueDeclare("rev.q", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "amq.direct", "k", "before") // fills the write cache
	if err := meta.Propose(metadata.Command{Op: metadata.OpSetPermissions, Permission: &metadata.Permission{User: "rev", VHost: "/", Configure: "", Write: "", Read: ""}}); err != nil {
		t.Fatal(err)
	}
	_, err := ch.QueueDeclare("rev.q2", false, true, false, false, nil)
	amqpErr(t, err, 403, true)
	ch = channel(t, uc)
	closed := ch.NotifyClose(make(chan *amqp091.Error, 1))
	publish(t, ch, "amq.direct", "k", "after")
	if e := waitClose(t, closed); e == nil || e.Code != 403 {
		t.Fatalf("publish after revocation: %v", e)
	}
	ch = channel(t, uc)
	if _, _, err := ch.Get("rq", true); err == nil {
		t.Fatal("basic.get after revocation succeeded")
	}
	// cleared altogether: same
	if err := meta.Propose(metadata.Command{Op: metadata.OpSetPermissions, Permission: &metadata.Permission{User: "rev", VHost: "/", Configure: ".*", Write: ".*", Read: ".*"}}); err != nil {
		t.Fatal(err)
	}
	ch = channel(t, uc)
	if _, err := ch.QueueDeclare("rev.q3", false, true, false, false, nil); err != nil {
		t.Fatalf("permission given back, declare still refused: %v", err)
	}
	if err := meta.Propose(metadata.Command{Op: metadata.OpClearPermissions, VHost: "/", Name: "rev"}); err != nil {
		t.Fatal(err)
	}
	_, err = ch.QueueDeclare("rev.q4", false, true, false, false, nil)
	amqpErr(t, err, 403, true)

	// user deleted: its connections are closed
	uurl = addUser(t, b, "gone", nil, ".*", ".*", ".*")
	gc := dial(t, uurl)
	gclosed := gc.NotifyClose(make(chan *amqp091.Error, 1))
	if err := meta.Propose(metadata.Command{Op: metadata.OpDeleteUser, Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if e := waitClose(t, gclosed); e == nil || e.Code != 320 || e.Reason != "CONNECTION_FORCED - user 'gone' is deleted" {
		t.Fatalf("user deleted: got %v", e)
	}

	// vhost deleted: its connections are closed, others stay
	if err := meta.Propose(metadata.Command{Op: metadata.OpAddVHost, VHost: "rv"}); err != nil {
		t.Fatal(err)
	}
	if err := meta.Propose(metadata.Command{Op: metadata.OpSetPermissions, Permission: &metadata.Permission{User: "guest", VHost: "rv", Configure: ".*", Write: ".*", Read: ".*"}}); err != nil {
		t.Fatal(err)
	}
	vc := dial(t, strings.TrimSuffix(url, "/")+"/rv")
	vclosed := vc.NotifyClose(make(chan *amqp091.Error, 1))
	if err := meta.Propose(metadata.Command{Op: metadata.OpDeleteVHost, VHost: "rv"}); err != nil {
		t.Fatal(err)
	}
	if e := waitClose(t, vclosed); e == nil || e.Code != 320 || e.Reason != "CONNECTION_FORCED - vhost 'rv' is deleted" {
		t.Fatalf("vhost deleted: got %v", e)
	}
	if _, err := admin.QueueDeclarePassive("rq", false, false, false, false, nil); err != nil {
		t.Fatalf("a connection to another vhost was affected: %v", err)
	}
}
