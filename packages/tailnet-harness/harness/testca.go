package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"time"
)

// newTestCA makes a CA for this run, writes its certificate (PEM) to caFile, and returns a
// server certificate it signed for listenIP, 127.0.0.1, ::1 and localhost. Control and the DERP relay
// serve it, as a self-hosted tailnet with a private CA would: the addon trusts it only when
// given caFile, so the default build (which verifies every certificate) runs on this tailnet.
func newTestCA(caFile string, listenIP netip.Addr) tls.Certificate {
	caKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tailnet-harness test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER := must(x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey))
	ca := must(x509.ParseCertificate(caDER))

	leafKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	leafTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: listenIP.String()},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{listenIP.AsSlice(), net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	leafDER := must(x509.CreateCertificate(rand.Reader, leafTemplate, ca, &leafKey.PublicKey, caKey))

	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		panic(err)
	}
	return tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey}
}

// serverTLS is the TLS configuration for an HTTP/1.1 server with cert: control's Noise upgrade
// and DERP are HTTP/1.1 upgrades.
func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
}

// newSelfSignedCert makes a self-signed certificate for listenIP, as cmd/derper makes one for
// a DERP server whose hostname is an IP address, and returns it with the CertName that pins it
// in a DERP map: "sha256-raw:" and the hex SHA-256 of its DER.
func newSelfSignedCert(listenIP netip.Addr) (tls.Certificate, string) {
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(3),
		Subject:               pkix.Name{CommonName: listenIP.String()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{listenIP.AsSlice()},
	}
	der := must(x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key))
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pin(der)
}

func pin(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256-raw:" + hex.EncodeToString(sum[:])
}
