package amqp

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// Error is an AMQP exception: a reply code, RabbitMQ-style text and the
// method that caused it. Hard() tells its scope: connection (hard) or
// channel (soft), from the spec's classes of reply codes.
type Error struct {
	Code     uint16
	Text     string
	ClassID  uint16
	MethodID uint16
}

func (e *Error) Error() string {
	return fmt.Sprintf("AMQP %d %s (class %d, method %d)", e.Code, e.Text, e.ClassID, e.MethodID)
}

// Hard reports whether the error closes the connection.
func (e *Error) Hard() bool { return IsHardError(e.Code) }

// Is makes errors.Is match another *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Text == ""
}

// ReplyName returns the spec's name for a reply code ("NOT_FOUND").
func ReplyName(code uint16) string {
	if n, ok := replyNames[code]; ok {
		return n
	}
	return fmt.Sprintf("REPLY_%d", code)
}

// NewError builds an *Error whose text starts with the reply name, as
// RabbitMQ writes it: "NOT_FOUND - no queue 'q' in vhost '/'".
func NewError(code uint16, classID, methodID uint16, format string, args ...any) *Error {
	text := ReplyName(code) + " - " + fmt.Sprintf(format, args...)
	if len(text) > 255 {
		// reply-text is a short string; cut at a character boundary so
		// the text stays valid UTF-8
		n := 255
		for n > 0 && !utf8.RuneStart(text[n]) {
			n--
		}
		text = text[:n]
	}
	return &Error{Code: code, Text: text, ClassID: classID, MethodID: methodID}
}

// FieldTypeName is RabbitMQ's name for the field-table type a decoded value
// came in as ("longstr", "signedint", ...), as its error texts print it.
func FieldTypeName(v any) string {
	switch v.(type) {
	case string:
		return "longstr"
	case []byte:
		return "binary"
	case bool:
		return "bool"
	case int8:
		return "byte"
	case uint8:
		return "unsignedbyte"
	case int16:
		return "short"
	case uint16:
		return "unsignedshort"
	case int32:
		return "signedint"
	case uint32:
		return "unsignedint"
	case int64, int:
		return "long"
	case float32:
		return "float"
	case float64:
		return "double"
	case Decimal:
		return "decimal"
	case time.Time:
		return "timestamp"
	case Table, map[string]any:
		return "table"
	case []any:
		return "array"
	case nil:
		return "void"
	}
	return fmt.Sprintf("%T", v)
}
