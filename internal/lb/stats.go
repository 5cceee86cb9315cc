package lb

import (
	"crypto/subtle"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Row is one line of the stats: a frontend, a server or a backend, with
// HAProxy's CSV column names.
type Row struct {
	PxName, SvName                     string
	Qcur, Qmax, Scur, Smax, Slim, Stot int64
	Bin, Bout                          uint64
	Econ                               uint64
	Status                             string
	Weight                             int
	Act, Bck                           int
	Chkfail                            uint64
	Lastchg                            int64 // seconds since the last state change
	Downtime                           int64 // seconds
	CheckStatus                        string
	CheckDuration                      int64 // ms
	Type                               int   // 0 frontend, 1 backend, 2 server
}

// csvHeader is HAProxy's show-stat header (the columns Warren fills first).
var csvHeader = []string{"pxname", "svname", "qcur", "qmax", "scur", "smax", "slim", "stot", "bin", "bout", "dreq", "dresp", "ereq", "econ", "eresp", "wretr", "wredis", "status", "weight", "act", "bck", "chkfail", "chkdown", "lastchg", "downtime", "qlimit", "pid", "iid", "sid", "throttle", "lbtot", "tracked", "type", "rate", "rate_lim", "rate_max", "check_status", "check_code", "check_duration"}

// Rows snapshots every frontend, server and backend.
func (rt *Runtime) Rows() []Row {
	rt.mu.Lock()
	fes, bes := rt.frontends, rt.order
	rt.mu.Unlock()
	var rows []Row
	for _, fe := range fes {
		rows = append(rows, Row{PxName: fe.cfg.Name, SvName: "FRONTEND", Scur: fe.cur.Load(), Smax: fe.max.Load(), Slim: int64(fe.cfg.Maxconn),
			Stot: int64(fe.total.Load()), Bin: fe.bin.Load(), Bout: fe.bout.Load(), Status: "OPEN", Type: 0})
	}
	for _, b := range bes {
		var br Row
		br.PxName, br.SvName, br.Type = b.cfg.Name, "BACKEND", 1
		for _, s := range b.servers {
			s.mu.Lock()
			since := int64(time.Since(s.lastChange).Seconds())
			down := s.downtime
			if !s.downSince.IsZero() {
				down += time.Since(s.downSince)
			}
			r := Row{PxName: b.cfg.Name, SvName: s.cfg.Name, Scur: s.cur.Load(), Smax: s.max.Load(), Slim: int64(s.cfg.Maxconn),
				Stot: int64(s.total.Load()), Bin: s.bin.Load(), Bout: s.bout.Load(), Econ: s.connFail.Load(), Weight: s.weight(),
				Chkfail: s.chkfail, Lastchg: since, Downtime: int64(down.Seconds()), CheckStatus: s.checkStatus, CheckDuration: s.checkDur.Milliseconds(), Type: 2}
			s.mu.Unlock()
			r.Status = s.statusText()
			if s.cfg.Backup {
				r.Bck = 1
			} else {
				r.Act = 1
			}
			if s.up.Load() {
				if s.cfg.Backup {
					br.Bck++
				} else {
					br.Act++
				}
				br.Weight += s.weight()
			}
			br.Scur += r.Scur
			br.Smax = max(br.Smax, r.Smax)
			br.Stot += r.Stot
			br.Bin += r.Bin
			br.Bout += r.Bout
			br.Econ += r.Econ
			rows = append(rows, r)
		}
		br.Status = "UP"
		if br.Act+br.Bck == 0 {
			br.Status = "DOWN"
		}
		rows = append(rows, br)
	}
	return rows
}

func (r Row) csv() []string {
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	empty := func(cond bool, s string) string {
		if cond {
			return ""
		}
		return s
	}
	srv := r.Type == 2
	return []string{r.PxName, r.SvName, i(r.Qcur), i(r.Qmax), i(r.Scur), i(r.Smax), empty(r.Slim == 0, i(r.Slim)), i(r.Stot), u(r.Bin), u(r.Bout),
		"", "", "", empty(r.Type == 0, u(r.Econ)), "", "0", "0", r.Status, empty(r.Type == 0, strconv.Itoa(r.Weight)),
		empty(r.Type == 0, strconv.Itoa(r.Act)), empty(r.Type == 0, strconv.Itoa(r.Bck)), empty(!srv, u(r.Chkfail)), "", empty(!srv, i(r.Lastchg)),
		empty(!srv, i(r.Downtime)), "", "1", "1", "0", "", "", "", strconv.Itoa(r.Type), "", "", "", empty(!srv, r.CheckStatus), "", empty(!srv, i(r.CheckDuration))}
}

func (rt *Runtime) statsHandler(px *Proxy) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(statsCollector{rt})
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	uri := px.Stats.URI
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(px.Stats.Auth) > 0 && !authorised(px.Stats.Auth, r) {
			realm := px.Stats.Realm
			if realm == "" {
				realm = "HAProxy Statistics"
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", realm))
			http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
			return
		}
		path := r.URL.Path
		if r.URL.RawQuery != "" {
			path += "?" + r.URL.RawQuery
		}
		switch {
		case r.URL.Path == "/metrics":
			metrics.ServeHTTP(w, r)
		case path == uri+";csv" || strings.HasPrefix(path, uri+";csv;"):
			w.Header().Set("Content-Type", "text/plain")
			cw := csv.NewWriter(w)
			h := append([]string(nil), csvHeader...)
			h[0] = "# " + h[0]
			cw.Write(h)
			for _, row := range rt.Rows() {
				cw.Write(row.csv())
			}
			cw.Flush()
		case path == uri+";json":
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(rt.Rows())
		case path == uri || path == uri+"/" || strings.TrimSuffix(r.URL.Path, "/") == strings.TrimSuffix(uri, "/"):
			rt.statsHTML(w, px)
		default:
			http.NotFound(w, r)
		}
	})
}

func authorised(creds []string, r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if !ok {
		return false
	}
	for _, c := range creds {
		if subtle.ConstantTimeCompare([]byte(c), []byte(u+":"+p)) == 1 {
			return true
		}
	}
	return false
}

func (rt *Runtime) statsHTML(w http.ResponseWriter, px *Proxy) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if px.Stats.Refresh > 0 {
		w.Header().Set("Refresh", strconv.Itoa(int(px.Stats.Refresh.Seconds())))
	}
	version := "warren-proxy"
	if px.Stats.HideVersion {
		version = ""
	}
	fmt.Fprintf(w, "<!doctype html><html><head><title>Statistics Report</title><style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:16px}td,th{border:1px solid #999;padding:2px 6px;font-size:85%%}.UP{background:#c0ffc0}.DOWN{background:#ffa0a0}.going{background:#ffffa0}.MAINT{background:#c0c0ff}</style></head><body><h1>Statistics Report %s</h1><p>uptime %s</p>", html.EscapeString(version), time.Since(rt.started).Round(time.Second))
	cur := ""
	for _, r := range rt.Rows() {
		if r.PxName != cur {
			if cur != "" {
				fmt.Fprint(w, "</table>")
			}
			cur = r.PxName
			fmt.Fprintf(w, "<h2>%s</h2><table><tr><th></th><th>Status</th><th>Cur</th><th>Max</th><th>Limit</th><th>Total</th><th>Bytes in</th><th>Bytes out</th><th>Conn err</th><th>Wght</th><th>Act</th><th>Bck</th><th>Chk fail</th><th>Downtime</th><th>Last check</th><th>LastChg</th></tr>", html.EscapeString(r.PxName))
		}
		cls := strings.Fields(r.Status + " x")[0]
		if strings.Contains(r.Status, "/") {
			cls = "going"
		}
		check := ""
		if r.Type == 2 {
			check = fmt.Sprintf("%s in %dms", r.CheckStatus, r.CheckDuration)
		}
		fmt.Fprintf(w, "<tr class=%q><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%ds</td><td>%s</td><td>%ds</td></tr>",
			cls, html.EscapeString(r.SvName), html.EscapeString(r.Status), r.Scur, r.Smax, r.Slim, r.Stot, r.Bin, r.Bout, r.Econ, r.Weight, r.Act, r.Bck, r.Chkfail, r.Downtime, html.EscapeString(check), r.Lastchg)
	}
	fmt.Fprint(w, "</table></body></html>")
}

type statsCollector struct{ rt *Runtime }

var (
	pUp    = prometheus.NewDesc("haproxy_server_status", "Current status of the server (1 up, 0 down)", []string{"proxy", "server"}, nil)
	pCur   = prometheus.NewDesc("haproxy_server_current_sessions", "Current sessions", []string{"proxy", "server"}, nil)
	pTot   = prometheus.NewDesc("haproxy_server_sessions_total", "Total sessions", []string{"proxy", "server"}, nil)
	pIn    = prometheus.NewDesc("haproxy_server_bytes_in_total", "Bytes in", []string{"proxy", "server"}, nil)
	pOut   = prometheus.NewDesc("haproxy_server_bytes_out_total", "Bytes out", []string{"proxy", "server"}, nil)
	pFail  = prometheus.NewDesc("haproxy_server_check_failures_total", "Failed health checks", []string{"proxy", "server"}, nil)
	pFeCur = prometheus.NewDesc("haproxy_frontend_current_sessions", "Current sessions", []string{"proxy"}, nil)
)

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pUp, pCur, pTot, pIn, pOut, pFail, pFeCur} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.rt.Rows() {
		switch r.Type {
		case 0:
			ch <- prometheus.MustNewConstMetric(pFeCur, prometheus.GaugeValue, float64(r.Scur), r.PxName)
		case 2:
			up := 0.0
			if strings.HasPrefix(r.Status, "UP") || r.Status == "no check" {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(pUp, prometheus.GaugeValue, up, r.PxName, r.SvName)
			ch <- prometheus.MustNewConstMetric(pCur, prometheus.GaugeValue, float64(r.Scur), r.PxName, r.SvName)
			ch <- prometheus.MustNewConstMetric(pTot, prometheus.CounterValue, float64(r.Stot), r.PxName, r.SvName)
			ch <- prometheus.MustNewConstMetric(pIn, prometheus.CounterValue, float64(r.Bin), r.PxName, r.SvName)
			ch <- prometheus.MustNewConstMetric(pOut, prometheus.CounterValue, float64(r.Bout), r.PxName, r.SvName)
			ch <- prometheus.MustNewConstMetric(pFail, prometheus.CounterValue, float64(r.Chkfail), r.PxName, r.SvName)
		}
	}
}
