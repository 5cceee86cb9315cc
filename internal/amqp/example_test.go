package amqp_test

import (
	"bytes"
	"fmt"

	"github.com/warrenmq/warren/internal/amqp"
)

func Example() {
	// Encode what a client would send, then read it back as a broker does.
	var wire []byte
	wire = append(wire, amqp.ProtocolHeader...)
	wire, _ = amqp.AppendMethodFrame(wire, 1, &amqp.QueueDeclare{Queue: "jobs", Durable: true,
		Arguments: amqp.Table{"x-max-length": int32(10)}})

	fr := amqp.NewFrameReader(bytes.NewReader(wire), 0)
	if err := fr.ReadProtocolHeader(); err != nil {
		fmt.Println(err)
		return
	}
	f, _ := fr.ReadFrame()
	m, err := amqp.DecodeMethod(f.Payload)
	if err != nil {
		fmt.Println(err)
		return
	}
	qd := m.(*amqp.QueueDeclare)
	fmt.Println(m.Name(), f.Channel, qd.Queue, qd.Durable, qd.Arguments["x-max-length"])

	e := amqp.NewError(amqp.NotFound, amqp.ClassQueue, 10, "no queue '%s' in vhost '%s'", "jobs", "/")
	fmt.Println(e.Text, e.Hard())
	// Output:
	// queue.declare 1 jobs true 10
	// NOT_FOUND - no queue 'jobs' in vhost '/' false
}
