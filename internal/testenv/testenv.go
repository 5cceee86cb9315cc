// Package testenv decides what a test does when the machine lacks
// something it needs (root, a tool, a kernel feature, a file): skip on a
// developer's machine, fail in CI. `.ci/run` sets WARREN_REQUIRE_ALL=1 so
// a missing package or privilege can never hide a test CI did not run.
//
//	testenv.NeedRoot(t)
//	testenv.NeedCommand(t, "keepalived", "apt-get install keepalived")
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireAll reports whether every environment skip is a failure
// (WARREN_REQUIRE_ALL=1, set by .ci/run).
func RequireAll() bool { return os.Getenv("WARREN_REQUIRE_ALL") == "1" }

// Skip skips the test for lack of something in the environment, or fails
// it when RequireAll is set.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if RequireAll() {
		t.Fatalf("WARREN_REQUIRE_ALL=1 and the environment lacks what this test needs: %s", msg)
	}
	t.Skip(msg)
}

// NeedRoot skips (or fails, in CI) unless the test runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root (network namespaces, raw sockets)")
	}
}

// NeedCommand skips (or fails, in CI) unless name is on PATH; install
// says how to get it.
func NeedCommand(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, "%s not installed (%s)", name, install)
	}
	return p
}

// NeedFile skips (or fails, in CI) unless path exists.
func NeedFile(t testing.TB, path, why string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Skip(t, "%s not present: %s", path, why)
	}
}

// RepoRoot returns the module's root directory (the folder with go.mod),
// found from the test's working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		dir = filepath.Dir(dir)
	}
	t.Fatal("repository root (go.mod) not found above the test's directory")
	return ""
}
