package mgmt

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/warrenmq/warren/internal/amqp"
	"github.com/warrenmq/warren/internal/metadata"
	"github.com/warrenmq/warren/internal/vhost"
)

// What several resources' handlers share: errors from the layers below
// as HTTP answers, names and JSON values as AMQP takes them, lists with
// RabbitMQ's pagination.

// amqpToHTTP maps an AMQP error from the vhost layer to an HTTP status.
func amqpToHTTP(err error) error {
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		return err
	}
	status := 400
	switch ae.Code {
	case amqp.NotFound:
		status = 404
	case amqp.AccessRefused:
		status = 401
	case amqp.PreconditionFailed, amqp.ResourceLocked, amqp.CommandInvalid:
		status = 400
	}
	return errStatus(status, "%s", reasonText(ae.Text))
}

// reasonText drops the reply-code name an AMQP reply text starts with
// ("RESOURCE_LOCKED - cannot ..."), as RabbitMQ's HTTP API does.
func reasonText(t string) string {
	name, rest, ok := strings.Cut(t, " - ")
	if !ok || name == "" || strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != "" {
		return t
	}
	return rest
}

func (s *Server) propose(cmds ...metadata.Command) error {
	for _, c := range cmds {
		if err := s.b.Metadata().Propose(c); err != nil {
			if errors.Is(err, metadata.ErrNotFound) {
				return errStatus(404, "%v", err)
			}
			return errStatus(400, "%v", err)
		}
	}
	return nil
}

// httpOwner is the connection id HTTP requests act as: none. An exclusive
// queue belongs to its AMQP connection, so the HTTP API gets 405
// RESOURCE_LOCKED on it like any other connection (RabbitMQ answers 400
// with that reason).
const httpOwner uint64 = 0

// checkName refuses what AMQP cannot carry: a short string is at most 255
// bytes (RabbitMQ answers 400 with this text for queue names; Warren also
// for exchange and vhost names and routing keys, which would otherwise
// break the AMQP stream when delivered), and names must be valid UTF-8
// (the definitions log and JSON would change them).
func checkName(kind, name string) error {
	if len(name) > 255 {
		return errStatus(400, "%s should be less than 255 bytes, actually was %d", kind, len(name))
	}
	if !utf8.ValidString(name) {
		return errStatus(400, "%s is not valid UTF-8", kind)
	}
	return nil
}

// jsonArgs turns JSON numbers into AMQP-typed integers where whole.
func jsonArgs(a map[string]any) amqp.Table {
	if a == nil {
		return nil
	}
	t := amqp.Table{}
	for k, v := range a {
		if f, ok := v.(float64); ok && f == float64(int64(f)) {
			t[k] = int64(f)
			continue
		}
		t[k] = v
	}
	return t
}

func v2int(v any) (int64, bool) {
	switch x := v.(type) {
	case float64: // whole and within int64 (conversion out of range is undefined)
		if x != math.Trunc(x) || x < -(1<<63) || x >= 1<<63 {
			return 0, false
		}
		return int64(x), true
	case int:
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

// page applies RabbitMQ's pagination and filtering (page, page_size, name,
// use_regex) and returns either the list or a page object.
func page(r *http.Request, items []map[string]any) (any, error) {
	q := r.URL.Query()
	if name := q.Get("name"); name != "" {
		var re *regexp.Regexp
		if q.Get("use_regex") == "true" {
			var err error
			if re, err = regexp.Compile(name); err != nil {
				return nil, errStatus(400, "invalid regex %q", name)
			}
		}
		kept := items[:0]
		for _, it := range items {
			n, _ := it["name"].(string)
			if (re != nil && re.MatchString(n)) || (re == nil && strings.Contains(n, name)) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	if q.Get("page") == "" {
		return items, nil
	}
	// RabbitMQ's rabbit_mgmt_util pagination checks and answers.
	pg, err1 := strconv.ParseInt(q.Get("page"), 10, 64)
	size, sizeStr := int64(100), "undefined"
	if ps := q.Get("page_size"); ps != "" {
		var err error
		if size, err = strconv.ParseInt(ps, 10, 64); err != nil {
			return nil, &apiError{status: 400, reason: "Pagination parameters are invalid"}
		}
		sizeStr = ps
	}
	if err1 != nil {
		return nil, &apiError{status: 400, reason: "Pagination parameters are invalid"}
	}
	if pg < 1 || size < 1 || size > 500 {
		return nil, &apiError{status: 400, code: "invalid_pagination_parameters", reason: fmt.Sprintf("Invalid pagination parameters: page number %d, page size %s", pg, sizeStr)}
	}
	total := len(items)
	if pg > 1 && (pg-1) >= (int64(total)+size-1)/size {
		return nil, &apiError{status: 400, code: "page_out_of_range", reason: fmt.Sprintf("Page out of range, page: %d page size: %d, len: %d", pg, size, total)}
	}
	start := int((pg - 1) * size) // < total here, so no overflow
	end := min(start+int(size), total)
	return map[string]any{"items": items[start:end], "page": pg, "page_size": size, "page_count": (int64(total) + size - 1) / size,
		"filtered_count": total, "item_count": end - start, "total_count": total}, nil
}

// pathVHost is the vhost a list is narrowed to (listPerVHost's only):
// none for GET /api/<kind>, the one in the path for GET
// /api/<kind>/{vhost}.
func pathVHost(r *http.Request) []string {
	if strings.HasSuffix(r.Pattern, "/{vhost}") {
		return []string{r.PathValue("vhost")}
	}
	return nil
}

// listPerVHost lists objects of every vhost the user may see (or of the
// one vhost in only, see pathVHost), sorted by vhost and name, with
// pagination and filtering.
func (s *Server) listPerVHost(u user, r *http.Request, only []string, list func(string, *vhost.VHost) []map[string]any) (int, any, error) {
	if len(only) == 1 {
		if err := s.requireVHost(u, only[0]); err != nil {
			return 0, nil, err
		}
	}
	items := []map[string]any{}
	for _, vn := range s.b.VHostNames() {
		if (len(only) == 1 && vn != only[0]) || !s.canAccessVHost(u, vn) {
			continue
		}
		if v := s.b.VHost(vn); v != nil {
			items = append(items, list(vn, v)...)
		}
	}
	sort.Slice(items, func(i, j int) bool {
		return items[i]["vhost"].(string)+"\x00"+items[i]["name"].(string) < items[j]["vhost"].(string)+"\x00"+items[j]["name"].(string)
	})
	out, err := page(r, items)
	return 200, out, err
}

func propsJSON(p amqp.Properties) map[string]any {
	m := map[string]any{}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set("content_type", p.ContentType)
	set("content_encoding", p.ContentEncoding)
	set("correlation_id", p.CorrelationID)
	set("reply_to", p.ReplyTo)
	set("expiration", p.Expiration)
	set("message_id", p.MessageID)
	set("type", p.Type)
	set("user_id", p.UserID)
	set("app_id", p.AppID)
	if p.DeliveryMode != 0 {
		m["delivery_mode"] = p.DeliveryMode
	}
	if p.Priority != 0 {
		m["priority"] = p.Priority
	}
	if !p.Timestamp.IsZero() {
		m["timestamp"] = p.Timestamp.Unix()
	}
	if p.Headers != nil {
		m["headers"] = jsonable(p.Headers)
	}
	return m
}

func jsonable(v any) any {
	switch x := v.(type) {
	case amqp.Table:
		o := map[string]any{}
		for k, e := range x {
			o[k] = jsonable(e)
		}
		return o
	case []any:
		o := make([]any, len(x))
		for i := range x {
			o[i] = jsonable(x[i])
		}
		return o
	case []byte:
		return string(x)
	case time.Time:
		return x.Unix()
	case amqp.Decimal:
		return fmt.Sprintf("%d/10^%d", x.Value, x.Scale)
	}
	return v
}

func propsFromJSON(m map[string]any) amqp.Properties {
	var p amqp.Properties
	str := func(k string) string { s, _ := m[k].(string); return s }
	p.ContentType, p.ContentEncoding = str("content_type"), str("content_encoding")
	p.CorrelationID, p.ReplyTo, p.Expiration = str("correlation_id"), str("reply_to"), str("expiration")
	p.MessageID, p.Type, p.UserID, p.AppID = str("message_id"), str("type"), str("user_id"), str("app_id")
	if n, ok := v2int(m["delivery_mode"]); ok {
		p.DeliveryMode = uint8(n)
	}
	if n, ok := v2int(m["priority"]); ok {
		p.Priority = uint8(n)
	}
	if n, ok := v2int(m["timestamp"]); ok {
		p.Timestamp = time.Unix(n, 0)
	}
	if h, ok := m["headers"].(map[string]any); ok {
		p.Headers = jsonArgs(h)
	}
	return p
}

func splitHostPort(a string) (string, int) {
	i := strings.LastIndex(a, ":")
	if i < 0 {
		return a, 0
	}
	p, _ := strconv.Atoi(a[i+1:])
	return strings.Trim(a[:i], "[]"), p
}

func nonNil(x []any) []any {
	if x == nil {
		return []any{}
	}
	return x
}

func nonNilStrings(x []string) []string {
	if x == nil {
		return []string{}
	}
	return x
}

func contains(xs []string, x string) bool {
	for _, e := range xs {
		if e == x {
			return true
		}
	}
	return false
}
