package metadata

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/wal"
)

// badName is not valid UTF-8: JSON would store it as "q\uFFFD\uFFFD".
const badName = "q\xff\xfe-\xc3"

func exoticCommands() []Command {
	return []Command{
		{Op: OpAddVHost, VHost: "v\xff"},
		{Op: OpPutUser, User: &User{Name: "u\xfe", PasswordHash: "h\x00\xff", Tags: []string{}}},
		{Op: OpDeclareQueue, Queue: &Queue{Name: badName, VHost: "v\xff", Durable: true, Exclusive: true, Owner: 42,
			Arguments: map[string]any{
				"x-max-length": int64(10), "x-i32": int32(-5), "x-u8": uint8(7), "x-f32": float32(1.5), "x-f": 2.25,
				"x-s": "caf\xe9", "x-b": []byte{0, 0xff}, "x-nil": nil, "x-true": true,
				"x-list":  []any{int16(3), "a", []any{}, map[string]any{}},
				"x-table": amqp.Table{"k\xff": amqp.Decimal{Scale: 2, Value: 314}},
				"x-time":  time.Unix(1700000000, 0), "x-empty": map[string]any{}, "x-nilmap": map[string]any(nil),
				"x-num": json.Number("12"), "x-strs": []string{"a", "\xff"}, "x-int": 7, "x-uint": uint(8), "x-u64": uint64(1 << 63)},
		}},
		{Op: OpDeclareQueue, Queue: &Queue{Name: "plain", VHost: "v\xff", Durable: true}},
		{Op: OpBind, Binding: &Binding{Source: "x\xff", VHost: "v\xff", Destination: badName, DestinationType: "queue", RoutingKey: "rk\xff", Arguments: map[string]any{}}},
		{Op: OpSetPolicy, Policy: &Policy{Name: "p", VHost: "v\xff", Pattern: "^\xff", ApplyTo: "queues", Definition: map[string]any{"max-length": float64(3)}, Priority: -2}},
		{Op: OpDeleteQueue, VHost: "v\xff", Name: badName},
	}
}

// TestCodecIsByteExact: every command round-trips unchanged: invalid
// UTF-8, Go types of argument values, nil versus empty, exclusivity.
func TestCodecIsByteExact(t *testing.T) {
	for _, c := range exoticCommands() {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip changed the command:\n got %#v\nwant %#v", got, c)
		}
		// the replicated log's encoding is the same
		rb, _ := encodeCommand(c)
		if rc, err := decodeCommand(rb); err != nil || !reflect.DeepEqual(rc, c) {
			t.Fatalf("replicated round trip: %v", err)
		}
	}
	// JSON, as before, would have changed the name
	raw, _ := json.Marshal(Queue{Name: badName})
	var q Queue
	json.Unmarshal(raw, &q)
	if q.Name == badName {
		t.Fatal("JSON kept invalid UTF-8: the premise of this test is wrong")
	}
}

// fillAll sets every field reachable from v to a non-zero value, so a
// field added to a definition type later must round-trip too (or this
// test says which kind the codec lacks).
func fillAll(t *testing.T, v reflect.Value, depth int) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("s\xff" + v.Type().Name())
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(-3)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(5)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(0.5)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fillAll(t, p.Elem(), depth+1)
		v.Set(p)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fillAll(t, v.Field(i), depth+1)
			}
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := 0; i < 2; i++ {
			fillAll(t, s.Index(i), depth+1)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		e := reflect.New(v.Type().Elem()).Elem()
		fillAll(t, e, depth+1)
		m.SetMapIndex(reflect.ValueOf("k\xff").Convert(v.Type().Key()), e)
		v.Set(m)
	case reflect.Interface:
		v.Set(reflect.ValueOf(int64(-9)))
	default:
		t.Fatalf("field of kind %s: teach codec.go and this test about it", v.Kind())
	}
}

func TestCodecCoversEveryField(t *testing.T) {
	var c Command
	fillAll(t, reflect.ValueOf(&c).Elem(), 0)
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCommand(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip of a fully populated command: %v\n got %#v\nwant %#v", err, got, c)
	}
	var bs binState
	fillAll(t, reflect.ValueOf(&bs).Elem(), 0)
	b, err = marshalBinary(&bs)
	if err != nil {
		t.Fatal(err)
	}
	var bs2 binState
	if err := unmarshalBinary(b, &bs2); err != nil || !reflect.DeepEqual(bs, bs2) {
		t.Fatalf("snapshot state round trip: %v", err)
	}
	// truncated records are errors, never partial commands
	for n := 1; n < len(b); n += 7 {
		if err := unmarshalBinary(b[:n], &bs2); err == nil {
			t.Fatalf("a record cut at %d of %d bytes decoded", n, len(b))
		}
	}
}

func TestCodecRefusesWhatItCannotKeep(t *testing.T) {
	dir := t.TempDir()
	l, _, err := OpenDurable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(l)
	s.Propose(Command{Op: OpAddVHost, VHost: "/"})
	err = s.Propose(Command{Op: OpDeclareQueue, Queue: &Queue{Name: "q", VHost: "/", Arguments: map[string]any{"x": struct{ A int }{1}}}})
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "queue.Arguments.x") {
		t.Fatalf("want a refusal naming the argument, got %v", err)
	}
	s.Read(func(st *State) {
		if len(st.Queues) != 0 {
			t.Fatal("a refused command was applied")
		}
	})
	l.Close()
}

// TestDurableLogKeepsInvalidUTF8Names: a queue named with invalid UTF-8
// comes back from the metadata log (tail and snapshot) with the same
// bytes; before, JSON renamed it and its messages became orphans.
func TestDurableLogKeepsInvalidUTF8Names(t *testing.T) {
	dir := t.TempDir()
	l, _, err := OpenDurable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := exoticCommands()
	want = want[:len(want)-1] // keep the queue
	for _, c := range want {
		if err := l.Append(c, func(Command) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	l, got, err := OpenDurable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("log tail changed the commands:\n got %#v\nwant %#v", got, want)
	}
	found := false
	for _, c := range got {
		if c.Queue != nil && c.Queue.Name == badName {
			found = true
		}
	}
	if !found {
		t.Fatal("queue name changed")
	}
	// through a snapshot
	if err := l.Compact(got); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l, got2, err := OpenDurable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !reflect.DeepEqual(got2, want) {
		t.Fatalf("snapshot changed the commands:\n got %#v\nwant %#v", got2, want)
	}
	// and through the replicated group's snapshot
	s := NewStore(NewLocalLog())
	for _, c := range want {
		if err := s.Propose(c); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := s.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	s2 := NewStore(NewLocalLog())
	if err := s2.restore(snap); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.state, s2.state) {
		t.Fatal("replicated snapshot changed the state")
	}
}

// TestReadsJSONOfEarlierVersions: a data directory written by an earlier
// version (JSON snapshot and records) still opens.
func TestReadsJSONOfEarlierVersions(t *testing.T) {
	dir := t.TempDir()
	old := sampleCommands()
	raw, _ := json.Marshal(snapshot{Index: 0, Commands: old[:3]})
	os.WriteFile(filepath.Join(dir, "snapshot.json"), raw, 0o640)
	w, err := wal.Open(wal.Options{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range old[3:] {
		b, _ := json.Marshal(c)
		w.Append(b)
	}
	w.Close()
	l, got, err := OpenDurable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]Command, 0, len(old))
	for _, c := range old { // what JSON gives back
		b, _ := json.Marshal(c)
		var c2 Command
		json.Unmarshal(b, &c2)
		want = append(want, c2)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("old format:\n got %#v\nwant %#v", got, want)
	}
	// compacting converts to the new snapshot and drops the old one
	if err := l.Compact(got); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := os.Stat(filepath.Join(dir, "snapshot.json")); !os.IsNotExist(err) {
		t.Fatal("old snapshot left behind")
	}
	l, got, err = OpenDurable(dir, nil)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("after conversion: %v", err)
	}
	l.Close()
}

// TestCorruptMetadataLogRefusesToOpen: one flipped byte in the metadata
// log used to drop every later definition (durable queues vanished and
// their messages were deleted as orphans). Now the node is told which
// file and offset, and nothing is dropped.
func TestCorruptMetadataLogRefusesToOpen(t *testing.T) {
	dir := t.TempDir()
	l, _, err := OpenDurable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range sampleCommands() {
		if err := l.Append(c, func(Command) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "log", "*.wal"))
	b, _ := os.ReadFile(segs[0])
	b[30] ^= 0x08
	os.WriteFile(segs[0], b, 0o640)
	_, _, err = OpenDurable(dir, nil)
	if !errors.Is(err, wal.ErrCorrupt) || !strings.Contains(err.Error(), segs[0]) || !strings.Contains(err.Error(), "--repair-wal") {
		t.Fatalf("want a corruption error naming %s, got %v", segs[0], err)
	}
}

// TestReplicatedQueueFieldsOmittedWhenZero: a queue that is not
// replicated encodes without the Group and Members fields (byte for byte
// what versions before them wrote), and one that is keeps them.
func TestReplicatedQueueFieldsOmittedWhenZero(t *testing.T) {
	plain := Command{Op: OpDeclareQueue, Queue: &Queue{Name: "q", VHost: "/", Durable: true}}
	b, err := EncodeCommand(plain)
	if err != nil {
		t.Fatal(err)
	}
	// (the command itself has a Members field: the cluster's member table)
	if bytes.Contains(b, []byte("Group")) || bytes.Count(b, []byte("Members")) > 1 {
		t.Fatalf("a classic queue's record names the replicated fields: %q", b)
	}
	rq := Command{Op: OpDeclareQueue, Queue: &Queue{Name: "q", VHost: "/", Durable: true, Group: 1<<40 + 3, Members: []string{"a@h", "b@h"}}}
	if b, err = EncodeCommand(rq); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCommand(b)
	if err != nil || got.Queue.Group != rq.Queue.Group || !reflect.DeepEqual(got.Queue.Members, rq.Queue.Members) {
		t.Fatalf("round trip: %v %+v", err, got.Queue)
	}
}
