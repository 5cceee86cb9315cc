// Command warren-perf is a load generator for any AMQP 0-9-1 broker, in
// rabbitmq-perf-test's spirit:
//
//	warren-perf --uri amqp://guest:guest@localhost:5672/ -x 1 -y 1 -s 16 -z 10s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/warrenmq/warren/internal/perf"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	perf.MaybeServeNullSink()
	var c perf.Config
	var uris multi
	var qargs, flags string
	fs := flag.NewFlagSet("warren-perf", flag.ExitOnError)
	fs.Var(&uris, "uri", "broker URI (repeat for a cluster; connections are spread over them)")
	fs.Var(&uris, "h", "short for --uri")
	var puris, curis multi
	fs.Var(&puris, "producer-uri", "producers' broker URI (repeatable; default: --uri). Queues are declared through the first --uri: with a cluster, --uri B --producer-uri A --consumer-uri C publishes on A to a queue on B consumed on C")
	fs.Var(&curis, "consumer-uri", "consumers' broker URI (repeatable; default: --uri)")
	fs.IntVar(&c.Producers, "x", 1, "producers")
	fs.IntVar(&c.Consumers, "y", 1, "consumers")
	fs.IntVar(&c.Queues, "queues", 1, "queues (producer i and consumer i use queue i mod queues)")
	fs.StringVar(&c.QueuePattern, "queue-pattern", "perf-test-%d", "queue name pattern")
	fs.IntVar(&c.Size, "s", 16, "message size in bytes (min 16)")
	fs.IntVar(&c.Rate, "r", 0, "rate limit per producer, msg/s (0 = unlimited)")
	fs.IntVar(&c.ConfirmWindow, "c", 0, "publisher confirms with this many outstanding (0 = off)")
	fs.StringVar(&flags, "f", "", "message flags: persistent")
	fs.BoolVar(&c.Durable, "durable", false, "durable queues and exchange")
	fs.BoolVar(&c.Exclusive, "exclusive", false, "exclusive queues declared by each consumer")
	fs.BoolVar(&c.AutoDelete, "auto-delete", false, "auto-delete queues")
	fs.StringVar(&qargs, "queue-args", "", "queue arguments as JSON, e.g. '{\"x-max-length\":1000}'")
	fs.StringVar(&c.Exchange, "e", "", "exchange (default: the default exchange)")
	fs.StringVar(&c.ExchangeType, "t", "direct", "exchange type")
	fs.StringVar(&c.RoutingKey, "k", "", "routing key (default: the queue name)")
	fs.BoolVar(&c.AutoAck, "a", false, "auto-ack consumers")
	fs.IntVar(&c.Prefetch, "q", 0, "consumer prefetch (manual ack)")
	fs.IntVar(&c.MultiAckEvery, "A", 1, "ack every N messages with multiple=true")
	fs.DurationVar(&c.Duration, "z", 10*time.Second, "run duration")
	fs.IntVar(&c.MessageCount, "C", 0, "messages per producer (0 = until -z)")
	fs.DurationVar(&c.ProducerStartDelay, "producer-start-delay", 0, "delay before producers start")
	fs.DurationVar(&c.ConsumerStartDelay, "consumer-start-delay", 0, "delay before consumers start")
	fs.BoolVar(&c.JSON, "json", false, "print the summary as JSON")
	fs.BoolVar(&c.Null, "null", false, "no broker: measure the generator's own per-message ceiling")
	fs.BoolVar(&c.Raw, "raw", false, "publish with warren-perf's own frame writer (not amqp091-go), --batch publishes per socket write")
	fs.IntVar(&c.Batch, "batch", 64, "with --raw: publishes per socket write")
	nullSink := fs.Bool("null-sink", false, "publish to a local stand-in server that discards (and confirms) every publish, with no consumers: the client's own cost per message")
	fs.BoolVar(&c.EveryQueue, "every-queue", false, "every message reaches every queue (fanout): check each message once per queue")
	fs.Parse(os.Args[1:])
	c.URIs = uris
	c.ProducerURIs, c.ConsumerURIs = puris, curis
	if len(c.URIs) == 0 {
		c.URIs = []string{"amqp://guest:guest@localhost:5672/"}
	}
	c.Persistent = strings.Contains(flags, "persistent")
	if qargs != "" {
		if err := json.Unmarshal([]byte(qargs), &c.QueueArgs); err != nil {
			fmt.Fprintln(os.Stderr, "warren-perf: --queue-args is not a JSON object:", err)
			os.Exit(64)
		}
		for k, v := range c.QueueArgs {
			if f, ok := v.(float64); ok && f == float64(int64(f)) {
				c.QueueArgs[k] = int64(f)
			}
		}
	}
	if *nullSink {
		// in a child process, so that the CPU time printed is the client's
		uri, stop, err := perf.StartNullSinkProcess()
		if err != nil {
			fmt.Fprintln(os.Stderr, "warren-perf:", err)
			os.Exit(1)
		}
		defer stop()
		c.URIs, c.Consumers, c.Predeclared = []string{uri}, 0, true
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	res, err := perf.Run(ctx, c, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "warren-perf:", err)
		os.Exit(1)
	}
	if err := res.Verify(); err != nil {
		fmt.Fprintln(os.Stderr, "warren-perf:", err)
		os.Exit(3)
	}
}
