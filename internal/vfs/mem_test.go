package vfs

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand"
	"os"
	"testing"
)

func write(t *testing.T, f File, s string) {
	t.Helper()
	if _, err := f.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func content(t *testing.T, m *MemFS, name string) (string, bool) {
	t.Helper()
	b, err := ReadFile(m, name)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b), true
}

func TestCrashKeepsOnlySyncedData(t *testing.T) {
	m := NewMem()
	m.MkdirAll("/d", 0o750)
	f, _ := m.OpenFile("/d/a", os.O_RDWR|os.O_CREATE, 0o640)
	write(t, f, "synced")
	f.Sync()
	write(t, f, "-lost")
	// the file's entry was never synced: a crash loses the file itself
	if _, ok := content(t, m.CrashClone(CrashOptions{}), "/d/a"); ok {
		t.Fatal("a file whose directory entry was never synced survived")
	}
	m.SyncDir("/d")
	if got, _ := content(t, m.CrashClone(CrashOptions{}), "/d/a"); got != "synced" {
		t.Fatalf("after crash %q", got)
	}
	if got, _ := content(t, m, "/d/a"); got != "synced-lost" {
		t.Fatalf("running view %q", got)
	}
	// a removal not synced comes back; once synced it does not
	m.Remove("/d/a")
	if _, ok := content(t, m.CrashClone(CrashOptions{}), "/d/a"); !ok {
		t.Fatal("an unsynced removal survived the crash")
	}
	m.SyncDir("/d")
	if _, ok := content(t, m.CrashClone(CrashOptions{}), "/d/a"); ok {
		t.Fatal("a synced removal was undone")
	}
}

func TestCrashRenameAndTornPages(t *testing.T) {
	m := NewMem()
	m.MkdirAll("/d", 0o750)
	old, _ := m.OpenFile("/d/x", os.O_RDWR|os.O_CREATE, 0o640)
	write(t, old, "old")
	old.Sync()
	m.SyncDir("/d")
	tmp, _ := m.OpenFile("/d/x.tmp", os.O_RDWR|os.O_CREATE, 0o640)
	write(t, tmp, "new")
	tmp.Sync()
	m.Rename("/d/x.tmp", "/d/x")
	if got, _ := content(t, m.CrashClone(CrashOptions{}), "/d/x"); got != "old" {
		t.Fatalf("unsynced rename: %q", got)
	}
	m.SyncDir("/d")
	if got, _ := content(t, m.CrashClone(CrashOptions{}), "/d/x"); got != "new" {
		t.Fatalf("synced rename: %q", got)
	}
	// unsynced appends survive as a prefix, maybe with the last page torn
	f, _ := m.OpenFile("/d/x", os.O_RDWR|os.O_APPEND, 0)
	tail := bytes.Repeat([]byte("t"), 3*PageSize)
	f.Write(tail)
	rng := rand.New(rand.NewSource(1))
	var longer, torn int
	for i := 0; i < 200; i++ {
		got, _ := content(t, m.CrashClone(CrashOptions{Rand: rng}), "/d/x")
		if got[:3] != "new" {
			t.Fatal("synced bytes changed")
		}
		if len(got) > 3 {
			longer++
			if !bytes.Equal([]byte(got[3:]), tail[:len(got)-3]) {
				torn++
			}
		}
	}
	if longer == 0 || torn == 0 || longer == 200 {
		t.Fatalf("crash outcomes: %d kept some unsynced bytes, %d torn", longer, torn)
	}
}

func TestCrashPointAndLyingDisk(t *testing.T) {
	m := NewMem()
	m.MkdirAll("/d", 0o750)
	m.SetCrashPoint(m.Ops()+3, CrashOptions{})
	f, _ := m.OpenFile("/d/a", os.O_RDWR|os.O_CREATE, 0o640) // 1
	write(t, f, "x")                                         // 2
	m.SyncDir("/d")                                          // 3: crash image here
	f.Sync()                                                 // 4
	c := m.Crashed()
	if c == nil {
		t.Fatal("no crash image")
	}
	if got, ok := content(t, c, "/d/a"); !ok || got != "" {
		t.Fatalf("at the crash point the file exists empty; got %q %v", got, ok)
	}
	m.SetIgnoreSync(true)
	write(t, f, "y")
	f.Sync()
	if got, _ := content(t, m.CrashClone(CrashOptions{}), "/d/a"); got != "x" {
		t.Fatalf("a lying disk kept %q", got)
	}
}
