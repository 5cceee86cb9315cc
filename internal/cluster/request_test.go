package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRequestFromNonMember: a node that is not a member (id 0) and holds
// the cookie gets one request answered; with another cookie it is
// refused with "the cookies ... differ"; a member without a request
// handler refuses it in the handshake; an error answer comes back whole.
func TestRequestFromNonMember(t *testing.T) {
	a := MustParseNodeName("warren@a")
	joiner := MustParseNodeName("warren@b")
	var mu sync.Mutex
	var asked []string
	l, err := Listen(Config{Name: a, ID: 7, Cookie: []byte("cookie"), Listen: "127.0.0.1:0",
		OnRequest: func(from NodeName, req []byte) ([]byte, error) {
			mu.Lock()
			asked = append(asked, from.String()+":"+string(req))
			mu.Unlock()
			if string(req) == "fail" {
				return nil, errors.New("not today: retry later")
			}
			return []byte("welcome " + from.String()), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc := RequestConfig{Name: joiner, Cookie: []byte("cookie"), Target: a, Addr: l.Addr().String()}

	ans, err := Request(ctx, rc, []byte("join"))
	if err != nil || string(ans) != "welcome warren@b" {
		t.Fatalf("answer %q, err %v", ans, err)
	}
	_, err = Request(ctx, rc, []byte("fail"))
	var re *RemoteError
	if !errors.As(err, &re) || re.Text != "not today: retry later" {
		t.Fatalf("error answer: %v", err)
	}

	bad := rc
	bad.Cookie = []byte("another")
	_, err = Request(ctx, bad, []byte("join"))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "cookies of warren@b and warren@a differ") {
		t.Fatalf("wrong cookie: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 {
		t.Fatalf("the handler ran for %v; a node with another cookie must never reach it", asked)
	}

	// wrong target name: the dialler notices it reached another node
	other := rc
	other.Target = MustParseNodeName("warren@c")
	if _, err := Request(ctx, other, []byte("join")); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "reached warren@a") {
		t.Fatalf("wrong target: %v", err)
	}

	// a link without a handler refuses non-members
	l2, err := Listen(Config{Name: a, ID: 8, Cookie: []byte("cookie"), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	rc.Addr = l2.Addr().String()
	if _, err := Request(ctx, rc, []byte("join")); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "does not take requests") {
		t.Fatalf("no handler: %v", err)
	}
}
