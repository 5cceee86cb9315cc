package metadata

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/warrenmq/warren/internal/vfs"
	"github.com/warrenmq/warren/internal/vfs/powerloss"
)

// Power-loss test of the metadata log over vfs.MemFS: random definition
// changes (each acknowledged when Append returns), compactions (as the
// node does at every start, and at random), a power loss at a random
// point (inside an append, a snapshot write or a segment deletion too),
// recovery; then the recovered definitions are exactly those of the
// acknowledged changes, plus at most the one change in flight.

func randomCommand(rng *rand.Rand) Command {
	vhosts := []string{"/", "v1", "v\xff"}
	names := []string{"q", "orders", "q\xfe\xff", "x-\xc3"}
	v := vhosts[rng.Intn(len(vhosts))]
	n := names[rng.Intn(len(names))]
	switch rng.Intn(8) {
	case 0:
		return Command{Op: OpAddVHost, VHost: v}
	case 1:
		return Command{Op: OpDeleteVHost, VHost: v}
	case 2, 3:
		return Command{Op: OpDeclareQueue, Queue: &Queue{Name: n, VHost: v, Durable: rng.Intn(4) > 0, Exclusive: rng.Intn(5) == 0,
			Arguments: map[string]any{"x-max-length": int64(rng.Intn(100)), "x-s": n}}}
	case 4:
		return Command{Op: OpDeleteQueue, VHost: v, Name: n}
	case 5:
		return Command{Op: OpSetPolicy, Policy: &Policy{Name: n, VHost: v, Pattern: "^" + n, ApplyTo: "queues", Definition: map[string]any{"max-length": float64(rng.Intn(9))}}}
	case 6:
		return Command{Op: OpPutUser, User: &User{Name: n, PasswordHash: fmt.Sprint(rng.Int()), Tags: []string{"t"}}}
	default:
		return Command{Op: OpDeclareExchange, Exchange: &Exchange{Name: n, VHost: v, Type: "topic", Durable: true}}
	}
}

// definitions normalises a command history to what survives a restart.
func definitions(cmds []Command) []Command { return DurableCommands(cmds) }

func metaPowerLoss(seed int64, epochs int, lying bool) error {
	rng := rand.New(rand.NewSource(seed))
	fs := vfs.NewMem()
	const dir = "/data/meta"
	var history []Command // every acknowledged command, normalised at restarts
	for epoch := 0; epoch < epochs; epoch++ {
		fs.SetIgnoreSync(lying)
		nops := 3 + rng.Intn(25)
		fs.SetCrashPoint(fs.Ops()+1+int64(rng.Intn(nops*6+10)), vfs.CrashOptions{Rand: rng})
		l, recovered, err := OpenDurableWith(dir, DurableOptions{FS: fs})
		if err != nil {
			return fmt.Errorf("epoch %d: open: %w", epoch, err)
		}
		if !reflect.DeepEqual(definitions(recovered), definitions(history)) {
			l.Close()
			return fmt.Errorf("epoch %d: reopened definitions differ", epoch)
		}
		history = definitions(recovered)
		if err := l.Compact(history); err != nil { // as the node does at start
			return fmt.Errorf("epoch %d: compact at start: %w", epoch, err)
		}
		type acked struct {
			n   int // commands in history once acknowledged
			ops int64
		}
		var acks []acked
		var attempted []Command
		for op := 0; op < nops; op++ {
			if rng.Intn(8) == 0 {
				if err := l.Compact(definitions(history)); err != nil {
					return fmt.Errorf("compact: %w", err)
				}
				continue
			}
			c := randomCommand(rng)
			attempted = append(attempted, c)
			if err := l.Append(c, func(Command) error { return nil }); err != nil {
				return fmt.Errorf("append: %w", err)
			}
			history = append(history, c)
			acks = append(acks, acked{len(history), fs.Ops()})
		}
		l.Close()
		crashOps := fs.Ops()
		img := fs.Crashed()
		if img == nil {
			img = fs.CrashClone(vfs.CrashOptions{Rand: rng})
		} else {
			crashOps = fs.CrashPoint()
		}
		fs = img
		start := len(history) - len(attempted)
		must := start
		for _, a := range acks {
			if a.ops <= crashOps {
				must = a.n
			}
		}
		l, recovered, err = OpenDurableWith(dir, DurableOptions{FS: fs})
		if err != nil {
			return fmt.Errorf("epoch %d: recovery refused: %w", epoch, err)
		}
		l.Close()
		got := definitions(recovered)
		ok := false
		for k := must; k <= min(must+1, len(history)); k++ {
			if reflect.DeepEqual(got, definitions(history[:k])) {
				history = history[:k]
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("epoch %d: recovered definitions match neither the %d acknowledged changes nor one more (of %d made)", epoch, must-start, len(attempted))
		}
	}
	return nil
}

// TestPowerLossMetadata is the deterministic seeded loop (a few hundred
// iterations; WARREN_POWERLOSS_ITERS=N for more).
func TestPowerLossMetadata(t *testing.T) {
	powerloss.Run(t, 200, func(seed int64) error { return metaPowerLoss(seed, 4, false) })
}

// FuzzPowerLossMetadata explores seeds: go test -fuzz FuzzPowerLossMetadata.
func FuzzPowerLossMetadata(f *testing.F) {
	f.Add(int64(1))
	f.Fuzz(func(t *testing.T, seed int64) {
		if err := metaPowerLoss(seed, 4, false); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPowerLossMetadataCatchesMissingFsync: on a disk that acknowledges
// fsync without persisting, the checks find lost definitions.
func TestPowerLossMetadataCatchesMissingFsync(t *testing.T) {
	powerloss.MustCatch(t, 30, func(seed int64) error { return metaPowerLoss(seed, 4, true) })
}
