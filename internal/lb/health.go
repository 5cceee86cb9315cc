package lb

import (
	"fmt"
	"net"
	"time"
)

// Health follows HAProxy: a checked server starts UP with health =
// rise+fall-1. While UP, each failure decrements health and the fall-th
// consecutive failure marks it DOWN (health 0); while DOWN, each success
// increments health and the rise-th consecutive success marks it UP
// (health rise+fall-1). A success while UP, or a failure while DOWN,
// resets the counter to its extreme.

// result applies one check outcome and returns whether the state changed.
func (s *server) result(ok bool, status string, dur time.Duration) {
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
	changed := wasUp != s.up.Load()
	up := s.up.Load()
	s.mu.Unlock()
	if changed {
		if up {
			s.b.log.Warn(fmt.Sprintf("Server %s/%s is UP, reason: Layer4 check passed, check duration: %dms", s.b.cfg.Name, s.cfg.Name, dur.Milliseconds()))
			if s.cfg.ShutdownBackupOnUp && !s.cfg.Backup {
				for _, o := range s.b.servers {
					if o.cfg.Backup {
						o.shutdownSessions()
					}
				}
			}
		} else {
			s.b.log.Warn(fmt.Sprintf("Server %s/%s is DOWN, reason: %s, check duration: %dms", s.b.cfg.Name, s.cfg.Name, status, dur.Milliseconds()))
			if s.cfg.ShutdownSessionsOnDown {
				s.shutdownSessions()
			}
		}
	}
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

// observeFailure counts a failed connect on live traffic as a failed
// check and makes the next check come sooner.
func (s *server) observeFailure() {
	if !s.cfg.Check {
		return
	}
	s.result(false, "L4CON", 0)
	s.mu.Lock()
	w := s.checkWake
	s.mu.Unlock()
	if w != nil {
		select {
		case w <- struct{}{}:
		default:
		}
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
	wake := make(chan struct{}, 1)
	s.mu.Lock()
	s.checkWake = wake
	s.mu.Unlock()
	t := time.NewTimer(s.interval() / 2) // first check soon after start
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-wake:
		case <-t.C:
		}
		ok, status, dur := s.check()
		s.result(ok, status, dur)
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
func (s *server) check() (bool, string, time.Duration) {
	to := s.cfg.Inter
	if c := s.b.cfg.Timeouts.Check; c > 0 && c < to {
		to = c
	}
	start := time.Now()
	c, err := net.DialTimeout("tcp", s.cfg.Addr, to)
	if err != nil {
		return false, "L4CON", time.Since(start)
	}
	defer c.Close()
	if !s.cfg.CheckAMQP {
		return true, "L4OK", time.Since(start)
	}
	c.SetDeadline(start.Add(to))
	if _, err := c.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		return false, "L7RSP", time.Since(start)
	}
	var hdr [11]byte
	if _, err := readFull(c, hdr[:]); err != nil {
		return false, "L7TOUT", time.Since(start)
	}
	// a method frame (type 1) on channel 0 carrying connection.start (10, 10)
	if hdr[0] != 1 || hdr[1] != 0 || hdr[2] != 0 || hdr[7] != 0 || hdr[8] != 10 || hdr[9] != 0 || hdr[10] != 10 {
		return false, "L7RSP", time.Since(start)
	}
	return true, "L7OK", time.Since(start)
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
