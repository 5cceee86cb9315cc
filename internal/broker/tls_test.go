package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/internal/broker"
)

// writeTestPKI writes a CA and a certificate for host "localhost" signed
// by it into dir, and returns their paths.
func writeTestPKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "warren test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	nodeKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	nodeTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	caCert, _ := x509.ParseCertificate(caDER)
	nodeDER, err := x509.CreateCertificate(rand.Reader, nodeTmpl, caCert, &nodeKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(nodeKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("node.pem", "CERTIFICATE", nodeDER), write("node.key", "EC PRIVATE KEY", keyDER)
}

// A cluster whose inter-node port runs TLS (distribution.ssl_options.* in
// warren.conf) forms and forwards; half a TLS configuration refuses to
// start, saying what is missing.
func TestClusterOverTLS(t *testing.T) {
	ca, cert, key := writeTestPKI(t, t.TempDir())
	c := newTestCluster(t)
	c.conf += fmt.Sprintf("distribution.ssl_options.certfile = %s\ndistribution.ssl_options.keyfile = %s\ndistribution.ssl_options.cacertfile = %s\n", cert, key, ca)
	startCluster(t, c)
	ch2 := channel(t, dial(t, c.url(1)))
	if _, err := ch2.QueueDeclare("sealed", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "node 1 to see sealed", func() bool { return hasQueue(c.node(0), "/", "sealed") })
	ch1 := channel(t, dial(t, c.url(0)))
	if err := ch1.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch1.PublishWithDeferredConfirmWithContext(context.Background(), "", "sealed", false, false, amqp091.Publishing{Body: []byte("over tls"), DeliveryMode: 2})
	if err != nil || !dc.Wait() {
		t.Fatalf("publish through node 1 to node 2's queue over TLS: %v", err)
	}
	if r, _, _ := c.node(1).VHost("/").LookupQueue("sealed").Counts(); r != 1 {
		t.Fatalf("sealed holds %d messages on its home", r)
	}

	// the inter-node port speaks TLS with the configured certificates
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(caPEM)
	tc, err := tls.Dial("tcp", c.node(0).DistAddr().String(), &tls.Config{ServerName: "localhost", RootCAs: pool, Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatalf("a TLS handshake with node 1's inter-node port: %v", err)
	}
	tc.Close()

	cfg := c.config(0)
	cfg.DataDir = t.TempDir()
	cfg.DistTLS.KeyFile = ""
	if _, err := broker.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "distribution.ssl_options.keyfile") {
		t.Fatalf("half a TLS configuration: %v", err)
	}
}
