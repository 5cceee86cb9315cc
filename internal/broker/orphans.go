package broker

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"

	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/store"
	"github.com/warrenmq/warren/internal/vfs"
)

// Persisted messages whose queue is not among the recovered definitions
// fall in two kinds. A queue the metadata log saw declared (in the
// snapshot or the tail since) and that is gone now was deleted, or was
// exclusive or transient: its messages are dead, removed, and the removal
// is synced before the metadata log is compacted (which forgets the
// declaration). A queue the metadata log never saw means the definitions
// lost records: its messages are kept and the node refuses to start
// (MissingQueuesError), never deleting confirmed messages to get going.

// MissingQueuesError is returned by New when the message store holds
// messages for queues the definitions do not know.
type MissingQueuesError struct {
	DataDir string
	Queues  map[string]int // store key (vhost NUL name) → messages
}

func (e *MissingQueuesError) Error() string {
	list, total := describeQueued(e.Queues, nil)
	return fmt.Sprintf("refusing to start: the message store holds %d persisted messages for %d queues that the definitions do not know: %s. "+
		"The definitions under %s may have lost records; the messages are kept, nothing was deleted. "+
		"Restore %s from a backup, or run `warren-server --data-dir %s --recreate-missing-queues` (node stopped) to declare these queues again as durable classic queues with default arguments, then start the node and move or delete their messages",
		total, len(e.Queues), list, filepath.Join(e.DataDir, "meta"), filepath.Join(e.DataDir, "meta"), e.DataDir)
}

// classifyQueued sorts the queues the store has messages for: live
// (durable, recovered), gone (declared once per the recovered log, not
// surviving) and missing (never declared as far as the log knows).
func classifyQueued(recovered []metadata.Command, st *metadata.Store, queued *store.Recovery) (live, gone, missing []string) {
	declared := map[string]bool{}
	for _, c := range recovered {
		if c.Op == metadata.OpDeclareQueue && c.Queue != nil {
			declared[c.Queue.VHost+"\x00"+c.Queue.Name] = true
		}
	}
	st.Read(func(s *metadata.State) {
		for _, key := range queued.Queues() {
			vh, name, _ := strings.Cut(key, "\x00")
			q, ok := s.Queues[[2]string{vh, name}]
			switch {
			case ok && q.Durable && !q.Exclusive:
				live = append(live, key)
			case declared[key]:
				gone = append(gone, key)
			default:
				missing = append(missing, key)
			}
		}
	})
	return live, gone, missing
}

// RecreateMissingQueues is the offline way out of MissingQueuesError: it
// declares every queue the message store has messages for and the
// definitions lack, as a durable classic queue with default arguments
// (and its vhost if that is missing too). It returns the keys declared.
// Run it only while the node is stopped.
func RecreateMissingQueues(dataDir string, lg *slog.Logger, fs vfs.FS) ([]string, error) {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	ml, recovered, err := metadata.OpenDurableWith(filepath.Join(dataDir, "meta"), metadata.DurableOptions{Logger: lg, FS: fs})
	if err != nil {
		return nil, fmt.Errorf("opening the definitions under %s: %w", dataDir, err)
	}
	defer ml.Close()
	msgs, queued, err := store.Open(filepath.Join(dataDir, "msgs"), lg, store.Options{FS: fs})
	if err != nil {
		return nil, fmt.Errorf("opening the message store under %s: %w", dataDir, err)
	}
	defer msgs.Close()
	st := metadata.NewStore(ml)
	if err := st.Bootstrap(metadata.DurableCommands(recovered)); err != nil {
		return nil, err
	}
	_, _, missing := classifyQueued(recovered, st, queued)
	var users int
	st.Read(func(s *metadata.State) { users = len(s.Users) })
	if users == 0 && len(missing) > 0 {
		lg.Warn("the definitions hold no users (they were lost too): the node will not create the default user once a vhost exists; add one with `warrenctl add_user` (it authenticates by the node's cookie)")
	}
	for _, key := range missing {
		vh, name, _ := strings.Cut(key, "\x00")
		var hasVHost bool
		st.Read(func(s *metadata.State) { _, hasVHost = s.VHosts[vh] })
		if !hasVHost {
			if err := st.Propose(metadata.Command{Op: metadata.OpAddVHost, VHost: vh}); err != nil {
				return nil, fmt.Errorf("declaring vhost %q: %w", vh, err)
			}
		}
		if err := st.Propose(metadata.Command{Op: metadata.OpDeclareQueue, Queue: &metadata.Queue{Name: name, VHost: vh, Durable: true}}); err != nil {
			return nil, fmt.Errorf("declaring queue %q in vhost %q: %w", name, vh, err)
		}
		lg.Warn("declared a queue the definitions had lost", "vhost", vh, "queue", name, "messages", queued.Count(key))
	}
	return missing, nil
}

// recordDrops writes, and syncs, the message store's drop record for a
// deleted durable queue or vhost, so that a crash cannot bring their
// messages back (into a queue declared again under the same name) when
// their remove records were not on disk yet. It runs while the metadata
// log holds its lock, so no later definition commits before the record
// is durable.
func (b *Broker) recordDrops(c metadata.Command) {
	if b.msgs == nil {
		return
	}
	var err error
	switch c.Op {
	case metadata.OpDeleteQueue:
		v := b.VHost(c.VHost)
		if v == nil {
			return
		}
		if q := v.LookupQueue(c.Name); q != nil && q.Config().Durable {
			err = b.msgs.DropQueue(c.VHost + "\x00" + c.Name)
		}
	case metadata.OpDeleteVHost:
		err = b.msgs.DropVHost(c.VHost)
	}
	if err != nil {
		b.log.Error("message store: recording a deleted queue failed; its messages may come back after a crash", "vhost", c.VHost, "queue", c.Name, "err", err)
	}
}

// describeQueued lists store keys (vhost NUL name) with their message
// counts, and why when given, the first ten by name, for a refusal; and
// the total of the counts.
func describeQueued(counts map[string]int, why map[string]string) (string, int) {
	keys := make([]string, 0, len(counts))
	total := 0
	for k, n := range counts {
		keys = append(keys, k)
		total += n
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i == 10 {
			fmt.Fprintf(&b, ", and %d more", len(keys)-10)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		vh, name, _ := strings.Cut(k, "\x00")
		fmt.Fprintf(&b, "vhost %q queue %q (%d messages)", vh, name, counts[k])
		if w := why[k]; w != "" {
			b.WriteString(": " + w)
		}
	}
	return b.String(), total
}
