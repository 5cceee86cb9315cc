package broker

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/warrenmq/warren/internal/auth"
)

// DefaultCookiePath is where a node keeps its secret cookie, as RabbitMQ
// keeps the Erlang cookie: $HOME/.warren.cookie, or the data directory when
// there is no home (a service account).
func DefaultCookiePath(dataDir string) string {
	if p := os.Getenv("WARREN_COOKIE_FILE"); p != "" {
		return p
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".warren.cookie")
	}
	return filepath.Join(dataDir, ".warren.cookie")
}

// EnsureCookie reads the cookie at path, creating a random 20-character one
// readable only by its owner on first start. An existing file that group or
// others may access is refused, as Erlang refuses an .erlang.cookie: "Cookie
// file PATH must be accessible by owner only".
func EnsureCookie(path string) (string, error) {
	c, err := auth.ReadCookieFile(path)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		if errors.Is(err, auth.ErrCookieMode) {
			return "", err
		}
		return "", fmt.Errorf("cannot read cookie file %s: %w", path, err)
	}
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var raw [20]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	for i := range raw {
		raw[i] = letters[int(raw[i])%len(letters)]
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("cannot create cookie file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		if errors.Is(err, os.ErrExist) { // another node created it meanwhile
			return EnsureCookie(path)
		}
		return "", fmt.Errorf("cannot create cookie file %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.Write(raw[:]); err != nil {
		return "", err
	}
	return string(raw[:]), nil
}
