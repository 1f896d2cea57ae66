package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"time"
)

// startTLSControl serves control over https as well, as a self-hosted control server would: its
// certificate (for 127.0.0.1, ::1 and localhost) is signed by a CA made for this run, whose
// certificate is written to caFile. Clients trust it only when told to.
func startTLSControl(handler http.Handler, caFile string) string {
	caKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tailnet-harness test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER := must(x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey))
	ca := must(x509.ParseCertificate(caDER))

	leafKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	leafTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	leafDER := must(x509.CreateCertificate(rand.Reader, leafTemplate, ca, &leafKey.PublicKey, caKey))

	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		panic(err)
	}
	ln := must(net.Listen("tcp", "127.0.0.1:0"))
	srv := &http.Server{
		Handler: handler,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{
			Certificate: [][]byte{leafDER, caDER},
			PrivateKey:  leafKey,
		}}},
		// The Noise upgrade is an HTTP/1.1 upgrade: keep HTTP/2 off this listener.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	go srv.ServeTLS(ln, "", "")
	return "https://" + ln.Addr().String()
}
