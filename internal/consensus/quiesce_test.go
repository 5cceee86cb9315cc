package consensus

import (
	"fmt"
	"testing"
)

func allQuiet(c *cluster) func() bool {
	return func() bool {
		for _, h := range c.hosts {
			if h.Stats().Awake != 0 {
				return false
			}
		}
		return true
	}
}

// TestIdleGroupsGoQuiet: idle groups stop ticking on every member; a
// proposal wakes its group and commits; the group goes quiet again.
func TestIdleGroupsGoQuiet(t *testing.T) {
	c := newCluster(t, 3, 1, 2, 3, 4, 5)
	for g := uint64(1); g <= 5; g++ {
		c.leader(g)
	}
	waitFor(t, "every group quiet on every node", allQuiet(c))
	ticks := map[uint64]uint64{}
	for id, h := range c.hosts {
		ticks[id] = h.Stats().Ticks
	}
	for i := 0; i < 3; i++ {
		if err := c.propose(c.ids[i], 3, fmt.Sprint("wake-", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.converge(3, 3, c.ids...)
	waitFor(t, "quiet again", allQuiet(c))
	for id, h := range c.hosts {
		if h.Stats().Wakes == 0 {
			t.Fatalf("node %d: group 3 committed without waking", id)
		}
	}
}

// TestQuietGroupsElectWhenTheLeaderDies: with every group quiet, the host
// leading them stops; the others notice its silence (node heartbeats),
// wake the groups it led and elect new leaders, which commit.
func TestQuietGroupsElectWhenTheLeaderDies(t *testing.T) {
	c := newCluster(t, 3, 1, 2)
	l := c.leader(1)
	c.leader(2)
	waitFor(t, "every group quiet", allQuiet(c))
	c.stop(l)
	var rest []uint64
	for _, id := range c.ids {
		if id != l {
			rest = append(rest, id)
		}
	}
	for _, g := range []uint64{1, 2} {
		nl := c.leader(g, rest...)
		if nl == l {
			t.Fatalf("group %d still led by the stopped node", g)
		}
		if err := c.propose(rest[0], g, "after"); err != nil {
			t.Fatal(err)
		}
	}
}
