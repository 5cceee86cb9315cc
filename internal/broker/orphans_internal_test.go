package broker

import (
	"reflect"
	"slices"
	"testing"

	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/queue"
	"github.com/warrenmq/warren/internal/store"
)

// TestClassifyQueued: messages of a queue the metadata log saw deleted
// (its removals may not have reached the disk before a crash), or that
// does not survive a restart (exclusive, transient), are dead; those of a
// queue the log never saw are "missing" and must be kept.
func TestClassifyQueued(t *testing.T) {
	q := func(name string, durable, exclusive bool) metadata.Command {
		return metadata.Command{Op: metadata.OpDeclareQueue, Queue: &metadata.Queue{Name: name, VHost: "/", Durable: durable, Exclusive: exclusive}}
	}
	recovered := []metadata.Command{
		{Op: metadata.OpAddVHost, VHost: "/"},
		q("live", true, false), q("deleted", true, false), q("excl", true, true), q("transient", false, false),
		{Op: metadata.OpDeleteQueue, VHost: "/", Name: "deleted"},
		{Op: metadata.OpAddVHost, VHost: "gone-vhost"},
		{Op: metadata.OpDeclareQueue, Queue: &metadata.Queue{Name: "in-deleted-vhost", VHost: "gone-vhost", Durable: true}},
		{Op: metadata.OpDeleteVHost, VHost: "gone-vhost"},
	}
	st := metadata.NewStore(metadata.NewLocalLog())
	if err := st.Bootstrap(metadata.DurableCommands(recovered)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, _, err := store.Open(dir, nil, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"/\x00live", "/\x00deleted", "/\x00excl", "/\x00transient", "gone-vhost\x00in-deleted-vhost", "/\x00never-declared", "other\x00x"}
	for _, k := range keys {
		if _, err := s.Enqueue(k, &queue.Message{Body: []byte("m"), Persistent: true}, 0); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s, rec, err := store.Open(dir, nil, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	live, gone, missing := classifyQueued(recovered, st, rec)
	slices.Sort(gone)
	slices.Sort(missing)
	if !reflect.DeepEqual(live, []string{"/\x00live"}) ||
		!reflect.DeepEqual(gone, []string{"/\x00deleted", "/\x00excl", "/\x00transient", "gone-vhost\x00in-deleted-vhost"}) ||
		!reflect.DeepEqual(missing, []string{"/\x00never-declared", "other\x00x"}) {
		t.Fatalf("live %q\ngone %q\nmissing %q", live, gone, missing)
	}
}
