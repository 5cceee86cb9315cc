// Package deploy holds no code: the systemd units (deploy/systemd) and the
// example configuration of the guide's topology (deploy/examples), which
// test/halab builds its labs from. Its test checks that every unit starts a
// binary of cmd/ with flags that binary accepts and that every example
// parses with the real parsers.
package deploy
