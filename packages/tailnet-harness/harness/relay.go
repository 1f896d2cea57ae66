package main

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"

	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
)

// startDERP serves DERP over TLS with cert (from the run's CA, which our devices trust with
// caFile); the Go nodes skip verification because the DERP map marks the node InsecureForTests.
// With pinned, cert is self-signed and the DERP map pins it instead (CertName
// "sha256-raw:<hex>"), and the server sends its meta certificate after it, as cmd/derper does.
// The handler also answers the /derp/latency-check probe tailscale-rs uses to pick its home
// region.
func startDERP(listenIP netip.Addr, cert tls.Certificate, pinned bool, logf logger.Logf) (int, *derpserver.Server) {
	server := derpserver.New(key.NewNode(), logf)
	ln := must(net.Listen("tcp", netip.AddrPortFrom(listenIP, 0).String()))
	srv := httptest.NewUnstartedServer(derpserver.Handler(server))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ErrorLog = logger.StdLogger(logf)
	// DERP is an HTTP/1.1 upgrade: keep HTTP/2 off the TLS listener.
	srv.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	if pinned {
		// derpserver.ModifyTLSConfigToAddMetaCert needs GetCertificate, which crypto/tls skips
		// for a client that sends no SNI (an IP address) while Certificates (httptest fills it)
		// is set: append the meta certificate here instead.
		cert.Certificate = append(slices.Clip(cert.Certificate), server.MetaCert())
	}
	srv.TLS = serverTLS(cert)
	srv.StartTLS()
	return ln.Addr().(*net.TCPAddr).Port, server
}

func startSTUN(listenIP netip.Addr) int {
	pc := must(net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(listenIP, 0))))
	go func() {
		buf := make([]byte, 1500)
		for {
			n, src, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if tx, err := stun.ParseBindingRequest(buf[:n]); err == nil {
				src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
				pc.WriteToUDPAddrPort(stun.Response(tx, src), src)
			}
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// derpMap has the one region, on listenIP. certName "" marks its node InsecureForTests (the Go
// nodes skip verification; our devices verify against caFile); "sha256-raw:<hex>" pins it, for
// every client, Go nodes included.
func derpMap(listenIP netip.Addr, derpPort, stunPort int, certName string) *tailcfg.DERPMap {
	ip := listenIP.String()
	return &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		900: {RegionID: 900, RegionCode: "lo", RegionName: "loopback", Nodes: []*tailcfg.DERPNode{{
			Name: "900a", RegionID: 900, HostName: ip, IPv4: ip, IPv6: "none",
			DERPPort: derpPort, STUNPort: stunPort, STUNTestIP: ip,
			CertName: certName, InsecureForTests: certName == "",
		}}},
	}}
}
