package cluster

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// A node that is not a member yet (warrenctl join_cluster) reaches a
// member through the same port and the same cookie handshake, with node
// id 0, and sends one request; the member answers and closes (ADR 0008):
//
//	D → A  handshake (hello with id 0, proofs as between members)
//	D → A  request  [length u32][payload]
//	A → D  answer   [status u8: 0 ok, 1 error][length u32][payload or error text]
//
// A member without Config.OnRequest refuses such a dialler in the
// handshake.

// maxRequest bounds a request and an answer.
const maxRequest = 1 << 20

// RequestTimeout bounds how long a member takes to answer a request.
const RequestTimeout = 2 * time.Minute

// RequestConfig is what Request needs.
type RequestConfig struct {
	Name   NodeName // the requesting node
	Cookie []byte
	TLS    *tls.Config
	Target NodeName // the member asked
	Addr   string   // its inter-node address (empty: its host on DefaultDistPort)
}

// RemoteError is an error the member answered with.
type RemoteError struct{ Text string }

func (e *RemoteError) Error() string { return e.Text }

// Request sends req to the member c.Target and returns its answer.
// Handshake refusals (the cookies differ, another node answered) are
// RefusedErrors.
func Request(ctx context.Context, c RequestConfig, req []byte) ([]byte, error) {
	if len(c.Cookie) == 0 {
		return nil, errors.New("cluster: the cookie is empty: give every node the same cookie file")
	}
	if len(req) > maxRequest {
		return nil, fmt.Errorf("cluster: request of %d bytes exceeds %d", len(req), maxRequest)
	}
	addr := c.Addr
	if addr == "" {
		addr = c.Target.Addr(DefaultDistPort)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s at %s: %w (is it running, and is %s its inter-node address?)", c.Target, addr, err, addr)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if c.TLS != nil {
		cfg := c.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = c.Target.Host
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("cluster: TLS handshake with %s: %w", c.Target, err)
		}
		nc = tc
	}
	hs := handshaker{self: c.Name, cookie: c.Cookie}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := hs.dial(nc, c.Target, 0); err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(RequestTimeout + 10*time.Second))
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(req)), uint32(len(req)))
	if _, err := nc.Write(append(b, req...)); err != nil {
		return nil, err
	}
	var hdr [5]byte
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("no answer from %s: %w", c.Target, err)
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxRequest {
		return nil, fmt.Errorf("answer of %d bytes from %s exceeds %d", n, c.Target, maxRequest)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(nc, body); err != nil {
		return nil, fmt.Errorf("truncated answer from %s: %w", c.Target, err)
	}
	if hdr[0] != 0 {
		return nil, &RemoteError{Text: string(body)}
	}
	return body, nil
}

// serveRequest reads one request from an authenticated non-member and
// writes the answer of Config.OnRequest.
func (l *Link) serveRequest(nc net.Conn, from NodeName) {
	_ = nc.SetDeadline(time.Now().Add(l.cfg.HandshakeTimeout))
	var hdr [4]byte
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		return
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxRequest {
		return
	}
	req := make([]byte, n)
	if _, err := io.ReadFull(nc, req); err != nil {
		return
	}
	_ = nc.SetDeadline(time.Now().Add(RequestTimeout))
	ans, err := l.cfg.OnRequest(from, req)
	status := byte(0)
	if err != nil {
		status, ans = 1, []byte(err.Error())
	}
	if len(ans) > maxRequest {
		status, ans = 1, []byte("answer too large")
	}
	out := binary.BigEndian.AppendUint32([]byte{status}, uint32(len(ans)))
	_, _ = nc.Write(append(out, ans...))
}
