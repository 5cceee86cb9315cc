package metadata

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/warrenmq/warren/internal/wal"
)

// DurableLog is the standalone node's Log backed by the WAL: a command is
// committed once its record is fsynced, then applied. A snapshot file
// (the definitions as commands, with the log index it covers) bounds
// replay; Compact writes a new one.
type DurableLog struct {
	dir string
	log *wal.Log
	mu  sync.Mutex
}

type snapshot struct {
	Index    uint64    `json:"index"`
	Commands []Command `json:"commands"`
}

// OpenDurable opens the log in dir and returns the committed commands
// (snapshot, then log tail) in order.
func OpenDurable(dir string, lg *slog.Logger) (*DurableLog, []Command, error) {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	l, err := wal.Open(wal.Options{Dir: filepath.Join(dir, "log"), Logger: lg})
	if err != nil {
		return nil, nil, err
	}
	var snap snapshot
	raw, err := os.ReadFile(filepath.Join(dir, "snapshot.json"))
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &snap); err != nil {
			l.Close()
			return nil, nil, fmt.Errorf("metadata snapshot %s is unreadable: %w (restore it from a backup or remove it to start empty)", filepath.Join(dir, "snapshot.json"), err)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		l.Close()
		return nil, nil, err
	}
	cmds := snap.Commands
	err = l.Replay(snap.Index+1, func(_ uint64, rec []byte) error {
		var c Command
		if err := json.Unmarshal(rec, &c); err != nil {
			return fmt.Errorf("metadata log record unreadable: %w", err)
		}
		cmds = append(cmds, c)
		return nil
	})
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	return &DurableLog{dir: dir, log: l}, cmds, nil
}

// Append commits cmd durably, then applies it.
func (d *DurableLog) Append(cmd Command, apply func(Command) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Validate first on a copy: a command that cannot apply is not logged.
	raw, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	if _, err := d.log.AppendSync(raw); err != nil {
		return fmt.Errorf("metadata change not persisted: %w", err)
	}
	return apply(cmd)
}

// Compact writes a snapshot holding cmds (the whole current definitions)
// and drops the log segments it covers.
func (d *DurableLog) Compact(cmds []Command) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	idx := d.log.LastIndex()
	if err := d.log.WaitDurable(idx); err != nil && idx > 0 {
		return err
	}
	raw, err := json.Marshal(snapshot{Index: idx, Commands: cmds})
	if err != nil {
		return err
	}
	tmp := filepath.Join(d.dir, "snapshot.json.tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if err := os.Rename(tmp, filepath.Join(d.dir, "snapshot.json")); err != nil {
		return err
	}
	if err := (wal.OSFS{}).SyncDir(d.dir); err != nil {
		return err
	}
	return d.log.TruncateFront(idx + 1)
}

// Close closes the log.
func (d *DurableLog) Close() error { return d.log.Close() }

// Bootstrap applies already-committed commands (recovery) without logging.
func (s *Store) Bootstrap(cmds []Command) error {
	for _, c := range cmds {
		if err := s.apply(c); err != nil {
			return fmt.Errorf("replaying %s: %w", c.Op, err)
		}
	}
	return nil
}

// DurableCommands replays cmds on an empty state and returns the commands
// that recreate what survives a restart: users, vhosts, permissions,
// policies, durable exchanges and queues (not exclusive ones) and the
// bindings between durable objects, as RabbitMQ keeps them.
func DurableCommands(cmds []Command) []Command {
	st := NewState()
	for _, c := range cmds {
		_ = st.Apply(c) // a command that failed when proposed was never logged
	}
	return Commands(exportState(st))
}

// Commands lists the commands that create d, in dependency order.
func Commands(d Definitions) []Command {
	var cmds []Command
	for _, v := range d.VHosts {
		cmds = append(cmds, Command{Op: OpAddVHost, VHost: v.Name})
	}
	for _, u := range d.Users {
		u := u
		cmds = append(cmds, Command{Op: OpPutUser, User: &u})
	}
	for _, p := range d.Permissions {
		p := p
		cmds = append(cmds, Command{Op: OpSetPermissions, Permission: &p})
	}
	for _, p := range d.Policies {
		p := p
		cmds = append(cmds, Command{Op: OpSetPolicy, Policy: &p})
	}
	for _, x := range d.Exchanges {
		x := x
		cmds = append(cmds, Command{Op: OpDeclareExchange, Exchange: &x})
	}
	for _, q := range d.Queues {
		q := q
		cmds = append(cmds, Command{Op: OpDeclareQueue, Queue: &q})
	}
	for _, b := range d.Bindings {
		b := b
		cmds = append(cmds, Command{Op: OpBind, Binding: &b})
	}
	return cmds
}
