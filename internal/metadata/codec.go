package metadata

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/warrenmq/warren/internal/amqp"
)

// The persisted encoding of commands and snapshots. JSON could not be
// trusted with definitions: it turns invalid UTF-8 in a name into U+FFFD
// (a different queue after a restart), every number into float64, and
// drops fields tagged `json:"-"` (a queue's exclusivity). This encoding is
// byte-exact and keeps Go types:
//
//   - a struct is its exported fields as (name, value) pairs, so a field
//     added later reads back from old records as its zero value, and a
//     record naming a field this version lacks is an error, never dropped;
//   - strings and byte slices are their bytes; nil and empty maps and
//     slices stay distinct;
//   - an interface value (argument tables) carries a type tag from a fixed
//     list (the AMQP field-table types and what JSON decoding yields); a
//     value of any other type is refused when persisting, not mangled.
//
// Records start with codecVersion; a record starting with '{' is the JSON
// of earlier versions and is still read.

const codecVersion = 0x01

// marshalBinary encodes v (a pointer to a struct) with a version byte.
func marshalBinary(v any) ([]byte, error) {
	e := encoder{b: []byte{codecVersion}}
	rv := reflect.ValueOf(v).Elem()
	e.value(rv, strings.ToLower(rv.Type().Name()))
	return e.b, e.err
}

// unmarshalBinary decodes marshalBinary's output into v (a pointer).
func unmarshalBinary(b []byte, v any) error {
	if len(b) == 0 || b[0] != codecVersion {
		return fmt.Errorf("metadata: unknown record format (first byte %#x)", firstByte(b))
	}
	d := decoder{b: b[1:]}
	d.value(reflect.ValueOf(v).Elem(), "")
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes left over", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("metadata: undecodable record: %w", d.err)
	}
	return nil
}

// joinPath names a field for error messages: "queue.Arguments".
func joinPath(path, field string) string {
	if path == "command" {
		return strings.ToLower(field)
	}
	return path + "." + field
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// EncodeCommand is the persisted, byte-exact encoding of a command.
func EncodeCommand(c Command) ([]byte, error) { return marshalBinary(&c) }

// DecodeCommand reads EncodeCommand's output, or the JSON of earlier
// versions.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if len(b) > 0 && b[0] == '{' {
		err := json.Unmarshal(b, &c)
		return c, err
	}
	err := unmarshalBinary(b, &c)
	return c, err
}

// Interface value tags. Never renumber: they are on disk.
const (
	tagNil = iota
	tagBool
	tagInt
	tagInt8
	tagUint8
	tagInt16
	tagUint16
	tagInt32
	tagUint32
	tagInt64
	tagUint64
	tagFloat32
	tagFloat64
	tagString
	tagBytes
	tagList    // []any
	tagMap     // map[string]any
	tagTable   // amqp.Table
	tagDecimal // amqp.Decimal
	tagTime    // time.Time
	tagStrings // []string
	tagUint
	tagNumber // json.Number
)

var tagTypes = map[int]reflect.Type{
	tagBool: reflect.TypeFor[bool](), tagInt: reflect.TypeFor[int](), tagInt8: reflect.TypeFor[int8](),
	tagUint8: reflect.TypeFor[uint8](), tagInt16: reflect.TypeFor[int16](), tagUint16: reflect.TypeFor[uint16](),
	tagInt32: reflect.TypeFor[int32](), tagUint32: reflect.TypeFor[uint32](), tagInt64: reflect.TypeFor[int64](),
	tagUint64: reflect.TypeFor[uint64](), tagFloat32: reflect.TypeFor[float32](), tagFloat64: reflect.TypeFor[float64](),
	tagString: reflect.TypeFor[string](), tagBytes: reflect.TypeFor[[]byte](), tagList: reflect.TypeFor[[]any](),
	tagMap: reflect.TypeFor[map[string]any](), tagTable: reflect.TypeFor[amqp.Table](), tagDecimal: reflect.TypeFor[amqp.Decimal](),
	tagTime: reflect.TypeFor[time.Time](), tagStrings: reflect.TypeFor[[]string](), tagUint: reflect.TypeFor[uint](),
	tagNumber: reflect.TypeFor[json.Number](),
}

var typeTags = func() map[reflect.Type]int {
	m := map[reflect.Type]int{}
	for tag, t := range tagTypes {
		m[t] = tag
	}
	return m
}()

var timeType = reflect.TypeFor[time.Time]()

// maxDepth bounds nesting on both sides.
const maxDepth = 64

type encoder struct {
	b     []byte
	err   error
	depth int
}

func (e *encoder) fail(path string, format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf("metadata: cannot persist %s: %s", path, fmt.Sprintf(format, args...))
	}
}

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

func (e *encoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// encodedField reports whether a struct field is written: exported, and
// not a zero value of a field tagged `codec:"omitzero"` (fields added
// later, so that records without them stay byte for byte what earlier
// versions wrote; decoding an absent field leaves it zero).
func encodedField(f reflect.StructField, v reflect.Value) bool {
	if !f.IsExported() {
		return false
	}
	return f.Tag.Get("codec") != "omitzero" || !v.IsZero()
}

func (e *encoder) value(v reflect.Value, path string) {
	if e.err != nil {
		return
	}
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > maxDepth {
		e.fail(path, "nested deeper than %d", maxDepth)
		return
	}
	if v.Type() == timeType {
		t := v.Interface().(time.Time)
		e.b = binary.AppendVarint(e.b, t.Unix())
		e.uvarint(uint64(t.Nanosecond()))
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			e.b = append(e.b, 1)
		} else {
			e.b = append(e.b, 0)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.b = binary.AppendVarint(e.b, v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		e.uvarint(v.Uint())
	case reflect.Float32, reflect.Float64:
		e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(v.Float()))
	case reflect.String:
		e.str(v.String())
	case reflect.Slice:
		if v.IsNil() {
			e.uvarint(0)
			return
		}
		e.uvarint(uint64(v.Len()) + 1)
		if v.Type().Elem().Kind() == reflect.Uint8 {
			e.b = append(e.b, v.Bytes()...)
			return
		}
		for i := 0; i < v.Len(); i++ {
			e.value(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			e.fail(path, "map key type %s", v.Type().Key())
			return
		}
		if v.IsNil() {
			e.uvarint(0)
			return
		}
		e.uvarint(uint64(v.Len()) + 1)
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			e.str(k.String())
			e.value(v.MapIndex(k), path+"."+k.String())
		}
	case reflect.Pointer:
		if v.IsNil() {
			e.b = append(e.b, 0)
			return
		}
		e.b = append(e.b, 1)
		e.value(v.Elem(), path)
	case reflect.Struct:
		t := v.Type()
		n := 0
		for i := 0; i < t.NumField(); i++ {
			if encodedField(t.Field(i), v.Field(i)) {
				n++
			}
		}
		e.uvarint(uint64(n))
		for i := 0; i < t.NumField(); i++ {
			if f := t.Field(i); encodedField(f, v.Field(i)) {
				e.str(f.Name)
				e.value(v.Field(i), joinPath(path, f.Name))
			}
		}
	case reflect.Interface:
		if v.IsNil() {
			e.b = append(e.b, tagNil)
			return
		}
		c := v.Elem()
		tag, ok := typeTags[c.Type()]
		if !ok {
			e.fail(path, "value of type %s (supported: AMQP field-table types and JSON values)", c.Type())
			return
		}
		e.b = append(e.b, byte(tag))
		e.value(c, path)
	default:
		e.fail(path, "field of kind %s", v.Kind())
	}
}

type decoder struct {
	b     []byte
	err   error
	depth int
}

var errShort = errors.New("record ends early")

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(errShort)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1() byte {
	b := d.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (d *decoder) str() string { return string(d.take(d.uvarint())) }

// count reads a nil-or-length prefix: -1 for nil. Every element takes at
// least one byte, which bounds hostile lengths.
func (d *decoder) count() int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n == 0 {
		return -1
	}
	if n-1 > uint64(len(d.b)) {
		d.fail(errShort)
		return 0
	}
	return int(n - 1)
}

func (d *decoder) value(v reflect.Value, path string) {
	if d.err != nil {
		return
	}
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		d.fail(fmt.Errorf("%s: nested deeper than %d", path, maxDepth))
		return
	}
	if v.Type() == timeType {
		sec := d.varint()
		nsec := d.uvarint()
		if nsec >= 1e9 {
			d.fail(fmt.Errorf("%s: bad time", path))
			return
		}
		v.Set(reflect.ValueOf(time.Unix(sec, int64(nsec))))
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(d.byte1() != 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		x := d.varint()
		if v.OverflowInt(x) {
			d.fail(fmt.Errorf("%s: %d overflows %s", path, x, v.Type()))
			return
		}
		v.SetInt(x)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		x := d.uvarint()
		if v.OverflowUint(x) {
			d.fail(fmt.Errorf("%s: %d overflows %s", path, x, v.Type()))
			return
		}
		v.SetUint(x)
	case reflect.Float32, reflect.Float64:
		b := d.take(8)
		if b != nil {
			v.SetFloat(math.Float64frombits(binary.LittleEndian.Uint64(b)))
		}
	case reflect.String:
		v.SetString(d.str())
	case reflect.Slice:
		n := d.count()
		if n < 0 || d.err != nil {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes(append([]byte{}, d.take(uint64(n))...))
			return
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := 0; i < n && d.err == nil; i++ {
			d.value(s.Index(i), path)
		}
		v.Set(s)
	case reflect.Map:
		n := d.count()
		if n < 0 || d.err != nil {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), n)
		for i := 0; i < n && d.err == nil; i++ {
			k := reflect.New(v.Type().Key()).Elem()
			k.SetString(d.str())
			e := reflect.New(v.Type().Elem()).Elem()
			d.value(e, path+"."+k.String())
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Pointer:
		if d.byte1() == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		p := reflect.New(v.Type().Elem())
		d.value(p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		n := d.uvarint()
		for i := uint64(0); i < n && d.err == nil; i++ {
			name := d.str()
			f, ok := v.Type().FieldByName(name)
			if d.err != nil {
				return
			}
			if !ok || !f.IsExported() || len(f.Index) != 1 {
				d.fail(fmt.Errorf("%s: field %q unknown to this version (written by a newer one?)", path, name))
				return
			}
			d.value(v.Field(f.Index[0]), path+"."+name)
		}
	case reflect.Interface:
		tag := int(d.byte1())
		if d.err != nil {
			return
		}
		if tag == tagNil {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		t, ok := tagTypes[tag]
		if !ok {
			d.fail(fmt.Errorf("%s: unknown value tag %d", path, tag))
			return
		}
		c := reflect.New(t).Elem()
		d.value(c, path)
		v.Set(c)
	default:
		d.fail(fmt.Errorf("%s: field of kind %s", path, v.Kind()))
	}
}
