package amqp

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Properties are the basic class content properties (section 4.2.6.1 and
// the basic class in the spec).
type Properties struct {
	ContentType     string
	ContentEncoding string
	Headers         Table
	DeliveryMode    uint8
	Priority        uint8
	CorrelationID   string
	ReplyTo         string
	Expiration      string
	MessageID       string
	Timestamp       time.Time
	Type            string
	UserID          string
	AppID           string
	ClusterID       string
}

// Property flag bits, most significant first.
const (
	flagContentType     = 1 << 15
	flagContentEncoding = 1 << 14
	flagHeaders         = 1 << 13
	flagDeliveryMode    = 1 << 12
	flagPriority        = 1 << 11
	flagCorrelationID   = 1 << 10
	flagReplyTo         = 1 << 9
	flagExpiration      = 1 << 8
	flagMessageID       = 1 << 7
	flagTimestamp       = 1 << 6
	flagType            = 1 << 5
	flagUserID          = 1 << 4
	flagAppID           = 1 << 3
	flagClusterID       = 1 << 2
)

// readFlags reads the property flags words; bit 0 of each word says
// another word follows. Only the first word carries basic's properties.
func readFlags(r *reader) uint16 {
	first := r.short()
	f := first
	for i := 0; f&1 != 0 && r.err == nil; i++ {
		if i > 8 {
			r.err = fmt.Errorf("too many property flag words")
			return 0
		}
		f = r.short()
	}
	return first
}

// DecodeProperties decodes raw property flags and list.
func DecodeProperties(raw []byte) (Properties, error) {
	var p Properties
	r := reader{b: raw}
	f := readFlags(&r)
	if f&flagContentType != 0 {
		p.ContentType = r.shortstr()
	}
	if f&flagContentEncoding != 0 {
		p.ContentEncoding = r.shortstr()
	}
	if f&flagHeaders != 0 {
		p.Headers = r.table()
	}
	if f&flagDeliveryMode != 0 {
		p.DeliveryMode = r.octet()
	}
	if f&flagPriority != 0 {
		p.Priority = r.octet()
	}
	if f&flagCorrelationID != 0 {
		p.CorrelationID = r.shortstr()
	}
	if f&flagReplyTo != 0 {
		p.ReplyTo = r.shortstr()
	}
	if f&flagExpiration != 0 {
		p.Expiration = r.shortstr()
	}
	if f&flagMessageID != 0 {
		p.MessageID = r.shortstr()
	}
	if f&flagTimestamp != 0 {
		p.Timestamp = r.timestamp()
	}
	if f&flagType != 0 {
		p.Type = r.shortstr()
	}
	if f&flagUserID != 0 {
		p.UserID = r.shortstr()
	}
	if f&flagAppID != 0 {
		p.AppID = r.shortstr()
	}
	if f&flagClusterID != 0 {
		p.ClusterID = r.shortstr()
	}
	if r.err != nil {
		return p, NewError(SyntaxError, ClassBasic, 0, "malformed content properties: %v", r.err)
	}
	return p, nil
}

// Append encodes the properties (flags and list).
func (p *Properties) Append(buf []byte) ([]byte, error) {
	start := len(buf)
	buf = append(buf, 0, 0)
	w := writer{b: buf}
	var f uint16
	if p.ContentType != "" {
		f |= flagContentType
		w.shortstr(p.ContentType)
	}
	if p.ContentEncoding != "" {
		f |= flagContentEncoding
		w.shortstr(p.ContentEncoding)
	}
	if p.Headers != nil {
		f |= flagHeaders
		w.table(p.Headers)
	}
	if p.DeliveryMode != 0 {
		f |= flagDeliveryMode
		w.octet(p.DeliveryMode)
	}
	if p.Priority != 0 {
		f |= flagPriority
		w.octet(p.Priority)
	}
	if p.CorrelationID != "" {
		f |= flagCorrelationID
		w.shortstr(p.CorrelationID)
	}
	if p.ReplyTo != "" {
		f |= flagReplyTo
		w.shortstr(p.ReplyTo)
	}
	if p.Expiration != "" {
		f |= flagExpiration
		w.shortstr(p.Expiration)
	}
	if p.MessageID != "" {
		f |= flagMessageID
		w.shortstr(p.MessageID)
	}
	if !p.Timestamp.IsZero() {
		f |= flagTimestamp
		w.timestamp(p.Timestamp)
	}
	if p.Type != "" {
		f |= flagType
		w.shortstr(p.Type)
	}
	if p.UserID != "" {
		f |= flagUserID
		w.shortstr(p.UserID)
	}
	if p.AppID != "" {
		f |= flagAppID
		w.shortstr(p.AppID)
	}
	if p.ClusterID != "" {
		f |= flagClusterID
		w.shortstr(p.ClusterID)
	}
	binary.BigEndian.PutUint16(w.b[start:], f)
	return w.b, w.err
}

// PublishInfo is what the broker checks and uses of a published
// message's properties, read without decoding the rest.
type PublishInfo struct {
	DeliveryMode, Priority uint8
	Expiration             string
	HasHeaders             bool
	UserID                 string
}

// PeekDeliveryInfo reads the few properties the broker's hot path needs
// without decoding the rest (no allocation except for a non-empty
// expiration string).
func PeekDeliveryInfo(raw []byte) (deliveryMode, priority uint8, expiration string, hasHeaders bool, err error) {
	pi, err := PeekPublishInfo(raw)
	return pi.DeliveryMode, pi.Priority, pi.Expiration, pi.HasHeaders, err
}

// PeekPublishInfo checks the property list (a malformed headers table is
// an error, as it would be when a consumer decodes it) and returns the
// properties the broker needs. It allocates only for a non-empty
// expiration or user id.
func PeekPublishInfo(raw []byte) (PublishInfo, error) {
	var pi PublishInfo
	r := reader{b: raw}
	f := readFlags(&r)
	skipShort := func() { r.bytes(int(r.octet())) }
	if f&flagContentType != 0 {
		skipShort()
	}
	if f&flagContentEncoding != 0 {
		skipShort()
	}
	if f&flagHeaders != 0 {
		pi.HasHeaders = true
		if r.err == nil {
			n, err := checkTable(r.b, 0)
			if err != nil {
				return PublishInfo{}, NewError(SyntaxError, ClassBasic, 0, "malformed field table in the headers property: %v", err)
			}
			r.b = r.b[n:]
		}
	}
	if f&flagDeliveryMode != 0 {
		pi.DeliveryMode = r.octet()
	}
	if f&flagPriority != 0 {
		pi.Priority = r.octet()
	}
	if f&flagCorrelationID != 0 {
		skipShort()
	}
	if f&flagReplyTo != 0 {
		skipShort()
	}
	if f&flagExpiration != 0 {
		pi.Expiration = r.shortstr()
	}
	if f&flagUserID != 0 {
		if f&flagMessageID != 0 {
			skipShort()
		}
		if f&flagTimestamp != 0 {
			r.bytes(8)
		}
		if f&flagType != 0 {
			skipShort()
		}
		pi.UserID = r.shortstr()
	}
	if r.err != nil {
		return PublishInfo{}, NewError(SyntaxError, ClassBasic, 0, "malformed content properties: %v", r.err)
	}
	return pi, nil
}
