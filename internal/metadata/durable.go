package metadata

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/warrenmq/warren/internal/vfs"
	"github.com/warrenmq/warren/internal/wal"
)

// DurableLog is the standalone node's Log backed by the WAL: a command is
// committed once its record is fsynced, then applied. A snapshot file
// (the definitions as commands, with the log index it covers) bounds
// replay; Compact writes a new one. Records and snapshots use the
// byte-exact encoding of codec.go (JSON ones from earlier versions are
// still read).
type DurableLog struct {
	dir string
	fs  vfs.FS
	log *wal.Log
	mu  sync.Mutex
}

// snapshot is the JSON snapshot of earlier versions (snapshot.json).
type snapshot struct {
	Index    uint64    `json:"index"`
	Commands []Command `json:"commands"`
}

// binSnapshot is the snapshot file's content (snapshot.bin): the encoded
// struct followed by its CRC-32C.
type binSnapshot struct {
	Index    uint64
	Commands []Command
}

const (
	snapshotFile     = "snapshot.bin"
	snapshotFileJSON = "snapshot.json"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// DurableOptions configure OpenDurableWith.
type DurableOptions struct {
	Logger *slog.Logger
	FS     vfs.FS // nil: the OS file system
}

// OpenDurable opens the log in dir and returns the committed commands
// (snapshot, then log tail) in order.
func OpenDurable(dir string, lg *slog.Logger) (*DurableLog, []Command, error) {
	return OpenDurableWith(dir, DurableOptions{Logger: lg})
}

// OpenDurableWith is OpenDurable with options.
func OpenDurableWith(dir string, o DurableOptions) (*DurableLog, []Command, error) {
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	fs := vfs.Default(o.FS)
	l, err := wal.Open(wal.Options{Dir: filepath.Join(dir, "log"), Logger: lg, FS: fs})
	if err != nil {
		return nil, nil, err
	}
	snap, err := readSnapshot(fs, dir)
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	if first := l.FirstIndex(); first > snap.Index+1 {
		l.Close()
		return nil, nil, fmt.Errorf("metadata log %s starts at record %d but the snapshot covers only up to %d: records %d to %d are missing (restore %s from a backup)",
			filepath.Join(dir, "log"), first, snap.Index, snap.Index+1, first-1, dir)
	}
	cmds := snap.Commands
	err = l.Replay(snap.Index+1, func(idx uint64, rec []byte) error {
		c, err := DecodeCommand(rec)
		if err != nil {
			return fmt.Errorf("metadata log %s: record %d unreadable: %w (restore the directory from a backup)", filepath.Join(dir, "log"), idx, err)
		}
		cmds = append(cmds, c)
		return nil
	})
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	return &DurableLog{dir: dir, fs: fs, log: l}, cmds, nil
}

// readSnapshot reads snapshot.bin, or the JSON snapshot.json of earlier
// versions, or returns an empty snapshot when there is neither.
func readSnapshot(fs vfs.FS, dir string) (binSnapshot, error) {
	var snap binSnapshot
	path := filepath.Join(dir, snapshotFile)
	raw, err := vfs.ReadFile(fs, path)
	switch {
	case err == nil:
		if len(raw) < 4 || crc32.Checksum(raw[:len(raw)-4], castagnoli) != binary.LittleEndian.Uint32(raw[len(raw)-4:]) {
			return snap, fmt.Errorf("metadata snapshot %s fails its checksum (restore it from a backup)", path)
		}
		if err := unmarshalBinary(raw[:len(raw)-4], &snap); err != nil {
			return snap, fmt.Errorf("metadata snapshot %s is unreadable: %w (restore it from a backup)", path, err)
		}
		return snap, nil
	case errors.Is(err, os.ErrNotExist):
	default:
		return snap, fmt.Errorf("reading the metadata snapshot %s: %w", path, err)
	}
	path = filepath.Join(dir, snapshotFileJSON)
	raw, err = vfs.ReadFile(fs, path)
	switch {
	case err == nil:
		var js snapshot
		if err := json.Unmarshal(raw, &js); err != nil {
			return snap, fmt.Errorf("metadata snapshot %s is unreadable: %w (restore it from a backup)", path, err)
		}
		return binSnapshot(js), nil
	case errors.Is(err, os.ErrNotExist):
		return snap, nil
	default:
		return snap, fmt.Errorf("reading the metadata snapshot %s: %w", path, err)
	}
}

// Append commits cmd durably, then applies it. A command the encoding
// cannot represent exactly is refused, not persisted altered.
func (d *DurableLog) Append(cmd Command, apply func(Command) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	raw, err := EncodeCommand(cmd)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
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
	raw, err := marshalBinary(&binSnapshot{Index: idx, Commands: cmds})
	if err != nil {
		return err
	}
	raw = binary.LittleEndian.AppendUint32(raw, crc32.Checksum(raw, castagnoli))
	if err := vfs.WriteFileAtomic(d.fs, d.dir, snapshotFile, raw); err != nil {
		return fmt.Errorf("writing the metadata snapshot in %s: %w", d.dir, err)
	}
	// the JSON snapshot of an earlier version is superseded
	if err := d.fs.Remove(filepath.Join(d.dir, snapshotFileJSON)); err == nil {
		if err := d.fs.SyncDir(d.dir); err != nil {
			return err
		}
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
