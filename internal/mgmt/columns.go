package mgmt

import (
	"bytes"
	"encoding/json"
	"strings"
)

// filterColumns applies RabbitMQ's ?columns=a,b.c to a response: each
// object (or each item of a list, or of a page's "items") keeps only the
// named keys; "b.c" keeps b with only its key c. A key the object does
// not have is left out; a parent that exists is kept even when none of
// its named children does (as RabbitMQ does: arguments.x on a queue
// without x gives "arguments": {}).
func filterColumns(body any, spec string) (any, error) {
	var cols [][]string
	for _, c := range strings.Split(spec, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cols = append(cols, strings.Split(c, "."))
		}
	}
	if len(cols) == 0 {
		return body, nil
	}
	// work on the JSON form, whatever Go type built the body
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case []any:
		return filterList(x, cols), nil
	case map[string]any:
		if items, ok := x["items"].([]any); ok && x["page"] != nil {
			x["items"] = filterList(items, cols)
			return x, nil
		}
		return filterObject(x, cols), nil
	}
	return v, nil
}

func filterList(items []any, cols [][]string) []any {
	out := make([]any, len(items))
	for i, it := range items {
		if m, ok := it.(map[string]any); ok {
			out[i] = filterObject(m, cols)
		} else {
			out[i] = it
		}
	}
	return out
}

func filterObject(m map[string]any, cols [][]string) map[string]any {
	out := map[string]any{}
	for _, path := range cols {
		keepPath(m, out, path)
	}
	return out
}

// keepPath copies path from src into dst.
func keepPath(src, dst map[string]any, path []string) {
	v, ok := src[path[0]]
	if !ok {
		return
	}
	if len(path) == 1 {
		dst[path[0]] = v
		return
	}
	sub, ok := v.(map[string]any)
	if !ok {
		return
	}
	d, ok := dst[path[0]].(map[string]any)
	if !ok {
		d = map[string]any{}
		dst[path[0]] = d
	}
	keepPath(sub, d, path[1:])
}
