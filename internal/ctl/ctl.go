// Package ctl implements warrenctl, the operator CLI with rabbitmqctl's
// verbs, flags, output and exit codes. It talks to a node's control
// listener (127.0.0.1:25673 by default, --port), which serves the
// management API's paths plus the node-level verbs, authenticated by the
// node's cookie (the same file the node created on first start) through a
// challenge-response: the cookie itself never travels (auth.ControlMAC).
// The classic guide's commands work as written:
//
//	warrenctl add_user prim 123456
//	warrenctl set_user_tags prim administrator
//	warrenctl set_permissions -p "/" prim ".*" ".*" ".*"
//	warrenctl set_policy xall "^" '{"ha-mode":"all"}'
package ctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warrenmq/warren/internal/auth"
)

// Exit codes, as rabbitmqctl uses them (sysexits).
const (
	ExitOK          = 0
	ExitUsage       = 64
	ExitDataErr     = 65
	ExitNoUser      = 67
	ExitUnavailable = 69
	ExitSoftware    = 70
	ExitTempFail    = 75
)

// ExitError carries an exit code.
type ExitError struct {
	Code int
	Msg  string
	// Bare: the message is printed without rabbitmqctl's "Error:" line
	// (as rabbitmqctl prints "Virtual host 'x' does not exist").
	Bare bool
}

func (e *ExitError) Error() string { return e.Msg }

type opts struct {
	node      string
	vhost     string
	quiet     bool
	silent    bool
	emptyLine bool // the verb prints an empty line for an empty list
	formatter string
	cookie    string
	port      int
	host      string
	timeout   time.Duration
	noHeaders bool
	out       io.Writer
}

// client talks to the node's management API with the cookie.
type client struct {
	o      *opts
	base   string
	cookie string
	http   *http.Client
}

func (o *opts) client() (*client, error) {
	host := o.host
	if host == "" {
		host = "localhost"
		if i := strings.IndexByte(o.node, '@'); i >= 0 && i+1 < len(o.node) {
			host = o.node[i+1:]
		}
	}
	path := o.cookie
	if path == "" {
		path = os.Getenv("WARREN_COOKIE_FILE")
	}
	if path == "" {
		if h, err := os.UserHomeDir(); err == nil {
			path = filepath.Join(h, ".warren.cookie")
		}
	}
	cookie, err := auth.ReadCookieFile(path)
	if err != nil {
		return nil, &ExitError{Code: ExitUnavailable, Msg: fmt.Sprintf("cannot read the cookie file %s: %v\nwarrenctl authenticates with the node's cookie: run it as the user that started the node, or pass --cookie-file", path, err)}
	}
	return &client{o: o, base: fmt.Sprintf("http://%s/api", netJoin(host, o.port)), cookie: cookie, http: &http.Client{Timeout: o.timeout}}, nil
}

func netJoin(host string, port int) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}

// call performs method on path (segments are escaped) with an optional
// JSON body, decoding a JSON answer into out.
func (c *client) call(method string, segs []string, body any, out any) error {
	var esc []string
	for _, s := range segs {
		esc = append(esc, url.PathEscape(s))
	}
	u := c.base + "/" + strings.Join(esc, "/")
	var payload []byte
	if body != nil {
		payload, _ = json.Marshal(body)
	}
	unreachable := func(err error) error {
		return &ExitError{Code: ExitUnavailable, Msg: fmt.Sprintf("unable to perform an operation on node '%s'. Please see diagnostics information and suggestions below.\n\n * target node is not reachable at %s: %v\n * check that the node is running (warren-server) and that --node/--port name its control endpoint (control.tcp.port, 25673 by default)", c.o.node, c.base, err)}
	}
	nonce, err := c.challenge()
	if err != nil {
		return unreachable(err)
	}
	req, err := http.NewRequest(method, u, bytes.NewReader(payload))
	if err != nil {
		return &ExitError{Code: ExitUsage, Msg: err.Error()}
	}
	req.Header.Set("Authorization", fmt.Sprintf("%s nonce=%s,mac=%s", auth.ControlAuthScheme, nonce, auth.ControlMAC(c.cookie, nonce, method, req.URL.RequestURI(), payload)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return unreachable(err)
	}
	if resp.StatusCode != 401 && !auth.EqualMAC(resp.Header.Get(nodeProofHeader), auth.NodeProof(c.cookie, nonce)) {
		resp.Body.Close()
		return &ExitError{Code: ExitUnavailable, Msg: fmt.Sprintf("unable to perform an operation on node '%s': the endpoint at %s did not prove it knows the node's cookie (is --port the node's control port?)", c.o.node, c.base)}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 401 && strings.Contains(string(raw), "cookie") {
		return &ExitError{Code: ExitUnavailable, Msg: fmt.Sprintf("unable to perform an operation on node '%s': authentication failed (rejected by the remote node): the cookies differ. Check that warrenctl reads the node's cookie file (--cookie-file)", c.o.node)}
	}
	if resp.StatusCode >= 300 {
		var e struct{ Reason string }
		_ = json.Unmarshal(raw, &e)
		if e.Reason == "" {
			e.Reason = strings.TrimSpace(string(raw))
		}
		code := ExitSoftware
		if resp.StatusCode == 404 || resp.StatusCode == 400 {
			code = ExitDataErr
		}
		return &ExitError{Code: code, Msg: e.Reason}
	}
	if out != nil && len(raw) > 0 {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// nodeProofHeader is mgmt.NodeProofHeader (not imported, to keep
// warrenctl free of the broker).
const nodeProofHeader = "X-Warren-Node-Proof"

// challenge fetches a single-use nonce from the control listener.
func (c *client) challenge() (string, error) {
	resp, err := c.http.Get(strings.TrimSuffix(c.base, "/api") + "/control/challenge")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var ch struct {
		Nonce string `json:"nonce"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&ch); err != nil || resp.StatusCode != 200 || ch.Nonce == "" {
		return "", fmt.Errorf("no control challenge from %s (status %d): is --port the node's control port?", c.base, resp.StatusCode)
	}
	return ch.Nonce, nil
}

// info prints an informational line ("Listing queues ..."), as
// rabbitmqctl does unless -q/--quiet, -s/--silent or --formatter json.
func (o *opts) info(format string, a ...any) {
	if !o.quiet && !o.silent && o.formatter != "json" {
		fmt.Fprintf(o.out, format+"\n", a...)
	}
}

// table prints items as rabbitmqctl does: tab separated with a header
// row (left out with -s/--silent or --no-table-headers) or, with
// --formatter json, as rabbitmqctl's JSON (see format.go).
func (o *opts) table(cols []string, items []map[string]any) error {
	if o.formatter == "json" {
		var b bytes.Buffer
		writeJSONRows(&b, cols, items)
		_, err := o.out.Write(b.Bytes())
		return err
	}
	if len(items) == 0 {
		// rabbitmqctl prints no header for an empty list (list_policies
		// and list_permissions print an empty line: emptyLine)
		if o.emptyLine {
			fmt.Fprintln(o.out)
		}
		return nil
	}
	if !o.noHeaders && !o.silent {
		fmt.Fprintln(o.out, strings.Join(cols, "\t"))
	}
	for _, it := range items {
		r := make([]string, len(cols))
		for i, c := range cols {
			r[i] = cell(c, it[c])
		}
		fmt.Fprintln(o.out, strings.Join(r, "\t"))
	}
	return nil
}

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		if x == float64(int64(x)) {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		var p []string
		for _, e := range x {
			p = append(p, str(e))
		}
		return "[" + strings.Join(p, ", ") + "]"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// NewCommand builds the warrenctl command tree writing to out.
func NewCommand(out io.Writer) *cobra.Command {
	host, _ := os.Hostname()
	if i := strings.IndexByte(host, '.'); i > 0 {
		host = host[:i]
	}
	o := &opts{out: out}
	root := &cobra.Command{
		Use:           "warrenctl",
		Short:         "Manage a Warren node (rabbitmqctl's verbs and flags)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defNode := os.Getenv("WARREN_NODENAME")
	if defNode == "" {
		defNode = "warren@" + host
	}
	defPort := 25673
	if p, err := strconv.Atoi(os.Getenv("WARREN_CONTROL_PORT")); err == nil {
		defPort = p
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&o.node, "node", "n", defNode, "node name (warren@HOST); its control endpoint is HOST:--port")
	pf.StringVarP(&o.vhost, "vhost", "p", "/", "virtual host")
	pf.BoolVarP(&o.quiet, "quiet", "q", false, "suppress informational messages")
	pf.BoolVarP(&o.silent, "silent", "s", false, "suppress informational messages and table headers: print rows only")
	pf.BoolVar(&o.noHeaders, "no-table-headers", false, "do not print table headers")
	pf.StringVar(&o.formatter, "formatter", "table", "output format: table or json")
	pf.StringVar(&o.cookie, "cookie-file", "", "the node's cookie file (default $WARREN_COOKIE_FILE or $HOME/.warren.cookie)")
	pf.IntVar(&o.port, "port", defPort, "the node's control port, control.tcp.port (env WARREN_CONTROL_PORT)")
	pf.StringVar(&o.host, "host", "", "control host (default: the host part of --node)")
	pf.DurationVarP(&o.timeout, "timeout", "t", 60*time.Second, "operation timeout")
	for _, c := range commands(o) {
		root.AddCommand(c)
	}
	return root
}

// Main runs warrenctl and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	cmd := NewCommand(stdout)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.Execute()
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Bare {
			fmt.Fprintln(stderr, ee.Msg)
		} else {
			fmt.Fprintf(stderr, "Error:\n%s\n", ee.Msg)
		}
		return ee.Code
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	if strings.Contains(err.Error(), "unknown command") || strings.Contains(err.Error(), "arg(s)") || strings.Contains(err.Error(), "flag") {
		return ExitUsage
	}
	return ExitSoftware
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}
