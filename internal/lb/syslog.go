package lb

import (
	"fmt"
	"log/syslog"
	"net"
	"strings"
)

var facilities = map[string]syslog.Priority{
	"kern": syslog.LOG_KERN, "user": syslog.LOG_USER, "mail": syslog.LOG_MAIL, "daemon": syslog.LOG_DAEMON,
	"auth": syslog.LOG_AUTH, "syslog": syslog.LOG_SYSLOG, "lpr": syslog.LOG_LPR, "news": syslog.LOG_NEWS,
	"uucp": syslog.LOG_UUCP, "cron": syslog.LOG_CRON, "authpriv": syslog.LOG_AUTHPRIV, "ftp": syslog.LOG_FTP,
	"local0": syslog.LOG_LOCAL0, "local1": syslog.LOG_LOCAL1, "local2": syslog.LOG_LOCAL2, "local3": syslog.LOG_LOCAL3,
	"local4": syslog.LOG_LOCAL4, "local5": syslog.LOG_LOCAL5, "local6": syslog.LOG_LOCAL6, "local7": syslog.LOG_LOCAL7,
}

// Facility parses a syslog facility name.
func Facility(s string) (syslog.Priority, error) {
	f, ok := facilities[s]
	if !ok {
		return 0, fmt.Errorf("unknown syslog facility '%s' (local0..local7, daemon, user, ...)", s)
	}
	return f, nil
}

// dialSyslog opens the syslog target of a "log" line: an address (UDP,
// port 514 by default) or a unix socket path such as /dev/log.
func dialSyslog(target []string) (*syslog.Writer, error) {
	if len(target) < 2 {
		return nil, nil
	}
	fac, err := Facility(target[1])
	if err != nil {
		return nil, err
	}
	addr := target[0]
	if strings.HasPrefix(addr, "/") {
		return syslog.Dial("unixgram", addr, fac|syslog.LOG_INFO, "warren-proxy")
	}
	addr = strings.TrimPrefix(addr, "udp@")
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "514")
	}
	return syslog.Dial("udp", addr, fac|syslog.LOG_INFO, "warren-proxy")
}
