package lb

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"
)

// Health follows HAProxy: a checked server starts UP with health =
// rise+fall-1. While UP, each failure decrements health and the fall-th
// consecutive failure marks it DOWN (health 0); while DOWN, each success
// increments health and the rise-th consecutive success marks it UP
// (health rise+fall-1). A success while UP, or a failure while DOWN,
// resets the counter to its extreme.

// result applies one check outcome (status is HAProxy's check status
// code, L4OK, L4CON, L7OK...; info says more for the log).
func (s *server) result(ok bool, status, info string, dur time.Duration) {
	s.mu.Lock()
	s.checkStatus, s.checkDur = status, dur
	rise, fall := s.cfg.Rise, s.cfg.Fall
	full := rise + fall - 1
	wasUp := s.up.Load()
	if ok {
		if wasUp {
			s.health = full
		} else {
			s.health++
			if s.health >= rise {
				s.health = full
				s.setUp(true)
			}
		}
	} else {
		s.chkfail++
		if wasUp {
			if s.health > rise {
				s.health--
			} else {
				s.health = 0
				s.setUp(false)
			}
		} else {
			s.health = 0
		}
	}
	up := s.up.Load()
	s.mu.Unlock()
	if wasUp != up {
		s.logChange(up, reason(status, info), dur)
	}
}

// logChange logs a state change in HAProxy's words and applies the
// on-marked-up / on-marked-down actions.
func (s *server) logChange(up bool, why string, dur time.Duration) {
	state := "DOWN"
	if up {
		state = "UP"
	}
	msg := fmt.Sprintf("Server %s/%s is %s, reason: %s", s.b.cfg.Name, s.cfg.Name, state, why)
	if dur > 0 {
		msg += fmt.Sprintf(", check duration: %dms", dur.Milliseconds())
	}
	s.b.log.Warn(msg)
	if up {
		if s.cfg.ShutdownBackupOnUp && !s.cfg.Backup {
			for _, o := range s.b.servers {
				if o.cfg.Backup {
					o.shutdownSessions()
				}
			}
		}
	} else if s.cfg.ShutdownSessionsOnDown {
		s.shutdownSessions()
	}
}

// reason renders a check status as HAProxy's logs do.
func reason(status, info string) string {
	text := map[string]string{
		"L4OK":   "Layer4 check passed",
		"L4CON":  "Layer4 connection problem",
		"L4TOUT": "Layer4 timeout",
		"L7OK":   "Layer7 check passed",
		"L7RSP":  "Layer7 invalid response",
		"L7TOUT": "Layer7 timeout",
	}[status]
	if text == "" {
		text = status
	}
	if info != "" {
		text += fmt.Sprintf(", info: %q", info)
	}
	return text
}

func (s *server) setUp(up bool) {
	now := time.Now()
	if !up {
		s.downSince = now
	} else if !s.downSince.IsZero() {
		s.downtime += now.Sub(s.downSince)
		s.downSince = time.Time{}
	}
	s.lastChange = now
	s.up.Store(up)
}

// Passive health (HAProxy's "observe layer4"): connection errors on live
// traffic count. After error-limit consecutive errors, on-error decides:
// fastinter (check again at once), fail-check (count a failed check, the
// default), sudden-death (leave one check before DOWN) or mark-down (DOWN
// now). Any of them also checks again at once. A successful connect resets
// the count.
//
// HAProxy observes only servers that say "observe layer4". Warren, by
// default, also observes every checked server that does not say
// otherwise, with error-limit 1 and on-error fail-check: a dead node is
// noticed by the first client that fails to reach it, instead of after
// fall × inter (12 to 15 s with the guide's settings). A single refused
// connection is followed by an immediate check, so a healthy server stays
// UP unless fall checks in a row fail. Runtime.HAProxyChecks (warren-proxy
// --haproxy-checks) restores HAProxy's behaviour exactly. README:
// "Deliberate differences".

// observeFailure records a failed connect on live traffic.
func (s *server) observeFailure(err error) {
	mode, limit := s.observing()
	if mode == "" {
		return
	}
	s.mu.Lock()
	s.consecErr++
	n := s.consecErr
	if n < limit {
		s.mu.Unlock()
		return
	}
	s.consecErr = 0
	info := fmt.Sprintf("Detected %d consecutive errors, last one was: L4 unsuccessful connection (%v)", n, err)
	switch mode {
	case "fail-check":
		s.mu.Unlock()
		s.result(false, "L4CON", info, 0)
	case "sudden-death":
		// one more failed check marks it down
		if s.up.Load() && s.health > s.cfg.Rise {
			s.health = s.cfg.Rise
		}
		s.mu.Unlock()
	case "mark-down":
		wasUp := s.up.Load()
		s.health = 0
		s.chkfail++
		if wasUp {
			s.setUp(false)
		}
		s.mu.Unlock()
		if wasUp {
			s.logChange(false, "Health analyze, info: \""+info+"\"", 0)
		}
	default: // fastinter
		s.mu.Unlock()
	}
	s.wakeChecker()
}

// observeSuccess records a successful connect on live traffic.
func (s *server) observeSuccess() {
	if mode, _ := s.observing(); mode == "" {
		return
	}
	s.mu.Lock()
	s.consecErr = 0
	s.mu.Unlock()
}

// observing returns the on-error mode and error limit when the server's
// live traffic feeds its health, or "" when it does not.
func (s *server) observing() (string, int) {
	c := s.cfg
	if !c.Check {
		return "", 0
	}
	switch {
	case c.Observe == "layer4" || c.Observe == "layer7":
		return cmp.Or(c.OnError, "fail-check"), cmp.Or(c.ErrorLimit, 10)
	case c.Observe == "" && !s.b.haproxyChecks:
		return cmp.Or(c.OnError, "fail-check"), cmp.Or(c.ErrorLimit, 1)
	}
	return "", 0
}

func (s *server) wakeChecker() {
	select {
	case s.checkWake <- struct{}{}:
	default:
	}
}

// interval returns the delay before the next check: fastinter while the
// server is changing state, downinter while fully down, inter otherwise.
func (s *server) interval() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	full := s.cfg.Rise + s.cfg.Fall - 1
	transitional := s.health != 0 && s.health != full
	switch {
	case transitional && s.cfg.FastInter > 0:
		return s.cfg.FastInter
	case s.health == 0 && !s.up.Load() && s.cfg.DownInter > 0:
		return s.cfg.DownInter
	}
	return s.cfg.Inter
}

func (s *server) checker(stop <-chan struct{}) {
	wake := s.checkWake
	t := time.NewTimer(s.interval() / 2) // first check soon after start
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-wake:
		case <-t.C:
		}
		s.mu.Lock()
		maint := s.maint
		s.mu.Unlock()
		if !maint { // no checks in maintenance, as HAProxy
			ok, status, info, dur := s.check()
			s.result(ok, status, info, dur)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(s.interval())
	}
}

// check runs one health check: a TCP connect, or with check-amqp the AMQP
// protocol header exchange (a node whose broker is stopped fails it).
// The timeout is `timeout check` if set, else inter.
func (s *server) check() (ok bool, status, info string, dur time.Duration) {
	to := s.cfg.Inter
	if c := s.b.cfg.Timeouts.Check; c > 0 && c < to {
		to = c
	}
	start := time.Now()
	c, err := net.DialTimeout("tcp", s.cfg.Addr, to)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return false, "L4TOUT", "", time.Since(start)
		}
		return false, "L4CON", connInfo(err), time.Since(start)
	}
	defer c.Close()
	if !s.cfg.CheckAMQP {
		return true, "L4OK", "", time.Since(start)
	}
	c.SetDeadline(start.Add(to))
	if _, err := c.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		return false, "L7RSP", connInfo(err), time.Since(start)
	}
	var hdr [11]byte
	if _, err := readFull(c, hdr[:]); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return false, "L7TOUT", "", time.Since(start)
		}
		return false, "L7RSP", "no AMQP connection.start (" + connInfo(err) + ")", time.Since(start)
	}
	// a method frame (type 1) on channel 0 carrying connection.start (10, 10)
	if hdr[0] != 1 || hdr[1] != 0 || hdr[2] != 0 || hdr[7] != 0 || hdr[8] != 10 || hdr[9] != 0 || hdr[10] != 10 {
		return false, "L7RSP", "the answer is not an AMQP connection.start", time.Since(start)
	}
	return true, "L7OK", "", time.Since(start)
}

// connInfo is the short system error HAProxy prints ("Connection refused").
func connInfo(err error) string {
	var se syscall.Errno
	if errors.As(err, &se) {
		t := se.Error()
		return strings.ToUpper(t[:1]) + t[1:]
	}
	return err.Error()
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// statusText renders HAProxy's status column: UP, DOWN, "UP 1/3" (going
// down), "DOWN 1/2" (going up), MAINT, "no check".
func (s *server) statusText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.maint {
		return "MAINT"
	}
	if s.drain && s.up.Load() {
		return "DRAIN"
	}
	full := s.cfg.Rise + s.cfg.Fall - 1
	if !s.cfg.Check {
		return "no check"
	}
	if s.up.Load() {
		if s.health < full {
			return fmt.Sprintf("UP %d/%d", full-s.health, s.cfg.Fall)
		}
		return "UP"
	}
	if s.health > 0 {
		return fmt.Sprintf("DOWN %d/%d", s.health, s.cfg.Rise)
	}
	return "DOWN"
}
