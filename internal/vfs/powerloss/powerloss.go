// Package powerloss runs the power-loss tests of the packages on
// vfs.MemFS (wal, store, metadata) the same way: a deterministic loop over
// seeds, and a meta-test proving the checks catch a disk that does not
// keep what it acknowledged.
//
//	powerloss.Run(t, 200, func(seed int64) error { return check(seed, false) })
//	powerloss.MustCatch(t, 30, func(seed int64) error { return check(seed, true) })
package powerloss

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// Iterations is WARREN_POWERLOSS_ITERS when set (long runs), else short.
func Iterations(short int) int {
	if s := os.Getenv("WARREN_POWERLOSS_ITERS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return short
}

// Run calls check for seeds 1..Iterations(short) and fails the test at the
// first error, naming the seed (rerun it alone to debug).
func Run(t *testing.T, short int, check func(seed int64) error) {
	t.Helper()
	n := Iterations(short)
	start := time.Now()
	for seed := int64(1); seed <= int64(n); seed++ {
		if err := check(seed); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	t.Logf("%d iterations in %v", n, time.Since(start).Round(time.Millisecond))
}

// MustCatch calls check (set up so that fsync is skipped or the disk lies)
// for seeds 1..n and fails unless at least half the iterations report lost
// acknowledged data: if they did not, Run's passing would prove nothing.
func MustCatch(t *testing.T, n int, check func(seed int64) error) {
	t.Helper()
	caught := 0
	var example error
	for seed := int64(1); seed <= int64(n); seed++ {
		if err := check(seed); err != nil {
			caught++
			example = err
		}
	}
	t.Logf("caught in %d of %d iterations, e.g. %v", caught, n, example)
	if caught < n/2 {
		t.Fatalf("the power-loss checks caught a missing fsync in only %d of %d iterations", caught, n)
	}
}
