package cluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkLink measures one-way frame throughput between two nodes on
// the loopback, per frame size and send class.
func BenchmarkLink(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 64 << 10} {
		for _, class := range []string{"flow-controlled", "droppable"} {
			b.Run(fmt.Sprintf("%s/%dB", class, size), func(b *testing.B) {
				x := startBenchNode(b, "n1@localhost", 1)
				y := startBenchNode(b, "n2@localhost", 2)
				var got atomic.Int64
				y.Handle(KindQueue, func(uint64, []byte) { got.Add(1) })
				y.AddPeer(Peer{ID: 1, Name: x.name, Addr: x.Addr().String()})
				x.AddPeer(Peer{ID: 2, Name: y.name, Addr: y.Addr().String()})
				for !x.Connected(2) || !y.Connected(1) {
					time.Sleep(time.Millisecond)
				}
				b.SetBytes(int64(size))
				b.ResetTimer()
				sent := int64(0)
				for range b.N {
					p := make([]byte, size)
					if class == "droppable" {
						for x.TrySend(2, KindQueue, p) != nil {
							time.Sleep(10 * time.Microsecond) // full: the caller would drop it; here we retry
						}
					} else if err := x.Send(context.Background(), 2, KindQueue, p); err != nil {
						b.Fatal(err)
					}
					sent++
				}
				for got.Load() < sent {
					time.Sleep(100 * time.Microsecond)
				}
			})
		}
	}
}

func startBenchNode(b *testing.B, name string, id uint64) *testNode {
	cfg := fastConfig(name, id, "secret")
	l, err := Listen(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return &testNode{Link: l, name: cfg.Name, id: id}
}
